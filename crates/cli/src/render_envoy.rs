//! [`Gateway`] -> a complete Envoy bootstrap (envoy.yaml) running the
//! filter: what `mcpgw run` starts Envoy with and `mcpgw render` prints.

use crate::engine::{Engine, Filter};
use crate::model::{
    Backend, CaSource, Gateway, Host, HttpTarget, Jwks, LimitKey, RateLimit, Target, Tls,
};
use crate::plugin::{self, Upstream, PREVIOUS_SESSION_KEY_VAR, SESSION_KEY_VAR};
use crate::yaml::{m, s, seq, Y};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Header the filter names the backend's cluster in.
pub const ROUTE_HEADER: &str = "x-mcpgw-cluster";
/// Cluster for the OAuth JWKS endpoint (backend names cannot contain '.').
pub const JWKS_CLUSTER: &str = "mcpgw.jwks";
/// The `jwt_authn` provider name and the metadata namespace of the payload.
pub const JWT_PROVIDER: &str = "mcpgw";
pub const JWT_PAYLOAD_METADATA: &str = "jwt_payload";
/// Header carrying the verified payload to the filter (it trusts it only with
/// matching metadata).
pub const JWT_PAYLOAD_HEADER: &str = "x-mcpgw-jwt-payload";

#[derive(Debug, Clone)]
pub struct Options {
    pub address: String,
    pub port: u16,
    pub admin_port: u16,
    /// Which build of the filter runs, and where it is (for `run`: the
    /// cache copy).
    pub filter: Filter,
    /// CA bundle for https backends.
    pub ca_file: PathBuf,
    /// `127.0.0.1` ports of the stdio bridges (`run` only).
    pub bridge_ports: BTreeMap<String, u16>,
    /// Also accept `MCPGW_PREVIOUS_SESSION_KEY`.
    pub previous_key: bool,
    /// JSON access log: a path, `-` for stdout, or none.
    pub access_log: Option<String>,
    /// JSON audit log: a path, `-` for stdout, or none.
    pub audit_log: Option<String>,
}

/// Timeout of fan-out calls to a bridged stdio server: its child process
/// starts (e.g. `npx` downloading a package) during `initialize`.
const STDIO_TIMEOUT: &str = "60s";

/// What a standalone Envoy config cannot express, as an error with the fix.
pub fn preflight(gateway: &Gateway) -> Result<(), String> {
    if let Some(o) = &gateway.oauth {
        if o.jwks.is_none() {
            return Err(format!(
                "{}: spec.securityPolicy.oauth.jwks is not set; Envoy's jwt_authn cannot discover the keys from the issuer ({}): set jwks.remoteJWKS.uri to the issuer's jwks_uri (see {}/.well-known/oauth-authorization-server or /.well-known/openid-configuration)",
                gateway.source,
                o.issuer,
                o.issuer.trim_end_matches('/')
            ));
        }
    }
    Ok(())
}

/// Whether any cluster needs the CA bundle.
pub fn needs_ca(gateway: &Gateway) -> bool {
    let backend_tls = gateway.backends.iter().any(|b| match &b.target {
        Target::Http(t) => t.tls.as_ref().is_some_and(|t| t.ca == CaSource::System),
        _ => false,
    });
    let jwks_tls = gateway.oauth.as_ref().is_some_and(
        |o| matches!(&o.jwks, Some(Jwks::Remote { uri, .. }) if uri.starts_with("https://")),
    );
    let sts_tls = gateway.backends.iter().any(|b| {
        b.token_exchange
            .as_ref()
            .is_some_and(|te| te.endpoint.https && te.ca == CaSource::System)
    });
    backend_tls || jwks_tls || sts_tls
}

/// The upstream of backend `b` in the standalone config.
pub fn upstream(b: &Backend, opts: &Options) -> Option<Upstream> {
    match &b.target {
        Target::Http(t) => Some(Upstream {
            cluster: b.name.clone(),
            authority: Some(t.authority()),
            path: t.path.clone(),
            timeout: None,
        }),
        Target::Stdio(_) => opts.bridge_ports.get(&b.name).map(|port| Upstream {
            cluster: b.name.clone(),
            authority: Some(format!("127.0.0.1:{port}")),
            path: "/mcp".into(),
            timeout: Some(STDIO_TIMEOUT),
        }),
        Target::InCluster { .. } => None,
    }
}

