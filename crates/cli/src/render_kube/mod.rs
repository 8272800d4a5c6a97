//! [`Gateway`] -> Envoy Gateway manifests, so the file that runs locally goes
//! to a cluster unchanged. Checked against Envoy Gateway v1.9.0's API types
//! and translator and Gateway API v1.6's CRDs (not against a live cluster).
//!
//! How a call finds its backend, whatever order Envoy Gateway sorts the
//! rules in and however it splits virtual hosts:
//!
//! * Envoy Gateway enables the wasm filter per route, so one rule of the
//!   HTTPRoute matches what the filter answers itself: `Exact` on the MCP path
//!   and on each OAuth discovery path the filter serves (read from the
//!   filter's own compiled config).
//! * For a routed call the filter sets only `x-mcpgw-cluster` (plugin config
//!   `rewrite: route`): the client's host and path stay, so Envoy re-resolves
//!   the route in the same virtual host (the one for the route's
//!   `hostnames`). Backend `i` has its own rule: `Exact` on the same MCP path
//!   plus one `Exact` header match on its value. Gateway API precedence (and
//!   Envoy Gateway's sort: path kind, path length, then header count) puts a
//!   rule with one header match before the catch-all without, and the header
//!   values differ, so exactly one rule wins for any order.
//! * That rule's `URLRewrite` sets the backend's host (`hostname`, a name
//!   without port: Gateway API has no port there) and path (`ReplaceFullPath`,
//!   query included; the filter drops the client's query).
//! * Fan-out calls (`initialize`, lists, DELETE) bypass routing: the filter
//!   dispatches them to Envoy Gateway's cluster of the backend's rule,
//!   `httproute/<ns>/<route>/rule/<i>`, with the backend's path and
//!   authority. So the GatewayClass must not enable `mergeBackends`, and the
//!   rules stay in the order written (Envoy Gateway names clusters by rule
//!   index, not by match order).
//! * A backend's token endpoint (token exchange) gets a Backend and a rule
//!   like a backend's, after all of theirs: the filter calls its cluster.
//! * An HTTPRoute holds 16 rules: past 15 backends the rules continue in
//!   `<route>-2`, `<route>-3`, ... (same parents and hostnames), all targeted
//!   by the same EnvoyExtensionPolicy and SecurityPolicy.
//!
//! What Envoy Gateway cannot express otherwise:
//!
//! * Its Wasm API has no `allow_on_headers_stop_iteration` nor
//!   `failure_policy`: an EnvoyPatchPolicy adds both to the listener's wasm
//!   filter (`extensionApis.enableEnvoyPatchPolicy: true`).
//! * The Wasm `env` only has `hostKeys` (variables of the Envoy container):
//!   an EnvoyProxy (`mergeType: StrategicMerge`) puts the session key and the
//!   backend credentials into that environment from Secrets, which must live
//!   where the Envoy pods run: the controller's namespace
//!   (`ControllerNamespace`, the default) or the Gateway's
//!   (`GatewayNamespace`). The EnvoyProxy itself lives in the Gateway's
//!   namespace (`spec.infrastructure.parametersRef` is local).
//! * OAuth: a SecurityPolicy `jwt` provider named `jwt_payload` (Envoy Gateway
//!   stores the payload under the provider's name, the filter's metadata
//!   key), `failOpen` (v1.9+) so the filter answers the MCP 401 itself.
//! * Timeouts: rules have `timeouts.request: 0s`; a ClientTrafficPolicy on the
//!   Gateway's listener sets the stream idle timeout SSE needs.
//!
//! The dynamic module instead (`Code::Module`, Envoy Gateway v1.8+ API): the
//! EnvoyExtensionPolicy's `dynamicModule` names a module the Gateway's
//! EnvoyProxy registers (`dynamicModules`, a local path in the Envoy
//! container); that EnvoyProxy also sets the Envoy 1.40 image the module's
//! ABI needs and mounts `--module-image` as an image volume. Envoy Gateway
//! passes `config` to the module as a JSON string (`filter_config`), as the
//! local envoy.yaml does; no EnvoyPatchPolicy (its settings are wasm-only).
//! The module reads the verified JWT's claims only from jwt_authn's
//! `forward_payload_header`, which Envoy Gateway cannot set: OAuth is refused.

mod names;
pub mod objects;

#[cfg(test)]
mod checks;
#[cfg(test)]
mod tests;

use crate::model::{Gateway, Host, Jwks, SecretValue, Target};
use crate::plugin::{self, Upstream, PREVIOUS_SESSION_KEY_VAR, SESSION_KEY_VAR};
use crate::render_envoy::{env_keys, ROUTE_HEADER};
use objects::{ObjectRef, ENVOY_GATEWAY, GATEWAY_API};
use serde::Serialize;
use std::collections::BTreeMap;

pub const JWT_PROVIDER: &str = "jwt_payload";
/// The Envoy Gateway release the manifests need (SecurityPolicy
/// `jwt.failOpen`; EnvoyProxy `mergeType` is v1.8).
pub const MIN_ENVOY_GATEWAY: &str = "v1.9.0";
/// Gateway API's limits: rules per HTTPRoute, hostnames per route.
const MAX_RULES: usize = 16;
const MAX_HOSTNAMES: usize = 16;
/// Envoy Gateway's controller namespace unless installed elsewhere.
pub const DEFAULT_CONTROLLER_NAMESPACE: &str = "envoy-gateway-system";

#[derive(Debug, Clone)]
pub enum WasmCode {
    /// An http(s) URL of mcpgw.wasm, pinned by the file's sha256.
    Http(String),
    /// An OCI image reference: `repo@sha256:<manifest digest>` is pinned,
    /// `repo:tag` is not (Envoy Gateway checks `sha256` against the image's
    /// manifest digest, never against the wasm file).
    Image(String),
}

/// The dynamic module's build and where the Envoy pods get it.
#[derive(Debug, Clone)]
pub struct ModuleCode {
    pub source: ModuleSource,
    /// The Envoy image the EnvoyProxy sets: it must run Envoy 1.40.x.
    pub envoy_image: String,
}

