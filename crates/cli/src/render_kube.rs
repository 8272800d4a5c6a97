//! [`Gateway`] -> Envoy Gateway manifests, so the file that runs locally goes
//! to a cluster unchanged.
//!
//! How mcpgw's routing maps onto Envoy Gateway (verified against Envoy
//! Gateway's translator source, not against a live cluster):
//!
//! * The filter names a backend's *Envoy cluster* in two places: the
//!   `x-mcpgw-cluster` header it sets on routed requests, and the
//!   `dispatch_http_call` it makes for fan-out calls (`initialize`, lists,
//!   DELETE). The second needs the real cluster name. Envoy Gateway names the
//!   cluster of HTTPRoute rule `i` `httproute/<namespace>/<route>/rule/<i>`, so
//!   the HTTPRoute gets one rule per backend, in backend order, matching
//!   `x-mcpgw-cluster: httproute/<ns>/<route>/rule/<i>`, and the plugin
//!   config's `cluster` of backend `i` is that same string. A last rule without
//!   a header match catches the requests the filter answers itself. This
//!   breaks if the Gateway's EnvoyProxy enables `mergeBackends` (clusters are
//!   then named after the Backend) or if the rules are reordered.
//! * Envoy Gateway's Wasm API has no `allow_on_headers_stop_iteration` and no
//!   `failure_policy`; an EnvoyPatchPolicy sets both on the listener's wasm
//!   filter (Envoy Gateway must run with `extensionApis.enableEnvoyPatchPolicy:
//!   true`). Without it requests hang.
//! * The Wasm API's `env` only has `hostKeys` (names of the Envoy container's
//!   environment variables); it cannot read a Secret. So the session key lives
//!   in a Secret, an EnvoyProxy adds it to the Envoy container's environment
//!   (`valueFrom.secretKeyRef`), and `hostKeys` hands it to the filter. Backend
//!   API keys from `secretRef`s travel the same way. The Gateway must use that
//!   EnvoyProxy (`spec.infrastructure.parametersRef`).
//! * OAuth: a SecurityPolicy `jwt` whose provider is named `jwt_payload`,
//!   because Envoy Gateway stores the payload under the provider's name: the
//!   same metadata key as the standalone config. `failOpen` (Envoy's
//!   `allow_missing_or_failed`) is on only when the plugin config carries the
//!   filter's `auth` member (see `plugin::auth_plugin_config`); until then
//!   Envoy rejects requests without a valid token. Envoy Gateway has no
//!   setting for jwt_authn's `forward_payload_header`.
//! * Timeouts: rules have `timeouts.request: 0s`; a ClientTrafficPolicy on the
//!   Gateway sets the stream idle timeout SSE needs (it applies to the whole
//!   Gateway).
//! * The dynamic module ([`WasmCode::Module`], `--engine module`): the
//!   EnvoyProxy registers it (`spec.dynamicModules`, fetched by URL with its
//!   sha256 pinned) and the EnvoyExtensionPolicy runs it
//!   (`spec.dynamicModule`), which needs an Envoy Gateway with that API; no
//!   EnvoyPatchPolicy (the module needs no extra filter settings). It reads
//!   the session key from the Envoy container's environment directly. Its
//!   OAuth needs jwt_authn's forwarded payload, which Envoy Gateway cannot
//!   configure: with OAuth, Envoy Gateway runs the wasm build.

use crate::model::{Gateway, Jwks, SecretValue, Target};
use crate::plugin::{self, Upstream, PREVIOUS_SESSION_KEY_VAR, SESSION_KEY_VAR};
use crate::render_envoy::{env_keys, ROUTE_HEADER};
use crate::yaml::{m, s, seq, Y};

pub const JWT_PROVIDER: &str = "jwt_payload";