/// The gateway as Envoy will serve it: stdio backends without a bridge port
/// are left out (with a warning in `warnings`).
pub fn served(gateway: &Gateway, opts: &Options, warnings: &mut Vec<String>) -> Gateway {
    let mut g = gateway.clone();
    g.backends.retain(|b| {
        let keep = upstream(b, opts).is_some();
        if !keep {
            warnings.push(match &b.target {
                Target::InCluster { backend, .. } => format!(
                    "backend \"{}\": the Backend \"{backend}\" is not defined in the input, so Envoy cannot reach it; left out of this config (add its Backend document)",
                    b.name
                ),
                _ => format!(
                    "server \"{}\" is a stdio server: only `mcpgw run` can serve it (it bridges the process to HTTP); left out of this config",
                    b.name
                ),
            });
        }
        keep
    });
    g
}

/// Environment variables Envoy needs, sorted: the session key(s) and every
/// `${VAR}` of the backends' headers.
pub fn env_keys(gateway: &Gateway, previous_key: bool) -> Vec<String> {
    let mut keys = vec![SESSION_KEY_VAR.to_string()];
    if previous_key {
        keys.push(PREVIOUS_SESSION_KEY_VAR.to_string());
    }
    for b in &gateway.backends {
        for r in b.env_refs() {
            if !keys.contains(&r) {
                keys.push(r);
            }
        }
    }
    keys.sort();
    keys
}

/// Render. `gateway` must already be [`served`] (every backend has an upstream).
/// Prometheus labels for mcpgw's metrics (the filter embeds them in the names).
fn stats_config() -> Y {
    let tags = mcpgw_core::gateway::stats::envoy_stats_tags()
        .into_iter()
        .map(|(tag, regex)| m(vec![("tag_name", s(tag)), ("regex", s(regex))]));
    m(vec![("stats_tags", seq(tags))])
}

/// One JSON line per request (to `dest`: a path or `-` for stdout), with the
/// MCP fields the filter publishes.
fn access_log(dest: &str, engine: Engine) -> Y {
    let mut fields = vec![
        ("start_time", s("%START_TIME%")),
        ("method", s("%REQ(:METHOD)%")),
        ("path", s("%REQ(:PATH)%")),
        ("status", s("%RESPONSE_CODE%")),
        ("duration_ms", s("%DURATION%")),
        ("upstream_cluster", s("%UPSTREAM_CLUSTER%")),
    ];
    fields.extend(engine.access_log_fields().iter().map(|(k, v)| (*k, s(v))));
    fields.push(("traceparent", s("%REQ(TRACEPARENT)%")));
    json_logger(dest, fields, None)
}

/// The audit log: one JSON record per `tools/call`, `prompts/get`,
/// `resources/read` and denial (see the filter's `audit`), to `dest`.
pub fn audit_log(dest: &str, engine: Engine) -> Y {
    let fields = engine
        .audit_log_fields()
        .into_iter()
        .map(|(k, v)| (k, s(&v)))
        .collect();
    json_logger(dest, fields, Some(&engine.audit_log_filter()))
}

fn json_logger(dest: &str, fields: Vec<(&str, Y)>, cel_filter: Option<&str>) -> Y {
    let format = ("log_format", m(vec![("json_format", m(fields))]));
    let (name, ty, mut cfg) = if dest == "-" {
        (
            "envoy.access_loggers.stdout",
            "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            vec![],
        )
    } else {
        (
            "envoy.access_loggers.file",
            "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            vec![("path", s(dest))],
        )
    };
    cfg.insert(0, ("@type", s(ty)));
    cfg.push(format);
    let mut logger = vec![("name", s(name)), ("typed_config", m(cfg))];
    if let Some(expr) = cel_filter {
        logger.push((
            "filter",
            m(vec![(
                "extension_filter",
                m(vec![
                    ("name", s("envoy.access_loggers.extension_filters.cel")),
                    (
                        "typed_config",
                        m(vec![
                            (
                                "@type",
                                s("type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"),
                            ),
                            ("expression", s(expr)),
                        ]),
                    ),
                ]),
            )]),
        ));
    }
    m(logger)
}