#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// An OCI image holding libmcpgw.so at its root, mounted into the Envoy
    /// container as a Kubernetes image volume.
    Image(String),
    /// An absolute path in the Envoy container (the user's own Envoy image,
    /// or a volume the user adds).
    Path(String),
}

/// Which build the cluster runs.
#[derive(Debug, Clone)]
pub enum Code {
    Wasm(WasmCode),
    Module(ModuleCode),
}

impl From<WasmCode> for Code {
    fn from(c: WasmCode) -> Code {
        Code::Wasm(c)
    }
}

impl From<ModuleCode> for Code {
    fn from(c: ModuleCode) -> Code {
        Code::Module(c)
    }
}

/// The Envoy the module is built for: 1.40.0's dynamic-module ABI v0.2.0
/// (Envoy refuses a module of another ABI). Envoy Gateway v1.9 runs 1.39 by
/// default, so the EnvoyProxy sets this image.
pub const MODULE_ENVOY_IMAGE: &str = "docker.io/envoyproxy/envoy:distroless-v1.40.0";
/// Where `--module-image` is mounted in the Envoy container.
const MODULE_MOUNT: &str = "/etc/envoy/mcpgw";
const MODULE_VOLUME: &str = "mcpgw-module";

/// Where Envoy Gateway runs the Envoy pods (its
/// `provider.kubernetes.deploy.type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deploy {
    /// In the controller's namespace (the default): the one given here.
    ControllerNamespace(String),
    /// In each Gateway's own namespace.
    GatewayNamespace,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub code: Code,
    /// sha256 of the embedded build of `code` (mcpgw.wasm or libmcpgw.so).
    pub sha256: String,
    pub session_key: String,
    pub previous_key: Option<String>,
    pub deploy: Deploy,
}

impl Options {
    /// Placeholders for the code and the key, for `check --kubernetes`.
    pub fn for_check(deploy: Deploy, engine: crate::engine::Engine) -> Options {
        let code = match engine {
            crate::engine::Engine::Wasm => {
                Code::Wasm(WasmCode::Http("https://example.com/mcpgw.wasm".into()))
            }
            crate::engine::Engine::Module => Code::Module(ModuleCode {
                source: ModuleSource::Image(format!(
                    "example.com/mcpgw-module@sha256:{}",
                    "0".repeat(64)
                )),
                envoy_image: MODULE_ENVOY_IMAGE.into(),
            }),
        };
        Options {
            code,
            sha256: engine.sha256(),
            session_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
            previous_key: None,
            deploy,
        }
    }
}

/// The manifests and what the user should know about them.
#[derive(Debug)]
pub struct Rendered {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Name of the Envoy cluster Envoy Gateway generates for rule `i` of `route`.
pub fn eg_cluster(ns: &str, route: &str, i: usize) -> String {
    format!("httproute/{ns}/{route}/rule/{i}")
}

/// A backend that goes to the cluster, and where its rule is.
struct Placed {
    /// The Backend object its rule references.
    backend: String,
    /// URLRewrite hostname (no port).
    hostname: Option<String>,
    /// Path and query of its MCP endpoint.
    path: String,
    /// `:authority` of fan-out calls; `None` keeps the client's.
    authority: Option<String>,
    route: usize,
    rule: usize,
}

/// A Gateway the route attaches to.
struct Parent<'a> {
    r: &'a crate::model::ParentRef,
    ns: String,
}