#[derive(Debug, Clone)]
pub enum WasmCode {
    Http(String),
    Image(String),
    /// The dynamic module libmcpgw.so, from this HTTP(S) URL.
    Module(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub code: WasmCode,
    pub sha256: String,
    pub session_key: String,
    pub previous_key: Option<String>,
}

impl Options {
    /// Placeholders, for `check --kubernetes`.
    pub fn for_check(_: &Gateway) -> Options {
        Options {
            code: WasmCode::Image("oci://example/mcpgw:check".into()),
            sha256: crate::wasm_sha256(),
            session_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
            previous_key: None,
        }
    }
}

fn meta(name: &str, ns: &str) -> Y {
    m(vec![("name", s(name)), ("namespace", s(ns))])
}

/// Name of the Envoy cluster Envoy Gateway generates for rule `i` of `route`.
pub fn eg_cluster(ns: &str, route: &str, i: usize) -> String {
    format!("httproute/{ns}/{route}/rule/{i}")
}

pub fn render(
    g: &Gateway,
    passthrough: &[serde_norway::Value],
    o: &Options,
) -> Result<String, String> {
    let ns = &g.kube.namespace;
    let name = &g.kube.name;
    let mut warnings = Vec::new();
    let mut docs: Vec<Y> = Vec::new();

    let backends: Vec<_> = g
        .backends
        .iter()
        .filter(|b| {
            let keep = !matches!(b.target, Target::Stdio(_));
            if !keep {
                warnings.push(format!(
                    "server \"{}\" is a stdio server: a cluster cannot run it; left out (run it as an HTTP service and add it by URL)",
                    b.name
                ));
            }
            keep
        })
        .cloned()
        .collect();
    if backends.is_empty() {
        return Err("no backend left for Kubernetes (stdio servers need `mcpgw run`)".into());
    }
    let mut served = g.clone();
    served.backends = backends;
    let json = plugin::plugin_json(&served, o.previous_key.is_some(), &|i, b| {
        let (authority, path) = match &b.target {
            Target::Http(t) => (Some(t.authority()), t.path.clone()),
            Target::InCluster { path, .. } => (None, path.clone()),
            Target::Stdio(_) => (None, "/mcp".into()),
        };
        Upstream {
            cluster: eg_cluster(ns, name, i),
            authority,
            path,
            timeout: None,
        }
    });
    plugin::validate(&served, &json, &crate::check_env(&served, true))?;
    for b in &served.backends {
        if let Target::InCluster { backend, .. } = &b.target {
            warnings.push(format!(
                "backend \"{}\": Backend \"{backend}\" is not in the input, so mcpgw does not know its host: requests to it keep the client's Host header",
                b.name
            ));
        }
    }
    let plugin_value: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("internal: plugin JSON: {e}"))?;
    let module_url = match &o.code {
        WasmCode::Module(url) => Some(url.clone()),
        _ => None,
    };
    if module_url.is_some() && served.oauth.is_some() {
        return Err(format!(
            "{}: with OAuth, Envoy Gateway needs the wasm build (--engine wasm with --wasm-url or --wasm-image): the dynamic module reads the token's claims from jwt_authn's forwarded payload, and Envoy Gateway cannot configure forward_payload_header",
            served.source
        ));
    }

    // The session key, and the environment of the Envoy container.
    let key_secret = format!("{name}-session-key");
    let mut key_data = vec![(SESSION_KEY_VAR, s(&o.session_key))];
    if let Some(p) = &o.previous_key {
        key_data.push((PREVIOUS_SESSION_KEY_VAR, s(p)));
    }
    docs.push(m(vec![
        ("apiVersion", s("v1")),
        ("kind", s("Secret")),
        ("metadata", meta(&key_secret, ns)),
        ("type", s("Opaque")),
        ("stringData", m(key_data)),
    ]));
    let keys = env_keys(&served, o.previous_key.is_some());
    let creds_secret = format!("{name}-credentials");
    let mut needs_creds = Vec::new();
    let mut env = Vec::new();
    for k in &keys {
        let (secret, key) = if k == SESSION_KEY_VAR || k == PREVIOUS_SESSION_KEY_VAR {
            (key_secret.clone(), k.clone())
        } else if let Some(se) = served.secret_env.iter().find(|se| &se.var == k) {
            if se.value == SecretValue::HostEnv {
                warnings.push(format!(
                    "Secret \"{}\": its key {} must hold the real value in the cluster (the substitution.aigw.run annotation is for local runs only)",
                    se.secret, se.key
                ));
            }
            (se.secret.clone(), se.key.clone())
        } else {
            needs_creds.push(k.clone());
            (creds_secret.clone(), k.clone())
        };
        env.push(m(vec![
            ("name", s(k)),
            (
                "valueFrom",
                m(vec![(
                    "secretKeyRef",
                    m(vec![("name", s(&secret)), ("key", s(&key))]),
                )]),
            ),
        ]));
    }
    let proxy = format!("{name}-proxy");
    let mut proxy_spec = vec![(
        "provider",
        m(vec![
            ("type", s("Kubernetes")),
            (
                "kubernetes",
                m(vec![(
                    "envoyDeployment",
                    m(vec![("container", m(vec![("env", seq(env))]))]),
                )]),
            ),
        ]),
    )];
    if let Some(url) = &module_url {
        // The registry of modules this Envoy may run.
        proxy_spec.push((
            "dynamicModules",
            seq([m(vec![
                ("name", s(mcpgw_module::names::MODULE_NAME)),
                (
                    "source",
                    m(vec![
                        ("type", s("Remote")),
                        ("remote", m(vec![("url", s(url)), ("sha256", s(&o.sha256))])),
                    ]),
                ),
            ])]),
        ));
    }
    docs.push(m(vec![
        ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
        ("kind", s("EnvoyProxy")),
        ("metadata", meta(&proxy, ns)),
        ("spec", m(proxy_spec)),
    ]));