pub fn render(gateway: &Gateway, opts: &Options) -> String {
    let json = plugin::plugin_json(gateway, opts.previous_key, &|_, b| {
        upstream(b, opts).unwrap_or(Upstream {
            cluster: b.name.clone(),
            authority: None,
            path: "/mcp".into(),
            timeout: None,
        })
    });
    let keys = env_keys(gateway, opts.previous_key);

    let mut clusters = Vec::new();
    for b in &gateway.backends {
        match &b.target {
            Target::Http(t) => clusters.push(http_cluster(&b.name, t, &opts.ca_file)),
            Target::InCluster { .. } => {}
            Target::Stdio(_) => {
                if let Some(port) = opts.bridge_ports.get(&b.name) {
                    clusters.push(cluster(
                        &b.name,
                        &Host::Ip(std::net::Ipv4Addr::LOCALHOST.into()),
                        *port,
                        None,
                        &opts.ca_file,
                    ));
                }
            }
        }
    }

    // Token endpoints: one cluster per exchanging backend (TLS with the
    // system CAs or --ca-file for https).
    for b in &gateway.backends {
        if let Some(te) = &b.token_exchange {
            let u = &te.endpoint;
            let tls = u.https.then(|| Tls {
                sni: match &u.host {
                    Host::Name(n) => n.clone(),
                    Host::Ip(ip) => ip.to_string(),
                },
                ca: te.ca.clone(),
                subject_alt_names: vec![],
            });
            clusters.push(cluster(
                &crate::model::token_exchange_cluster(&b.name),
                &u.host,
                u.port,
                tls.as_ref(),
                &opts.ca_file,
            ));
        }
    }

    let mut http_filters = Vec::new();
    if let Some(oauth) = &gateway.oauth {
        let mut provider = vec![("issuer", s(&oauth.issuer))];
        if !oauth.audiences.is_empty() {
            provider.push(("audiences", seq(oauth.audiences.iter().map(s))));
        }
        match &oauth.jwks {
            Some(Jwks::Remote {
                uri,
                cache_duration,
            }) => {
                let mut remote = vec![(
                    "http_uri",
                    m(vec![
                        ("uri", s(uri)),
                        ("cluster", s(JWKS_CLUSTER)),
                        ("timeout", s("5s")),
                    ]),
                )];
                if let Some(d) = cache_duration {
                    remote.push(("cache_duration", s(d)));
                }
                remote.push(("async_fetch", m(vec![])));
                provider.push(("remote_jwks", m(remote)));
                if let Ok(u) = crate::model::parse_url(uri) {
                    let tls = u.https.then(|| Tls {
                        sni: u.host.to_string(),
                        ca: CaSource::System,
                        subject_alt_names: vec![],
                    });
                    clusters.push(cluster(
                        JWKS_CLUSTER,
                        &u.host,
                        u.port,
                        tls.as_ref(),
                        &opts.ca_file,
                    ));
                }
            }
            Some(Jwks::Local { json }) => {
                provider.push(("local_jwks", m(vec![("inline_string", s(json))])));
            }
            None => {}
        }
        provider.push(("payload_in_metadata", s(JWT_PAYLOAD_METADATA)));
        provider.push(("forward_payload_header", s(JWT_PAYLOAD_HEADER)));
        // The client's token stays at the gateway: jwt_authn removes it, or,
        // when mcpgw must exchange it, mcpgw does (from every upstream request).
        let exchanges = gateway.backends.iter().any(|b| b.token_exchange.is_some());
        provider.push(("forward", Y::Bool(exchanges)));
        if !oauth.claim_to_headers.is_empty() {
            provider.push((
                "claim_to_headers",
                seq(oauth
                    .claim_to_headers
                    .iter()
                    .map(|(h, c)| m(vec![("header_name", s(h)), ("claim_name", s(c))]))),
            ));
        }
        // When the filter handles auth (its `auth` member), failures go through
        // to it so it can answer with the MCP 401 and its WWW-Authenticate;
        // until then Envoy itself rejects requests without a valid token.
        let requires = if plugin::auth_plugin_config(gateway).is_some() {
            m(vec![(
                "requires_any",
                m(vec![(
                    "requirements",
                    seq([
                        m(vec![("provider_name", s(JWT_PROVIDER))]),
                        m(vec![("allow_missing_or_failed", m(vec![]))]),
                    ]),
                )]),
            )])
        } else {
            m(vec![("provider_name", s(JWT_PROVIDER))])
        };
        http_filters.push(m(vec![
            ("name", s("envoy.filters.http.jwt_authn")),
            (
                "typed_config",
                m(vec![
                    (
                        "@type",
                        s("type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"),
                    ),
                    ("providers", m(vec![(JWT_PROVIDER, m(provider))])),
                    (
                        "rules",
                        seq([m(vec![
                            ("match", m(vec![("prefix", s("/"))])),
                            ("requires", requires),
                        ])]),
                    ),
                ]),
            ),
        ]));
    }
    http_filters.push(filter_entry(&opts.filter, &json, &keys));
    if !gateway.limits.is_empty() {
        http_filters.push(local_rate_limit(&gateway.limits));
    }
    http_filters.push(m(vec![
        ("name", s("envoy.filters.http.router")),
        (
            "typed_config",
            m(vec![(
                "@type",
                s("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
            )]),
        ),
    ]));

    // One route per backend, selected by the value the filter puts in
    // ROUTE_HEADER, rewriting path and host (the filter's `rewrite: route`):
    // the route is picked on the client's own host and path, so the virtual
    // host's `domains` still match. Then 404 for what the filter let through.
    let mut routes: Vec<Y> = gateway
        .backends
        .iter()
        .filter_map(|b| upstream(b, opts))
        .map(|u| {
            let mut action = vec![("cluster", s(&u.cluster)), ("timeout", s("0s"))];
            if let Some(a) = &u.authority {
                action.push(("host_rewrite_literal", s(a)));
            }
            action.push((
                "regex_rewrite",
                m(vec![
                    ("pattern", m(vec![("regex", s("^/.*$"))])),
                    ("substitution", s(u.path.replace('\\', "\\\\"))),
                ]),
            ));
            m(vec![
                (
                    "match",
                    m(vec![
                        ("path", s(&gateway.path)),
                        (
                            "headers",
                            seq([m(vec![
                                ("name", s(ROUTE_HEADER)),
                                ("string_match", m(vec![("exact", s(&u.cluster))])),
                            ])]),
                        ),
                    ]),
                ),
                ("route", m(action)),
            ])
        })
        .collect();

    let domains = if gateway.hostnames.is_empty() {
        seq([s("*")])
    } else {
        let mut d = Vec::new();
        for h in &gateway.hostnames {
            d.push(s(h));
            d.push(s(format!("{h}:*")));
        }
        seq(d)
    };
    let not_found = m(vec![
        ("match", m(vec![("prefix", s("/"))])),
        (
            "direct_response",
            m(vec![
                ("status", Y::Int(404)),
                ("body", m(vec![("inline_string", s("not found\n"))])),
            ]),
        ),
    ]);
    routes.push(not_found.clone());
    let mut virtual_hosts = vec![m(vec![
        ("name", s("mcp")),
        ("domains", domains),
        ("routes", seq(routes)),
    ])];
    // Hosts the route does not list never reach the filter (as in Envoy
    // Gateway, which enables it only on the route's own virtual hosts).
    if !gateway.hostnames.is_empty() {
        let disabled = || {
            m(vec![
                (
                    "@type",
                    s("type.googleapis.com/envoy.config.route.v3.FilterConfig"),
                ),
                ("disabled", Y::Bool(true)),
            ])
        };
        let mut off = vec![(opts.filter.engine.envoy_filter(), disabled())];
        if gateway.oauth.is_some() {
            off.push(("envoy.filters.http.jwt_authn", disabled()));
        }
        virtual_hosts.push(m(vec![
            ("name", s("other-hosts")),
            ("domains", seq([s("*")])),
            ("typed_per_filter_config", m(off)),
            ("routes", seq([not_found])),
        ]));
    }
    let mut hcm = m(vec![
        ("@type", s("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")),
        ("stat_prefix", s("mcp")),
        ("stream_idle_timeout", s("3600s")),
        ("request_headers_timeout", s("10s")),
        // Ends once the whole request is in: a trickled body, never a long call.
        ("request_timeout", s("30s")),
        (
            "route_config",
            m(vec![("virtual_hosts", seq(virtual_hosts))]),
        ),
        ("http_filters", seq(http_filters)),
    ]);
    let loggers: Vec<Y> = opts
        .access_log
        .iter()
        .map(|d| access_log(d, opts.filter.engine))
        .chain(
            opts.audit_log
                .iter()
                .map(|d| audit_log(d, opts.filter.engine)),
        )
        .collect();
    if let (false, Y::Map(pairs)) = (loggers.is_empty(), &mut hcm) {
        pairs.insert(4.min(pairs.len()), ("access_log".into(), seq(loggers)));
    }
    let root = m(vec![
        (
            "admin",
            m(vec![("address", socket(&opts.address, opts.admin_port))]),
        ),
        ("stats_config", stats_config()),
        (
            "static_resources",
            m(vec![
                (
                    "listeners",
                    seq([m(vec![
                        ("name", s("mcp")),
                        ("address", socket(&opts.address, opts.port)),
                        ("per_connection_buffer_limit_bytes", Y::Int(8 << 20)),
                        (
                            "filter_chains",
                            seq([m(vec![(
                                "filters",
                                seq([m(vec![
                                    ("name", s("envoy.filters.network.http_connection_manager")),
                                    ("typed_config", hcm),
                                ])]),
                            )])]),
                        ),
                    ])]),
                ),
                ("clusters", seq(clusters)),
            ]),
        ),
    ]);

    let mut out = String::new();
    out.push_str(&format!(
        "# Generated by mcpgw {} from {}. MCP endpoint: http://{}:{}{}\n",
        env!("CARGO_PKG_VERSION"),
        gateway.source,
        opts.address,
        opts.port,
        gateway.path
    ));
    out.push_str(
        "# Run with `envoy -c FILE` or `func-e run -c FILE`; Envoy's environment must hold:\n",
    );
    for k in &keys {
        let what = if k == SESSION_KEY_VAR {
            "the session key: 32 random bytes, base64 (`openssl rand -base64 32`); the same on every replica"
        } else if k == PREVIOUS_SESSION_KEY_VAR {
            "the previous session key, still accepted (rotation)"
        } else {
            "used in a backend's headers"
        };
        out.push_str(&format!("#   {k}: {what}\n"));
    }
    if opts.filter.engine == Engine::Module {
        out.push_str(
            "# The filter is the dynamic module libmcpgw.so, built for Envoy 1.40 (its ABI v0.2.0) on Linux x86_64; `mcpgw render --engine wasm` renders the proxy-wasm build instead.\n",
        );
    }
    out.push_str(&crate::yaml::to_string(&root));
    out
}

/// The mcpgw HTTP filter of `filter`'s build with the plugin JSON.
fn filter_entry(filter: &Filter, json: &str, keys: &[String]) -> Y {
    let path = filter.path.display().to_string();
    let config = m(vec![
        (
            "@type",
            s("type.googleapis.com/google.protobuf.StringValue"),
        ),
        ("value", s(json)),
    ]);
    match filter.engine {
        // `${VAR}`s resolve in Envoy's own environment.
        Engine::Module => m(vec![
            ("name", s(filter.engine.envoy_filter())),
            (
                "typed_config",
                m(vec![
                    (
                        "@type",
                        s("type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"),
                    ),
                    (
                        "dynamic_module_config",
                        m(vec![
                            ("name", s(mcpgw_module::names::MODULE_NAME)),
                            ("module", m(vec![("local", m(vec![("filename", s(path))]))])),
                        ]),
                    ),
                    ("filter_name", s(mcpgw_module::names::FILTER_NAME)),
                    ("filter_config", config),
                ]),
            ),
        ]),
        Engine::Wasm => m(vec![
            ("name", s(filter.engine.envoy_filter())),
            (
                "typed_config",
                m(vec![
                    (
                        "@type",
                        s("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"),
                    ),
                    (
                        "config",
                        m(vec![
                            ("name", s("mcpgw")),
                            ("root_id", s("mcpgw")),
                            ("allow_on_headers_stop_iteration", Y::Bool(true)),
                            ("failure_policy", s("FAIL_RELOAD")),
                            ("configuration", config),
                            (
                                "vm_config",
                                m(vec![
                                    ("runtime", s("envoy.wasm.runtime.v8")),
                                    ("vm_id", s("mcpgw")),
                                    (
                                        "code",
                                        m(vec![("local", m(vec![("filename", s(path))]))]),
                                    ),
                                    (
                                        "environment_variables",
                                        m(vec![("host_env_keys", seq(keys.iter().map(s)))]),
                                    ),
                                ]),
                            ),
                        ]),
                    ),
                ]),
            ),
        ]),
    }
}

/// Envoy's local rate limit after mcpgw, keyed by the attributes mcpgw names
/// in request headers before routing (`rate_limit_headers`): the tool's
/// client-visible name, and the caller (one bucket each, created on demand).
fn local_rate_limit(limits: &[RateLimit]) -> Y {
    let bucket = |n: u32, ms: u64| {
        m(vec![
            ("max_tokens", Y::Int(i64::from(n))),
            ("tokens_per_fill", Y::Int(i64::from(n))),
            ("fill_interval", s(format!("{}s", ms as f64 / 1000.0))),
        ])
    };
    let always = || {
        m(vec![(
            "default_value",
            m(vec![
                ("numerator", Y::Int(100)),
                ("denominator", s("HUNDRED")),
            ]),
        )])
    };
    let mut descriptors = Vec::new();
    let mut actions = Vec::new();
    let mut per_caller = false;
    for l in limits {
        let entry = match &l.key {
            LimitKey::Tool(t) => m(vec![("key", s("mcp_tool")), ("value", s(t))]),
            LimitKey::PerCaller => {
                per_caller = true;
                // No value: every caller gets a bucket of its own.
                m(vec![("key", s("mcp_caller"))])
            }
        };
        descriptors.push(m(vec![
            ("entries", seq([entry])),
            ("token_bucket", bucket(l.requests, l.per_ms)),
        ]));
    }
    if limits.iter().any(|l| matches!(l.key, LimitKey::Tool(_))) {
        actions.push(m(vec![(
            "actions",
            seq([m(vec![(
                "request_headers",
                m(vec![
                    ("header_name", s("x-mcpgw-tool")),
                    ("descriptor_key", s("mcp_tool")),
                ]),
            )])]),
        )]));
    }
    if per_caller {
        actions.push(m(vec![(
            "actions",
            seq([m(vec![(
                "request_headers",
                m(vec![
                    ("header_name", s("x-mcpgw-caller")),
                    ("descriptor_key", s("mcp_caller")),
                ]),
            )])]),
        )]));
    }
    let mut cfg = vec![
        (
            "@type",
            s("type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"),
        ),
        ("stat_prefix", s("mcpgw_rate_limit")),
        // Requests matching no limit are not limited.
        ("token_bucket", bucket(u32::MAX, 1000)),
        ("filter_enabled", always()),
        ("filter_enforced", always()),
        // x-ratelimit-reset: mcpgw turns it into the JSON-RPC retry hint.
        ("enable_x_ratelimit_headers", s("DRAFT_VERSION_03")),
        ("descriptors", seq(descriptors)),
        ("rate_limits", seq(actions)),
    ];
    if per_caller {
        cfg.push(("max_dynamic_descriptors", Y::Int(10_000)));
    }
    m(vec![
        ("name", s("envoy.filters.http.local_ratelimit")),
        ("typed_config", m(cfg)),
    ])
}

fn socket(address: &str, port: u16) -> Y {
    m(vec![(
        "socket_address",
        m(vec![
            ("address", s(address)),
            ("port_value", Y::Int(i64::from(port))),
        ]),
    )])
}

fn http_cluster(name: &str, t: &HttpTarget, ca_file: &std::path::Path) -> Y {
    cluster(name, &t.host, t.port, t.tls.as_ref(), ca_file)
}

fn cluster(name: &str, host: &Host, port: u16, tls: Option<&Tls>, ca_file: &std::path::Path) -> Y {
    let (ty, address) = match host {
        Host::Ip(ip) => ("STATIC", ip.to_string()),
        Host::Name(n) => ("LOGICAL_DNS", n.clone()),
    };
    let mut c = vec![
        ("name", s(name)),
        ("type", s(ty)),
        ("connect_timeout", s("5s")),
    ];
    if ty == "LOGICAL_DNS" {
        c.push(("dns_lookup_family", s("V4_PREFERRED")));
    }
    // Fan-out answers (lists) come back whole.
    c.push(("per_connection_buffer_limit_bytes", Y::Int(32 << 20)));
    c.push((
        "load_assignment",
        m(vec![
            ("cluster_name", s(name)),
            (
                "endpoints",
                seq([m(vec![(
                    "lb_endpoints",
                    seq([m(vec![(
                        "endpoint",
                        m(vec![("address", socket(&address, port))]),
                    )])]),
                )])]),
            ),
        ]),
    ));
    if let Some(tls) = tls {
        let trusted_ca = match &tls.ca {
            CaSource::System => m(vec![("filename", s(ca_file.display().to_string()))]),
            CaSource::Inline { pem, .. } => m(vec![("inline_string", s(pem))]),
        };
        let is_ip = tls.sni.parse::<std::net::IpAddr>().is_ok();
        let mut sans = vec![m(vec![
            ("san_type", s(if is_ip { "IP_ADDRESS" } else { "DNS" })),
            ("matcher", m(vec![("exact", s(&tls.sni))])),
        ])];
        for n in &tls.subject_alt_names {
            sans.push(m(vec![
                ("san_type", s("DNS")),
                ("matcher", m(vec![("exact", s(n))])),
            ]));
        }
        let mut ctx = vec![(
            "@type",
            s("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
        )];
        // SNI must be a host name (RFC 6066), never an IP address.
        if !is_ip {
            ctx.push(("sni", s(&tls.sni)));
        }
        ctx.push((
            "common_tls_context",
            m(vec![(
                "validation_context",
                m(vec![
                    ("trusted_ca", trusted_ca),
                    ("match_typed_subject_alt_names", seq(sans)),
                ]),
            )]),
        ));
        c.push((
            "transport_socket",
            m(vec![
                ("name", s("envoy.transport_sockets.tls")),
                ("typed_config", m(ctx)),
            ]),
        ));
    }
    m(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::golden;
    use crate::mcp_config::EnvCheck;

    fn opts() -> Options {
        let mut bridge_ports = BTreeMap::new();
        bridge_ports.insert("filesystem".to_string(), 40001);
        Options {
            address: "127.0.0.1".into(),
            port: 1975,
            admin_port: 1064,
            filter: Filter {
                engine: Engine::Wasm,
                path: "/home/u/.cache/mcpgw/mcpgw-0123456789abcdef.wasm".into(),
            },
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            bridge_ports,
            previous_key: false,
            access_log: Some("-".into()),
            audit_log: None,
        }
    }

    fn render_checked(g: &Gateway, o: &Options) -> String {
        let mut w = Vec::new();
        let served = served(g, o, &mut w);
        let yaml = render(&served, o);
        let json = plugin::plugin_json(&served, o.previous_key, &|_, b| upstream(b, o).unwrap());
        let env = |n: &str| {
            if n == SESSION_KEY_VAR || n == PREVIOUS_SESSION_KEY_VAR {
                return Some(golden::KEY.to_string());
            }
            golden::env(n).or_else(|| {
                g.secret_env
                    .iter()
                    .find(|s| s.var == n)
                    .map(|_| "secret".to_string())
            })
        };
        plugin::validate(&served, &json, &env).unwrap();
        yaml
    }

    #[test]
    fn token_exchange_gets_its_cluster_and_the_clients_token() {
        let text = r#"{
          "mcpgw": {"oauth": {"issuer": "https://auth.example.com", "jwksUri": "https://auth.example.com/jwks", "resource": "https://mcp.example.com/mcp", "scopes": ["mcp"]}},
          "mcpServers": {"gh": {"url": "https://gh.example.com/mcp", "mcpgw": {"tokenExchange": {
            "stsEndpoint": "https://sts.example.com/oauth2/token", "audience": "https://gh.example.com",
            "scopes": ["repo"], "clientAuth": {"clientID": "mcpgw", "clientSecret": "${STS_SECRET}"},
            "actorToken": {"clientAssertionJWT": {"issuer": "mcpgw", "subject": "gw", "privateKey": "${ACTOR_KEY}", "signingAlgorithm": "HS256", "lifetime": 120}},
            "cache": {"ttl": "10m"}}}}}
        }"#;
        let env = |n: &str| match n {
            "STS_SECRET" => Some("s".to_string()),
            "ACTOR_KEY" => Some("a shared secret of at least 32 bytes!".to_string()),
            _ => None,
        };
        let (g, _) = crate::mcp_config::load(
            std::path::Path::new("s.json"),
            text,
            &env,
            EnvCheck::Require,
        )
        .unwrap();
        let o = opts();
        let yaml = render(&g, &o);
        assert!(yaml.contains("name: gh.token-exchange"), "{yaml}");
        assert!(yaml.contains("sni: sts.example.com"), "{yaml}");
        assert!(
            yaml.contains("forward: true"),
            "mcpgw needs the token to exchange it"
        );
        let keys = env_keys(&g, false);
        assert!(
            keys.contains(&"STS_SECRET".to_string()) && keys.contains(&"ACTOR_KEY".to_string()),
            "{keys:?}"
        );
        let json = plugin::plugin_json(&g, false, &|_, b| upstream(b, &o).unwrap());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let te = &v["backends"][0]["token_exchange"];
        assert_eq!(te["cluster"], "gh.token-exchange");
        assert_eq!(te["client_auth"]["client_secret"], "${STS_SECRET}");
        assert_eq!(
            te["actor_token"]["client_assertion_jwt"]["lifetime"],
            "120s"
        );
        assert_eq!(te["cache"]["max_ttl"], "10m");
        let env = |n: &str| {
            if n == SESSION_KEY_VAR {
                Some(golden::KEY.to_string())
            } else {
                env(n)
            }
        };
        plugin::validate(&g, &json, &env).unwrap();
        // A servers file has no Secrets.
        let bad = text.replace(
            r#""clientSecret": "${STS_SECRET}""#,
            r#""clientSecretRef": {"name": "x"}"#,
        );
        let e = crate::mcp_config::load(
            std::path::Path::new("s.json"),
            &bad,
            &env,
            EnvCheck::Require,
        )
        .unwrap_err();
        assert!(e.contains("mcpServers.gh.mcpgw.tokenExchange.clientAuth.clientSecretRef: a servers file has no Secrets"), "{e}");
        // Its `${VAR}`s are checked like header values.
        let e = crate::mcp_config::load(
            std::path::Path::new("s.json"),
            text,
            &|n: &str| (n == "ACTOR_KEY").then(|| "k".repeat(32)),
            EnvCheck::Require,
        )
        .unwrap_err();
        assert!(
            e.contains("mcpServers.gh.mcpgw.tokenExchange.clientAuth.clientSecret: environment variable STS_SECRET is not set"),
            "{e}"
        );
    }

    #[test]
    fn mcp_servers_json() {
        let (p, text) = golden::testdata("mcp-servers.json");
        let (g, _) = crate::mcp_config::load(&p, &text, &golden::env, EnvCheck::Require).unwrap();
        golden::check("mcp-servers.envoy.yaml", &render_checked(&g, &opts()));
        // The dynamic module: its filter entry and access-log fields.
        let mut o = opts();
        o.filter = Filter {
            engine: Engine::Module,
            path: "/home/u/.cache/mcpgw/libmcpgw-0123456789abcdef.so".into(),
        };
        golden::check("mcp-servers.module.envoy.yaml", &render_checked(&g, &o));
        // Without a bridge (render), the stdio server is left out, with a warning.
        let mut o = opts();
        o.bridge_ports.clear();
        let mut w = Vec::new();
        let s = served(&g, &o, &mut w);
        assert_eq!(s.backends.len(), g.backends.len() - 1);
        assert!(w[0].contains("\"filesystem\" is a stdio server: only `mcpgw run` can serve it"));
    }

    #[test]
    fn mcproute_full() {
        let files = [golden::testdata("mcproute-full.yaml")];
        let (l, _) = crate::mcproute::load(
            &files,
            &golden::env,
            EnvCheck::Require,
            crate::mcproute::Mode::Local,
        )
        .unwrap();
        let mut o = opts();
        o.previous_key = true;
        golden::check("mcproute-full.envoy.yaml", &render_checked(&l.gateway, &o));
    }
}