pub fn render(
    g: &Gateway,
    passthrough: &[serde_norway::Value],
    o: &Options,
) -> Result<Rendered, String> {
    let ns = g.kube.namespace.as_str();
    let mut w = Vec::new();
    if !names::is_label(ns) {
        return Err(format!(
            "namespace \"{ns}\" is not a valid Kubernetes namespace (lower-case letters, digits and '-')"
        ));
    }
    if !names::is_subdomain(&g.kube.name) {
        return Err(format!(
            "\"{}\" is not a valid Kubernetes name for the HTTPRoute (lower-case letters, digits, '-' and '.')",
            g.kube.name
        ));
    }
    check_hostnames(g)?;
    let route = names::object(&[&g.kube.name]);
    let module = match &o.code {
        Code::Module(m) => Some(module_code(m, &o.sha256, &mut w)?),
        Code::Wasm(_) => None,
    };
    if module.is_some() && g.oauth.is_some() {
        // The module reads the verified token's claims from the payload
        // header jwt_authn forwards: the ABI reads only a metadata
        // namespace's top-level keys, and Envoy Gateway's JWT provider
        // stores the payload in metadata only.
        return Err(format!(
            "{}: OAuth with --engine module: the module reads the verified token's claims from jwt_authn's forward_payload_header, which Envoy Gateway's SecurityPolicy cannot set (its JWT provider only stores the payload in metadata, whose claims the dynamic-module ABI cannot read); render this route with the wasm build (--engine wasm, the default)",
            g.source
        ));
    }

    // Backends Envoy Gateway can serve, in order.
    let mut dropped = Vec::new();
    let mut placed: Vec<Placed> = Vec::new();
    let mut kept = Vec::new();
    for b in &g.backends {
        let (backend, hostname, path, authority) = match &b.target {
            Target::Stdio(_) => {
                w.push(format!(
                    "server \"{}\" is a stdio server: a cluster cannot run it; left out (run it as an HTTP service and add it by URL)",
                    b.name
                ));
                continue;
            }
            Target::Http(t) => {
                let object = t
                    .kube_backend
                    .clone()
                    .unwrap_or_else(|| names::object(&[&g.kube.name, &b.name]));
                if let Some(why) = refused_host(&t.host) {
                    w.push(format!("server \"{}\": {why}; left out", b.name));
                    dropped.push(object);
                    continue;
                }
                let hostname = match &t.host {
                    Host::Name(n) => {
                        let default = if t.tls.is_some() { 443 } else { 80 };
                        if t.port != default {
                            w.push(format!(
                                "server \"{}\": routed calls reach it with Host: {n} (Gateway API's URLRewrite cannot carry the port {}); fan-out calls send {}",
                                b.name,
                                t.port,
                                t.authority()
                            ));
                        }
                        Some(n.clone())
                    }
                    Host::Ip(ip) => {
                        w.push(format!(
                            "server \"{}\": Gateway API's URLRewrite cannot set an IP address as Host, so routed calls to {ip} keep the client's Host header",
                            b.name
                        ));
                        None
                    }
                };
                (object, hostname, t.path.clone(), Some(t.authority()))
            }
            Target::InCluster { backend, path } => {
                w.push(format!(
                    "backend \"{}\": Backend \"{backend}\" is not in the input, so mcpgw does not know its host: requests to it keep the client's Host header",
                    b.name
                ));
                (backend.clone(), None, path.clone(), None)
            }
        };
        let i = placed.len();
        // The first route keeps one rule for what the filter answers itself.
        let (route, rule) = if i < MAX_RULES - 1 {
            (0, i)
        } else {
            let j = i - (MAX_RULES - 1);
            (1 + j / MAX_RULES, j % MAX_RULES)
        };
        placed.push(Placed {
            backend,
            hostname,
            path,
            authority,
            route,
            rule,
        });
        kept.push(b.clone());
    }
    if placed.is_empty() {
        return Err(
            "no backend left for Kubernetes (see the warnings above; stdio servers need `mcpgw run`)"
                .into(),
        );
    }
    // Token endpoints get rules (so Envoy Gateway makes a cluster for each)
    // after the backends'; the filter calls them by that cluster's name. The
    // rules' header match is a value only the filter sets.
    let mut token_endpoints: Vec<(usize, crate::model::ParsedUrl)> = Vec::new();
    for (k, b) in kept.iter().enumerate() {
        let Some(te) = &b.token_exchange else {
            continue;
        };
        let u = &te.endpoint;
        if let Some(why) = refused_host(&u.host) {
            return Err(format!("server \"{}\": its token endpoint: {why}", b.name));
        }
        let i = placed.len();
        let (route, rule) = if i < MAX_RULES - 1 {
            (0, i)
        } else {
            let j = i - (MAX_RULES - 1);
            (1 + j / MAX_RULES, j % MAX_RULES)
        };
        let host = match &u.host {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
        };
        let default = if u.https { 443 } else { 80 };
        placed.push(Placed {
            backend: names::object(&[&g.kube.name, &b.name, "token-exchange"]),
            hostname: matches!(u.host, Host::Name(_)).then(|| host.clone()),
            path: u.path.clone(),
            authority: Some(if u.port == default {
                host
            } else {
                format!("{host}:{}", u.port)
            }),
            route,
            rule,
        });
        token_endpoints.push((k, u.clone()));
    }
    let route_count = placed.last().map_or(1, |p| p.route + 1);
    let route_names: Vec<String> = (0..route_count)
        .map(|k| {
            if k == 0 {
                route.clone()
            } else {
                names::object(&[&g.kube.name, &(k + 1).to_string()])
            }
        })
        .collect();
    let cluster = |p: &Placed| {
        let r = route_names.get(p.route).map_or("", String::as_str);
        eg_cluster(ns, r, p.rule)
    };

    // The filter's configuration, compiled by the filter's own code.
    let mut served = g.clone();
    served.backends = kept;
    let first_endpoint = placed.len() - token_endpoints.len();
    for (n, (k, _)) in token_endpoints.iter().enumerate() {
        let c = placed.get(first_endpoint + n).map(cluster);
        let te = served
            .backends
            .get_mut(*k)
            .and_then(|b| b.token_exchange.as_mut());
        if let (Some(te), Some(c)) = (te, c) {
            te.block
                .insert("cluster".into(), serde_json::Value::String(c));
        }
    }
    let json = plugin::plugin_json(&served, o.previous_key.is_some(), &|i, _| {
        let p = placed.get(i);
        Upstream {
            cluster: p.map(cluster).unwrap_or_default(),
            authority: p.and_then(|p| p.authority.clone()),
            path: p.map_or_else(|| "/mcp".into(), |p| p.path.clone()),
            timeout: None,
        }
    });
    let compiled = plugin::compile(&served, &json, &crate::check_env(&served, true))?;
    let well_known: Vec<String> = compiled
        .auth
        .as_ref()
        .map(|a| {
            a.well_known_paths()
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let plugin_value: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("internal: plugin JSON: {e}"))?;

    // The Gateways, and where Envoy runs for each.
    let mut parents: Vec<Parent> = Vec::new();
    for p in &served.kube.parent_refs {
        let gw_ns = p.namespace.clone().unwrap_or_else(|| ns.to_string());
        if gw_ns != ns {
            w.push(format!(
                "Gateway {gw_ns}/{} is in another namespace: its listener must admit routes from namespace {ns} (allowedRoutes.namespaces.from: All or Selector)",
                p.name
            ));
        }
        if p.section_name.is_none() && module.is_none() {
            w.push(format!(
                "EnvoyPatchPolicy: the listener of Gateway {gw_ns}/{} is assumed to be named \"http\"; name it (MCPRoute parentRefs[].sectionName, or --listener)",
                p.name
            ));
        }
        parents.push(Parent { r: p, ns: gw_ns });
    }
    let proxy_ns = |gw_ns: &str| match &o.deploy {
        Deploy::ControllerNamespace(c) => c.clone(),
        Deploy::GatewayNamespace => gw_ns.to_string(),
    };
    let mut proxy_namespaces: Vec<String> = Vec::new();
    let mut gateway_namespaces: Vec<String> = Vec::new();
    for p in &parents {
        let pn = proxy_ns(&p.ns);
        if !proxy_namespaces.contains(&pn) {
            proxy_namespaces.push(pn);
        }
        if !gateway_namespaces.contains(&p.ns) {
            gateway_namespaces.push(p.ns.clone());
        }
    }

    let mut docs: Vec<String> = Vec::new();

    // Session keys, in every namespace an Envoy pod reads them from.
    let keys = env_keys(&served, o.previous_key.is_some());
    let session_secret = |pn: &str| names::owned(ns, &g.kube.name, pn, "session-key");
    let creds_secret = |pn: &str| names::owned(ns, &g.kube.name, pn, "credentials");
    for pn in &proxy_namespaces {
        let mut data = BTreeMap::new();
        data.insert(SESSION_KEY_VAR.to_string(), o.session_key.clone());
        if let Some(p) = &o.previous_key {
            data.insert(PREVIOUS_SESSION_KEY_VAR.to_string(), p.clone());
        }
        docs.push(yaml(&objects::secret(&session_secret(pn), pn, data))?);
    }

    // The Envoy container's environment, per namespace the pods run in.
    let mut creds: BTreeMap<String, Vec<Credential>> = BTreeMap::new();
    let mut host_env_warned = false;
    let env_for = |pn: &str,
                   creds: &mut BTreeMap<String, Vec<Credential>>,
                   warnings: &mut Vec<String>,
                   host_env_warned: &mut bool| {
        let mut env = Vec::new();
        for k in &keys {
            let (secret, key) = if k == SESSION_KEY_VAR || k == PREVIOUS_SESSION_KEY_VAR {
                (session_secret(pn), k.clone())
            } else if let Some(se) = served.secret_env.iter().find(|se| &se.var == k) {
                if se.value == SecretValue::HostEnv && !*host_env_warned {
                    *host_env_warned = true;
                    warnings.push(format!(
                        "Secret \"{}\": its key {} must hold the real value in the cluster (the substitution.aigw.run annotation is for local runs only)",
                        se.secret, se.key
                    ));
                }
                if pn == ns {
                    (se.secret.clone(), se.key.clone())
                } else {
                    let list = creds.entry(pn.to_string()).or_default();
                    if !list.iter().any(|c| c.var == *k) {
                        warnings.push(format!(
                            "Secret {ns}/{}: Envoy's pods run in namespace {pn} and cannot read it; copy its key {} into Secret {pn}/{} (command in the output's header)",
                            se.secret,
                            se.key,
                            creds_secret(pn)
                        ));
                        list.push(Credential {
                            var: k.clone(),
                            from: Some((se.secret.clone(), se.key.clone())),
                        });
                    }
                    (creds_secret(pn), k.clone())
                }
            } else {
                let list = creds.entry(pn.to_string()).or_default();
                if !list.iter().any(|c| c.var == *k) {
                    list.push(Credential {
                        var: k.clone(),
                        from: None,
                    });
                }
                (creds_secret(pn), k.clone())
            };
            env.push(objects::EnvVar {
                name: k.clone(),
                value_from: objects::EnvVarSource {
                    secret_key_ref: objects::SecretKeyRef { name: secret, key },
                },
            });
        }
        env
    };
    let mut proxies: Vec<(String, String)> = Vec::new();
    for gn in &gateway_namespaces {
        let env = env_for(&proxy_ns(gn), &mut creds, &mut w, &mut host_env_warned);
        let name = names::owned(ns, &g.kube.name, gn, "proxy");
        let m = module.as_ref().map(|m| m.proxy());
        docs.push(yaml(&objects::envoy_proxy(&name, gn, env, m))?);
        proxies.push((gn.clone(), name));
    }

    // Backends: made from the servers file's URLs, or as written in the input.
    for (p, b) in placed.iter().zip(&served.backends) {
        let Target::Http(t) = &b.target else { continue };
        if t.kube_backend.is_some() {
            continue;
        }
        let endpoint = match &t.host {
            Host::Name(h) => objects::Endpoint {
                fqdn: Some(objects::HostPort {
                    hostname: h.clone(),
                    port: t.port,
                }),
                ip: None,
            },
            Host::Ip(ip) => objects::Endpoint {
                fqdn: None,
                ip: Some(objects::AddressPort {
                    address: ip.to_string(),
                    port: t.port,
                }),
            },
        };
        let tls = t.tls.as_ref().map(|tls| objects::BackendTls {
            well_known_ca_certificates: "System",
            sni: Some(tls.sni.clone()),
        });
        docs.push(yaml(&objects::eg(
            "Backend",
            &p.backend,
            ns,
            objects::BackendSpec {
                endpoints: vec![endpoint],
                tls,
            },
        ))?);
    }
    for (n, (_, u)) in token_endpoints.iter().enumerate() {
        let Some(p) = placed.get(first_endpoint + n) else {
            continue;
        };
        let (fqdn, ip) = match &u.host {
            Host::Name(h) => (
                Some(objects::HostPort {
                    hostname: h.clone(),
                    port: u.port,
                }),
                None,
            ),
            Host::Ip(a) => (
                None,
                Some(objects::AddressPort {
                    address: a.to_string(),
                    port: u.port,
                }),
            ),
        };
        let sni = match &u.host {
            Host::Name(h) => h.clone(),
            Host::Ip(a) => a.to_string(),
        };
        docs.push(yaml(&objects::eg(
            "Backend",
            &p.backend,
            ns,
            objects::BackendSpec {
                endpoints: vec![objects::Endpoint { fqdn, ip }],
                tls: u.https.then_some(objects::BackendTls {
                    well_known_ca_certificates: "System",
                    sni: Some(sni),
                }),
            },
        ))?);
    }
    for v in passthrough {
        if let Some(v) = pass_through(v, &dropped, &mut w) {
            docs.push(yaml(&v)?);
        }
    }

    // The HTTPRoutes.
    let parent_refs: Vec<objects::ParentRef> = parents
        .iter()
        .map(|p| objects::ParentRef {
            group: GATEWAY_API,
            kind: "Gateway",
            name: p.r.name.clone(),
            namespace: p.r.namespace.clone(),
            section_name: p.r.section_name.clone(),
            port: p.r.port,
        })
        .collect();
    let exact = |v: &str| objects::TypedValue {
        ty: "Exact",
        value: v.to_string(),
    };
    let backend_ref = |n: &str| vec![ObjectRef::new(ENVOY_GATEWAY, "Backend", n)];
    let no_timeout = || objects::Timeouts { request: "0s" };
    for (k, rname) in route_names.iter().enumerate() {
        let mut rules: Vec<objects::Rule> = placed
            .iter()
            .filter(|p| p.route == k)
            .map(|p| objects::Rule {
                matches: vec![objects::Match {
                    path: exact(&served.path),
                    headers: vec![objects::HeaderMatch {
                        ty: "Exact",
                        name: ROUTE_HEADER.into(),
                        value: cluster(p),
                    }],
                }],
                filters: vec![objects::Filter {
                    ty: "URLRewrite",
                    url_rewrite: objects::UrlRewrite {
                        hostname: p.hostname.clone(),
                        path: objects::PathModifier {
                            ty: "ReplaceFullPath",
                            replace_full_path: p.path.clone(),
                        },
                    },
                }],
                backend_refs: backend_ref(&p.backend),
                timeouts: no_timeout(),
            })
            .collect();
        if k == 0 {
            // What the filter answers itself; never forwarded as is.
            let first = placed.first().map_or("", |p| p.backend.as_str());
            let mut matches = vec![objects::Match {
                path: exact(&served.path),
                headers: vec![],
            }];
            matches.extend(well_known.iter().map(|p| objects::Match {
                path: exact(p),
                headers: vec![],
            }));
            rules.push(objects::Rule {
                matches,
                filters: vec![],
                backend_refs: backend_ref(first),
                timeouts: no_timeout(),
            });
        }
        docs.push(yaml(&objects::http_route(
            rname,
            ns,
            objects::HttpRouteSpec {
                parent_refs: parent_refs.clone(),
                hostnames: served.hostnames.clone(),
                rules,
            },
        ))?);
    }
    let route_targets: Vec<ObjectRef> = route_names
        .iter()
        .map(|r| ObjectRef::new(GATEWAY_API, "HTTPRoute", r))
        .collect();

    // The filter.
    let (wasm, dynamic_module, code_note) = match (&o.code, &module) {
        (Code::Module(_), Some(m)) => (
            vec![],
            vec![objects::DynamicModule {
                name: mcpgw_module::names::MODULE_NAME,
                filter_name: mcpgw_module::names::FILTER_NAME,
                config: plugin_value,
            }],
            m.note.clone(),
        ),
        (Code::Wasm(c), _) => {
            let (code, note) = wasm_code(c, &o.sha256, &mut w)?;
            (
                vec![objects::Wasm {
                    name: "mcpgw",
                    root_id: "mcpgw",
                    code,
                    config: plugin_value,
                    fail_open: false,
                    env: objects::WasmEnv {
                        host_keys: keys.clone(),
                    },
                }],
                vec![],
                note,
            )
        }
        (Code::Module(_), None) => return Err("internal: module code not checked".into()),
    };
    docs.push(yaml(&objects::eg(
        "EnvoyExtensionPolicy",
        &route,
        ns,
        objects::ExtensionPolicySpec {
            target_refs: route_targets.clone(),
            wasm,
            dynamic_module,
        },
    ))?);

    // Per Gateway listener: the wasm settings the Wasm API lacks (the
    // module needs none), and the timeouts SSE needs.
    let filter_name = format!("envoy.filters.http.wasm/envoyextensionpolicy/{ns}/{route}/wasm/0");
    let mut seen = Vec::new();
    for p in &parents {
        let listener = p.r.section_name.clone().unwrap_or_else(|| "http".into());
        let id = (p.ns.clone(), p.r.name.clone(), listener.clone());
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let op = |path: &'static str, value: serde_json::Value| objects::JsonPatch {
            ty: "type.googleapis.com/envoy.config.listener.v3.Listener",
            name: format!("{}/{}/{listener}", p.ns, p.r.name),
            operation: objects::PatchOperation {
                op: "add",
                json_path: format!(
                    "..http_filters[?(@.name=='{filter_name}')].typed_config.config"
                ),
                path,
                value,
            },
        };
        let gateway_ref = ObjectRef::new(GATEWAY_API, "Gateway", &p.r.name);
        let suffix = match &p.r.section_name {
            Some(l) => format!("{}-{l}", p.r.name),
            None => p.r.name.clone(),
        };
        if module.is_none() {
            docs.push(yaml(&objects::eg(
                "EnvoyPatchPolicy",
                &names::owned(ns, &g.kube.name, &p.ns, &format!("wasm-{suffix}")),
                &p.ns,
                objects::PatchPolicySpec {
                    target_ref: gateway_ref.clone(),
                    ty: "JSONPatch",
                    json_patches: vec![
                        op(
                            "allow_on_headers_stop_iteration",
                            serde_json::Value::Bool(true),
                        ),
                        op("failure_policy", serde_json::Value::from("FAIL_RELOAD")),
                    ],
                },
            ))?);
        }
        docs.push(yaml(&objects::eg(
            "ClientTrafficPolicy",
            &names::owned(ns, &g.kube.name, &p.ns, &suffix),
            &p.ns,
            objects::TrafficPolicySpec {
                target_refs: vec![ObjectRef {
                    section_name: p.r.section_name.clone(),
                    ..gateway_ref
                }],
                timeout: objects::ClientTimeout {
                    http: objects::HttpClientTimeout {
                        stream_idle_timeout: "3600s",
                    },
                },
                connection: objects::ClientConnection {
                    buffer_limit: "8Mi",
                },
            },
        ))?);
    }

    if let Some(oauth) = &served.oauth {
        let (remote_jwks, local_jwks) = match &oauth.jwks {
            Some(Jwks::Remote {
                uri,
                cache_duration,
            }) => (
                Some(objects::RemoteJwks {
                    uri: uri.clone(),
                    cache_duration: cache_duration.clone(),
                }),
                None,
            ),
            Some(Jwks::Local { json }) => (
                None,
                Some(objects::LocalJwks {
                    ty: "Inline",
                    inline: json.clone(),
                }),
            ),
            None => {
                return Err(format!(
                    "{}: spec.securityPolicy.oauth.jwks is not set; Envoy Gateway's JWT provider needs remoteJWKS.uri (the issuer's jwks_uri) or localJWKS",
                    served.source
                ))
            }
        };
        docs.push(yaml(&objects::eg(
            "SecurityPolicy",
            &route,
            ns,
            objects::SecurityPolicySpec {
                target_refs: route_targets,
                jwt: objects::Jwt {
                    // jwt_authn's allow_missing_or_failed: the filter answers
                    // the MCP 401 (with its WWW-Authenticate) itself.
                    fail_open: plugin::auth_plugin_config(&served).is_some(),
                    providers: vec![objects::JwtProvider {
                        name: JWT_PROVIDER,
                        issuer: oauth.issuer.clone(),
                        audiences: oauth.audiences.clone(),
                        remote_jwks,
                        local_jwks,
                        claim_to_headers: oauth
                            .claim_to_headers
                            .iter()
                            .map(|(h, c)| objects::ClaimToHeader {
                                header: h.clone(),
                                claim: c.clone(),
                            })
                            .collect(),
                    }],
                },
            },
        ))?);
    }

    let header = Header {
        g: &served,
        o,
        route: &route,
        routes: &route_names,
        code_note: &code_note,
        parents: &parents,
        proxies: &proxies,
        creds: &creds,
        creds_secret: &creds_secret,
    };
    let mut text = header.text();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&d);
    }
    Ok(Rendered { text, warnings: w })
}