    // Backends: as written in the input, or made from the servers file's URLs.
    let mut backend_names = Vec::new();
    for v in passthrough {
        docs.push(yaml_value(v));
    }
    for b in &served.backends {
        match &b.target {
            Target::Http(t) => {
                let bname = t.kube_backend.clone().unwrap_or_else(|| b.name.clone());
                if t.kube_backend.is_none() {
                    let endpoint = match &t.host {
                        crate::model::Host::Name(h) => m(vec![(
                            "fqdn",
                            m(vec![
                                ("hostname", s(h)),
                                ("port", Y::Int(i64::from(t.port))),
                            ]),
                        )]),
                        crate::model::Host::Ip(ip) => m(vec![(
                            "ip",
                            m(vec![
                                ("address", s(ip.to_string())),
                                ("port", Y::Int(i64::from(t.port))),
                            ]),
                        )]),
                    };
                    let mut spec = vec![("endpoints", seq([endpoint]))];
                    if let Some(tls) = &t.tls {
                        spec.push((
                            "tls",
                            m(vec![
                                ("wellKnownCACertificates", s("System")),
                                ("sni", s(&tls.sni)),
                            ]),
                        ));
                    }
                    docs.push(m(vec![
                        ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
                        ("kind", s("Backend")),
                        ("metadata", meta(&bname, ns)),
                        ("spec", m(spec)),
                    ]));
                }
                backend_names.push(bname);
            }
            Target::InCluster { backend, .. } => backend_names.push(backend.clone()),
            Target::Stdio(_) => {}
        }
    }

    // The HTTPRoute: one rule per backend selected by the filter's header, then
    // a catch-all for what the filter answers itself.
    let backend_ref = |n: &str| {
        m(vec![
            ("group", s("gateway.envoyproxy.io")),
            ("kind", s("Backend")),
            ("name", s(n)),
        ])
    };
    let no_timeout = || m(vec![("request", s("0s"))]);
    let mut rules = Vec::new();
    for (i, bname) in backend_names.iter().enumerate() {
        rules.push(m(vec![
            (
                "matches",
                seq([m(vec![(
                    "headers",
                    seq([m(vec![
                        ("type", s("Exact")),
                        ("name", s(ROUTE_HEADER)),
                        ("value", s(eg_cluster(ns, name, i))),
                    ])]),
                )])]),
            ),
            ("backendRefs", seq([backend_ref(bname)])),
            ("timeouts", no_timeout()),
        ]));
    }
    let first = backend_names.first().cloned().unwrap_or_default();
    rules.push(m(vec![
        (
            "matches",
            seq([m(vec![(
                "path",
                m(vec![("type", s("PathPrefix")), ("value", s(&served.path))]),
            )])]),
        ),
        ("backendRefs", seq([backend_ref(&first)])),
        ("timeouts", no_timeout()),
    ]));
    let parent_refs = seq(served.kube.parent_refs.iter().map(|p| {
        let mut v = vec![
            ("group", s("gateway.networking.k8s.io")),
            ("kind", s("Gateway")),
            ("name", s(&p.name)),
        ];
        if let Some(n) = &p.namespace {
            v.push(("namespace", s(n)));
        }
        if let Some(sn) = &p.section_name {
            v.push(("sectionName", s(sn)));
        }
        if let Some(port) = p.port {
            v.push(("port", Y::Int(i64::from(port))));
        }
        m(v)
    }));
    let mut route_spec = vec![("parentRefs", parent_refs.clone())];
    if !served.hostnames.is_empty() {
        route_spec.push(("hostnames", seq(served.hostnames.iter().map(s))));
    }
    route_spec.push(("rules", seq(rules)));
    docs.push(m(vec![
        ("apiVersion", s("gateway.networking.k8s.io/v1")),
        ("kind", s("HTTPRoute")),
        ("metadata", meta(name, ns)),
        ("spec", m(route_spec)),
    ]));