/// A variable the Envoy container reads from mcpgw's credentials Secret,
/// which the user creates (its values are never in the output).
struct Credential {
    var: String,
    /// Copied from this Secret and key of the route's namespace.
    from: Option<(String, String)>,
}

/// Why Envoy Gateway refuses a Backend endpoint on this host, if it does
/// (its `validateBackend`: loopback addresses, host names that are not a
/// DNS-1123 subdomain of at least two labels).
fn refused_host(host: &Host) -> Option<String> {
    match host {
        Host::Ip(ip) if ip.is_loopback() => Some(format!(
            "{ip} is a loopback address, which Envoy Gateway refuses in a Backend (Envoy runs in its own pod: give the server's in-cluster address)"
        )),
        Host::Ip(_) => None,
        Host::Name(n) if n == "localhost" || n.ends_with(".localhost") => Some(format!(
            "{n} is a loopback name, which Envoy Gateway refuses in a Backend (Envoy runs in its own pod: give the server's in-cluster address)"
        )),
        Host::Name(n) if !names::is_subdomain(n.trim_end_matches('.')) => Some(format!(
            "host name \"{n}\" is not a valid DNS-1123 name (lower-case letters, digits, '-' and '.'), which Envoy Gateway requires"
        )),
        Host::Name(n) if !n.trim_end_matches('.').contains('.') => Some(format!(
            "Envoy Gateway needs a host name of at least two labels, not \"{n}\": use the Service's full name ({n}.<namespace>.svc.cluster.local)"
        )),
        Host::Name(_) => None,
    }
}