    let route_target = || {
        seq([m(vec![
            ("group", s("gateway.networking.k8s.io")),
            ("kind", s("HTTPRoute")),
            ("name", s(name)),
        ])])
    };
    let extension = match &o.code {
        WasmCode::Module(_) => (
            "dynamicModule",
            seq([m(vec![
                ("name", s(mcpgw_module::names::MODULE_NAME)),
                ("filterName", s(mcpgw_module::names::FILTER_NAME)),
                ("config", Y::from_json(&plugin_value)),
            ])]),
        ),
        WasmCode::Http(_) | WasmCode::Image(_) => {
            let code = match &o.code {
                WasmCode::Image(url) => m(vec![
                    ("type", s("Image")),
                    ("image", m(vec![("url", s(url)), ("sha256", s(&o.sha256))])),
                ]),
                WasmCode::Http(url) | WasmCode::Module(url) => m(vec![
                    ("type", s("HTTP")),
                    ("http", m(vec![("url", s(url)), ("sha256", s(&o.sha256))])),
                ]),
            };
            (
                "wasm",
                seq([m(vec![
                    ("name", s("mcpgw")),
                    ("rootID", s("mcpgw")),
                    ("code", code),
                    ("config", Y::from_json(&plugin_value)),
                    ("failOpen", Y::Bool(false)),
                    ("env", m(vec![("hostKeys", seq(keys.iter().map(s)))])),
                ])]),
            )
        }
    };
    docs.push(m(vec![
        ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
        ("kind", s("EnvoyExtensionPolicy")),
        ("metadata", meta(name, ns)),
        ("spec", m(vec![("targetRefs", route_target()), extension])),
    ]));

    // allow_on_headers_stop_iteration and failure_policy, which the Wasm API lacks.
    let filter_name = format!("envoy.filters.http.wasm/envoyextensionpolicy/{ns}/{name}/wasm/0");
    for p in &served.kube.parent_refs {
        let gw_ns = p.namespace.clone().unwrap_or_else(|| ns.clone());
        let listener = p.section_name.clone().unwrap_or_else(|| "http".into());
        if p.section_name.is_none() && module_url.is_none() {
            warnings.push(format!(
                "EnvoyPatchPolicy: the Gateway listener is assumed to be named \"http\" ({gw_ns}/{}/http); set parentRefs[].sectionName to name it",
                p.name
            ));
        }
        let op = |path: &str, value: Y| {
            m(vec![
                (
                    "type",
                    s("type.googleapis.com/envoy.config.listener.v3.Listener"),
                ),
                ("name", s(format!("{gw_ns}/{}/{listener}", p.name))),
                (
                    "operation",
                    m(vec![
                        ("op", s("add")),
                        (
                            "jsonPath",
                            s(format!(
                                "..http_filters[?(@.name=='{filter_name}')].typed_config.config"
                            )),
                        ),
                        ("path", s(path)),
                        ("value", value),
                    ]),
                ),
            ])
        };
        if module_url.is_none() {
            docs.push(m(vec![
                ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
                ("kind", s("EnvoyPatchPolicy")),
                ("metadata", meta(&format!("{name}-wasm-{}", p.name), &gw_ns)),
                (
                    "spec",
                    m(vec![
                        (
                            "targetRef",
                            m(vec![
                                ("group", s("gateway.networking.k8s.io")),
                                ("kind", s("Gateway")),
                                ("name", s(&p.name)),
                            ]),
                        ),
                        ("type", s("JSONPatch")),
                        (
                            "jsonPatches",
                            seq([
                                op("allow_on_headers_stop_iteration", Y::Bool(true)),
                                op("failure_policy", s("FAIL_RELOAD")),
                            ]),
                        ),
                    ]),
                ),
            ]));
        }
        docs.push(m(vec![
            ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
            ("kind", s("ClientTrafficPolicy")),
            ("metadata", meta(&format!("{name}-{}", p.name), &gw_ns)),
            (
                "spec",
                m(vec![
                    (
                        "targetRefs",
                        seq([m(vec![
                            ("group", s("gateway.networking.k8s.io")),
                            ("kind", s("Gateway")),
                            ("name", s(&p.name)),
                        ])]),
                    ),
                    (
                        "timeout",
                        m(vec![("http", m(vec![("streamIdleTimeout", s("3600s"))]))]),
                    ),
                    ("connection", m(vec![("bufferLimit", s("8Mi"))])),
                ]),
            ),
        ]));
    }