/// Route `hostnames` must be Gateway API Hostnames: DNS names (a leading
/// `*.` allowed), never IP addresses, at most 16.
fn check_hostnames(g: &Gateway) -> Result<(), String> {
    if g.hostnames.len() > MAX_HOSTNAMES {
        return Err(format!(
            "{}: spec.hostnames: at most {MAX_HOSTNAMES} hostnames (Gateway API's limit)",
            g.source
        ));
    }
    for h in &g.hostnames {
        let name = h.strip_prefix("*.").unwrap_or(h);
        if !names::is_subdomain(name) || name.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!(
                "{}: spec.hostnames: \"{h}\" is not a Gateway API hostname (a DNS name, optionally starting with \"*.\"; no IP address, no port)",
                g.source
            ));
        }
    }
    Ok(())
}

/// The `code` of the Wasm extension, and the header's line about it.
fn wasm_code(
    code: &WasmCode,
    sha256: &str,
    w: &mut Vec<String>,
) -> Result<(objects::WasmCode, String), String> {
    match code {
        WasmCode::Http(url) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "--wasm-url \"{url}\": must be an http:// or https:// URL the Envoy Gateway controller can download"
                ));
            }
            Ok((
                objects::WasmCode {
                    ty: "HTTP",
                    http: Some(objects::CodeUrl {
                        url: url.clone(),
                        sha256: Some(sha256.to_string()),
                    }),
                    image: None,
                },
                format!("downloaded from {url}, pinned by the file's sha256 {sha256}: publish exactly this build"),
            ))
        }
        WasmCode::Image(reference) => {
            let (sha, note) = match image_digest("--wasm-image", reference)? {
                Some(hex) => {
                    (
                        Some(hex),
                        format!("from the OCI image {reference}, pinned by its manifest digest; the image must hold this build (sha256 {sha256}) as plugin.wasm"),
                    )
                }
                None => {
                    w.push(format!(
                        "--wasm-image {reference}: not pinned; Envoy Gateway loads whatever the tag points to when it fetches it. Pin it with REF@sha256:<manifest digest> (`crane digest REF`, or `docker buildx imagetools inspect REF`)"
                    ));
                    (
                        None,
                        format!("from the OCI image {reference} (tag, not pinned); the image must hold this build (sha256 {sha256}) as plugin.wasm"),
                    )
                }
            };
            Ok((
                objects::WasmCode {
                    ty: "Image",
                    http: None,
                    image: Some(objects::CodeUrl {
                        url: reference.clone(),
                        sha256: sha,
                    }),
                },
                note,
            ))
        }
    }
}

/// The dynamic module's code, checked: what the EnvoyProxy adds and the
/// header's line about it.
struct Module {
    /// Absolute path of libmcpgw.so in the Envoy container.
    path: String,
    /// `--module-image`: mounted as an image volume.
    image: Option<String>,
    envoy_image: String,
    note: String,
}

impl Module {
    fn proxy(&self) -> objects::ModuleProxy {
        let (pod, volume_mounts) = match &self.image {
            Some(reference) => (
                Some(objects::Pod {
                    volumes: vec![objects::Volume {
                        name: MODULE_VOLUME,
                        image: objects::ImageVolumeSource {
                            reference: reference.clone(),
                        },
                    }],
                }),
                vec![objects::VolumeMount {
                    name: MODULE_VOLUME,
                    mount_path: MODULE_MOUNT,
                    read_only: true,
                }],
            ),
            None => (None, vec![]),
        };
        objects::ModuleProxy {
            envoy_image: self.envoy_image.clone(),
            pod,
            volume_mounts,
            entry: objects::DynamicModuleEntry {
                name: mcpgw_module::names::MODULE_NAME,
                source: objects::DynamicModuleSource {
                    ty: "Local",
                    local: objects::LocalModule {
                        path: self.path.clone(),
                    },
                },
                // The module keeps process-wide state (its shared store, the
                // resolved Envoy callbacks); Envoy Gateway re-sends the
                // listener on every change, which must not unload it.
                do_not_close: true,
            },
        }
    }
}