    if let Some(oauth) = &served.oauth {
        let mut provider = vec![("name", s(JWT_PROVIDER)), ("issuer", s(&oauth.issuer))];
        if !oauth.audiences.is_empty() {
            provider.push(("audiences", seq(oauth.audiences.iter().map(s))));
        }
        match &oauth.jwks {
            Some(Jwks::Remote { uri, cache_duration }) => {
                let mut r = vec![("uri", s(uri))];
                if let Some(d) = cache_duration {
                    r.push(("cacheDuration", s(d)));
                }
                provider.push(("remoteJWKS", m(r)));
            }
            Some(Jwks::Local { json }) => provider.push((
                "localJWKS",
                m(vec![("type", s("Inline")), ("inline", s(json))]),
            )),
            None => {
                return Err(format!(
                    "{}: spec.securityPolicy.oauth.jwks is not set; Envoy Gateway's JWT provider needs remoteJWKS.uri (the issuer's jwks_uri) or localJWKS",
                    served.source
                ))
            }
        }
        if !oauth.claim_to_headers.is_empty() {
            provider.push((
                "claimToHeaders",
                seq(oauth
                    .claim_to_headers
                    .iter()
                    .map(|(h, c)| m(vec![("header", s(h)), ("claim", s(c))]))),
            ));
        }
        docs.push(m(vec![
            ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
            ("kind", s("SecurityPolicy")),
            ("metadata", meta(name, ns)),
            (
                "spec",
                m(vec![
                    ("targetRefs", route_target()),
                    (
                        "jwt",
                        m(vec![
                            // failOpen = jwt_authn's allow_missing_or_failed: only
                            // once the filter answers the MCP 401 itself.
                            (
                                "failOpen",
                                Y::Bool(plugin::auth_plugin_config(&served).is_some()),
                            ),
                            ("providers", seq([m(provider)])),
                        ]),
                    ),
                ]),
            ),
        ]));
    }

    let mut out = String::new();
    out.push_str(&format!(
        "# Generated by mcpgw {} from {} for Envoy Gateway.\n",
        env!("CARGO_PKG_VERSION"),
        served.source
    ));
    let build = if module_url.is_some() {
        "libmcpgw.so (the dynamic module)"
    } else {
        "mcpgw.wasm"
    };
    out.push_str(&format!(
        "# {build} sha256 {}: publish exactly this build (`mcpgw --version`).\n",
        o.sha256
    ));
    out.push_str("# Before applying:\n");
    for p in &served.kube.parent_refs {
        out.push_str(&format!(
            "#  - Gateway {}: set spec.infrastructure.parametersRef to the EnvoyProxy {proxy} (group gateway.envoyproxy.io, kind EnvoyProxy) so Envoy gets the session key;\n",
            p.name
        ));
    }
    if module_url.is_some() {
        out.push_str("#  - Envoy Gateway must support dynamic modules (EnvoyProxy spec.dynamicModules, EnvoyExtensionPolicy spec.dynamicModule) and run Envoy 1.40 on Linux x86_64 (the module is built for its ABI); it must not merge backends (mergeBackends): mcpgw addresses the clusters httproute/<ns>/<route>/rule/<i>;\n");
        out.push_str(
            "#  - the module's metrics are envoy_dynamicmodulescustom_mcpgw_* in Prometheus;\n",
        );
    } else {
        out.push_str("#  - Envoy Gateway must allow EnvoyPatchPolicy (extensionApis.enableEnvoyPatchPolicy: true) and must not merge backends (mergeBackends): mcpgw addresses the clusters httproute/<ns>/<route>/rule/<i>;\n");
    }
    if !needs_creds.is_empty() {
        out.push_str(&format!(
            "#  - create the Secret {creds_secret} in {ns} with the header variables: kubectl -n {ns} create secret generic {creds_secret}{}\n",
            needs_creds
                .iter()
                .map(|k| format!(" --from-literal={k}=..."))
                .collect::<String>()
        ));
    }
    for w in &warnings {
        eprintln!("mcpgw: warning: {w}");
    }
    for d in docs {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&d));
    }
    Ok(out)
}