/// An OCI reference's `@sha256:` digest, checked; `None` for a tag.
fn image_digest(flag: &str, reference: &str) -> Result<Option<String>, String> {
    let Some((_, digest)) = reference.split_once('@') else {
        return Ok(None);
    };
    digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .map(|h| Some(h.to_string()))
        .ok_or_else(|| {
            format!(
                "{flag} \"{reference}\": the digest must be sha256: and 64 lower-case hex digits (the image's manifest digest)"
            )
        })
}

fn is_image_ref(r: &str) -> bool {
    !r.is_empty() && !r.starts_with(['-', '/', ':', '@']) && !r.contains(char::is_whitespace)
}

fn module_code(m: &ModuleCode, sha256: &str, w: &mut Vec<String>) -> Result<Module, String> {
    let file = mcpgw_module::names::LIBRARY_FILE;
    if !is_image_ref(&m.envoy_image) {
        return Err(format!(
            "--envoy-image \"{}\": not an image reference (REPO:TAG or REPO@sha256:DIGEST of an Envoy 1.40 image)",
            m.envoy_image
        ));
    }
    if m.envoy_image != MODULE_ENVOY_IMAGE {
        w.push(format!(
            "--envoy-image {}: it must run Envoy 1.40.x on Linux x86_64; {file} speaks Envoy 1.40's dynamic-module ABI v0.2.0 and any other Envoy refuses to load it ({MODULE_ENVOY_IMAGE} does)",
            m.envoy_image
        ));
    }
    match &m.source {
        ModuleSource::Image(reference) => {
            if !is_image_ref(reference) {
                return Err(format!(
                    "--module-image \"{reference}\": not an image reference (REPO:TAG, or REPO@sha256:DIGEST to pin it)"
                ));
            }
            let pinned = image_digest("--module-image", reference)?.is_some();
            if !pinned {
                w.push(format!(
                    "--module-image {reference}: not pinned; the kubelet mounts whatever the tag points to. Pin it with REF@sha256:<manifest digest> (`crane digest REF`, or `docker buildx imagetools inspect REF`)"
                ));
            }
            let path = format!("{MODULE_MOUNT}/{file}");
            Ok(Module {
                note: format!(
                    "from the OCI image {reference}{}, an image volume mounted at {MODULE_MOUNT} (Kubernetes v1.35+, or the ImageVolume feature gate); the image must hold this build (sha256 {sha256}) as /{file}",
                    if pinned { " (pinned by its manifest digest)" } else { " (tag, not pinned)" }
                ),
                path,
                image: Some(reference.clone()),
                envoy_image: m.envoy_image.clone(),
            })
        }
        ModuleSource::Path(path) => {
            if !path.starts_with('/') || path.len() > 4096 || path.contains(['\0', '\n']) {
                return Err(format!(
                    "--module \"{path}\": with --kubernetes, the absolute path of {file} in the Envoy container (Envoy Gateway's dynamicModules source.local.path), e.g. /opt/mcpgw/{file}"
                ));
            }
            if m.envoy_image == MODULE_ENVOY_IMAGE {
                w.push(format!(
                    "--module {path}: the stock image {MODULE_ENVOY_IMAGE} has no {file}; bring it there with your own Envoy 1.40 image (--envoy-image) or a volume in the GatewayClass's EnvoyProxy, or use --module-image"
                ));
            }
            Ok(Module {
                note: format!(
                    "loaded from {path} in the Envoy container, which must hold this build (sha256 {sha256})"
                ),
                path: path.clone(),
                image: None,
                envoy_image: m.envoy_image.clone(),
            })
        }
    }
}

/// A Backend or BackendTLSPolicy document of the input, as it goes out:
/// `None` when it belongs to a left-out backend. BackendTLSPolicy
/// `v1alpha3` becomes `v1` (same fields): Gateway API's standard channel
/// no longer serves v1alpha3 and Envoy Gateway v1.9 reads v1 only.
fn pass_through(
    v: &serde_norway::Value,
    dropped: &[String],
    w: &mut Vec<String>,
) -> Option<serde_norway::Value> {
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let name = v
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("");
    match kind {
        "Backend" if dropped.iter().any(|d| d == name) => None,
        "BackendTLSPolicy" => {
            let targets: Vec<&str> = v
                .get("spec")
                .and_then(|s| s.get("targetRefs"))
                .and_then(|t| t.as_sequence())
                .map(|t| {
                    t.iter()
                        .filter_map(|r| r.get("name").and_then(|n| n.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            if !targets.is_empty() && targets.iter().all(|t| dropped.iter().any(|d| d == t)) {
                return None;
            }
            let mut out = v.clone();
            let old = "gateway.networking.k8s.io/v1alpha3";
            if v.get("apiVersion").and_then(|a| a.as_str()) == Some(old) {
                w.push(format!(
                    "BackendTLSPolicy \"{name}\": written as gateway.networking.k8s.io/v1 (v1alpha3 is not served on Gateway API's standard channel, and Envoy Gateway v1.9 reads v1)"
                ));
                if let Some(m) = out.as_mapping_mut() {
                    m.insert(
                        serde_norway::Value::from("apiVersion"),
                        serde_norway::Value::from("gateway.networking.k8s.io/v1"),
                    );
                }
            }
            Some(out)
        }
        _ => Some(v.clone()),
    }
}

/// The comment block at the top of the output: requirements, how routing
/// works, and what to do before applying.
struct Header<'a> {
    g: &'a Gateway,
    o: &'a Options,
    route: &'a str,
    routes: &'a [String],
    code_note: &'a str,
    parents: &'a [Parent<'a>],
    proxies: &'a [(String, String)],
    creds: &'a BTreeMap<String, Vec<Credential>>,
    creds_secret: &'a dyn Fn(&str) -> String,
}

impl Header<'_> {
    fn text(&self) -> String {
        let g = self.g;
        let ns = &g.kube.namespace;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str("# ");
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "Generated by mcpgw {} from {} for Envoy Gateway {MIN_ENVOY_GATEWAY} or later (Gateway API v1.4+ CRDs).",
            env!("CARGO_PKG_VERSION"),
            g.source
        ));
        let module = match &self.o.code {
            Code::Module(m) => Some(m),
            Code::Wasm(_) => None,
        };
        match module {
            Some(m) => {
                line(format!(
                    "{}: {}.",
                    mcpgw_module::names::LIBRARY_FILE,
                    self.code_note
                ));
                line(format!(
                    "Envoy: the EnvoyProxy sets the image {}: the module is built for Envoy 1.40 (dynamic-module ABI v0.2.0)",
                    m.envoy_image
                ));
                line("on Linux x86_64 and no other Envoy version loads it (Envoy Gateway v1.9 runs Envoy 1.39 by default).".into());
                line("Envoy Gateway's configuration (EnvoyGateway) must have:".into());
                line("  extensionApis: {enableBackend: true}".into());
            }
            None => {
                line(format!("mcpgw.wasm: {}.", self.code_note));
                line("Envoy Gateway's configuration (EnvoyGateway) must have:".into());
                line("  extensionApis: {enableBackend: true, enableEnvoyPatchPolicy: true}".into());
            }
        }
        match &self.o.deploy {
            Deploy::ControllerNamespace(c) => line(format!(
                "  provider.kubernetes.deploy.type ControllerNamespace (the default), the controller in namespace {c}: the Envoy pods and the Secrets they read are there"
            )),
            Deploy::GatewayNamespace => line(
                "  provider.kubernetes.deploy.type GatewayNamespace: the Envoy pods and the Secrets they read are in each Gateway's namespace".into(),
            ),
        }
        line("  no mergeBackends (GatewayClass or default EnvoyProxy) and no XDSNameSchemeV2 runtime flag: the filter addresses".into());
        let clusters = eg_cluster(ns, self.route, 0).replace("/rule/0", "/rule/<i>");
        if module.is_some() {
            line(format!("  the per-rule clusters {clusters}."));
        } else {
            line(format!(
                "  the per-rule clusters {clusters} and the EnvoyPatchPolicy names the listener <namespace>/<gateway>/<listener>."
            ));
        }
        line(format!(
            "Routing: the filter runs on the HTTPRoute rule for {} (and the OAuth discovery paths it answers); for a routed call it",
            g.path
        ));
        line("sets x-mcpgw-cluster, and the rule matching that value (same path, plus one header match: it outranks the".into());
        line("catch-all in any order) rewrites host and path to the backend's. Fan-out calls go to the rules' clusters directly.".into());
        if self.routes.len() > 1 {
            line(format!(
                "{} backends need {} HTTPRoutes ({} rules each at most): {}.",
                g.backends.len(),
                self.routes.len(),
                MAX_RULES,
                self.routes.join(", ")
            ));
        }
        line("Before applying:".into());
        for (gn, proxy) in self.proxies {
            for p in self.parents.iter().filter(|p| &p.ns == gn) {
                line(format!(
                    " - Gateway {gn}/{} must use the EnvoyProxy {proxy} (it gets the Envoy container's environment{}):",
                    p.r.name,
                    if module.is_some() {
                        ", the Envoy image and the module"
                    } else {
                        ""
                    }
                ));
                line(format!(
                    "   kubectl -n {gn} patch gateway {} --type merge -p '{{\"spec\":{{\"infrastructure\":{{\"parametersRef\":{{\"group\":\"gateway.envoyproxy.io\",\"kind\":\"EnvoyProxy\",\"name\":\"{proxy}\"}}}}}}}}'",
                    p.r.name
                ));
            }
        }
        for (pn, list) in self.creds {
            let secret = (self.creds_secret)(pn);
            line(format!(
                " - create the Secret {pn}/{secret} with the backends' credentials:"
            ));
            let args: String = list
                .iter()
                .map(|c| match &c.from {
                    None => format!(" --from-literal={}=...", c.var),
                    Some((s, k)) => format!(
                        " --from-literal={}=\"$(kubectl -n {ns} get secret {s} -o jsonpath='{{.data.{k}}}' | base64 -d)\"",
                        c.var
                    ),
                })
                .collect();
            line(format!(
                "   kubectl -n {pn} create secret generic {secret}{args}"
            ));
        }
        out
    }
}

/// One document as YAML text.
fn yaml<T: Serialize>(doc: &T) -> Result<String, String> {
    serde_norway::to_string(doc).map_err(|e| format!("internal: YAML: {e}"))
}