fn yaml_value(v: &serde_norway::Value) -> Y {
    match v {
        serde_norway::Value::Null => s(""),
        serde_norway::Value::Bool(b) => Y::Bool(*b),
        serde_norway::Value::Number(n) => {
            n.as_i64().map(Y::Int).unwrap_or_else(|| s(n.to_string()))
        }
        serde_norway::Value::String(x) => s(x),
        serde_norway::Value::Sequence(items) => seq(items.iter().map(yaml_value)),
        serde_norway::Value::Mapping(map) => Y::Map(
            map.iter()
                .map(|(k, v)| (k.as_str().unwrap_or("").to_string(), yaml_value(v)))
                .collect(),
        ),
        serde_norway::Value::Tagged(t) => yaml_value(&t.value),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::golden;
    use crate::mcp_config::EnvCheck;

    fn opts(code: WasmCode) -> Options {
        Options {
            code,
            sha256: "0".repeat(64),
            session_key: golden::KEY.into(),
            previous_key: None,
        }
    }

    #[test]
    fn mcproute_full() {
        let files = [golden::testdata("mcproute-full.yaml")];
        let (l, _) = crate::mcproute::load(
            &files,
            &golden::env,
            EnvCheck::Require,
            crate::mcproute::Mode::Kubernetes,
        )
        .unwrap();
        let out = render(
            &l.gateway,
            &l.passthrough,
            &opts(WasmCode::Image("oci://ghcr.io/example/mcpgw:0.1.0".into())),
        )
        .unwrap();
        golden::check("mcproute-full.kube.yaml", &out);
        // The filter's clusters are Envoy Gateway's names for the route's rules.
        assert!(out.contains("cluster: httproute/agents/tools/rule/0"));
        assert!(out.contains("value: httproute/agents/tools/rule/3"));
    }

    #[test]
    fn mcp_servers_json() {
        let (p, text) = golden::testdata("mcp-servers.json");
        let (mut g, _) =
            crate::mcp_config::load(&p, &text, &golden::env, EnvCheck::Require).unwrap();
        g.kube.parent_refs.push(crate::model::ParentRef {
            name: "eg".into(),
            namespace: None,
            section_name: Some("http".into()),
            port: None,
        });
        let out = render(
            &g,
            &[],
            &opts(WasmCode::Http("https://example.com/mcpgw.wasm".into())),
        )
        .unwrap();
        golden::check("mcp-servers.kube.yaml", &out);
        assert!(out.contains("--from-literal=GITHUB_TOKEN=..."));
        // The dynamic module: registered in the EnvoyProxy, run by the policy.
        let out = render(
            &g,
            &[],
            &opts(WasmCode::Module("https://example.com/libmcpgw.so".into())),
        )
        .unwrap();
        golden::check("mcp-servers.module.kube.yaml", &out);
        assert!(!out.contains("EnvoyPatchPolicy"));
    }

    #[test]
    fn announcement_needs_jwks_for_envoy_gateway() {
        let files = [golden::testdata("mcp-announcement.yaml")];
        let (l, _) = crate::mcproute::load(
            &files,
            &|_| Some("x".into()),
            EnvCheck::Require,
            crate::mcproute::Mode::Kubernetes,
        )
        .unwrap();
        let e = render(
            &l.gateway,
            &l.passthrough,
            &opts(WasmCode::Image("oci://x/y:1".into())),
        )
        .unwrap_err();
        assert!(e.contains("remoteJWKS.uri"), "{e}");
    }

    #[test]
    fn oauth_on_envoy_gateway_needs_the_wasm_build() {
        let files = [golden::testdata("mcproute-full.yaml")];
        let (l, _) = crate::mcproute::load(
            &files,
            &golden::env,
            EnvCheck::Require,
            crate::mcproute::Mode::Kubernetes,
        )
        .unwrap();
        assert!(l.gateway.oauth.is_some());
        let e = render(
            &l.gateway,
            &l.passthrough,
            &opts(WasmCode::Module("https://example.com/libmcpgw.so".into())),
        )
        .unwrap_err();
        assert!(e.contains("--engine wasm"), "{e}");
    }
}
