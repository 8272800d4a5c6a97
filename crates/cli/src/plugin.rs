//! The filter's plugin configuration (the JSON Envoy hands to mcpgw.wasm),
//! built from a [`Gateway`] and validated with the filter's own
//! `mcpgw_core::gateway::config::compile`, so `mcpgw` accepts exactly what the
//! filter accepts.
//!
//! The structs below only *write* the JSON; the filter's (private,
//! `deny_unknown_fields`) raw config types read it back in `compile`, so a
//! field this file got wrong is an error in every test, not at deploy time.

use crate::model::{Backend, Gateway, NameFilter};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Environment variable holding the session key, in Envoy's environment.
pub const SESSION_KEY_VAR: &str = "MCPGW_SESSION_KEY";
/// Environment variable holding the previous session key (rotation).
pub const PREVIOUS_SESSION_KEY_VAR: &str = "MCPGW_PREVIOUS_SESSION_KEY";

#[derive(Serialize)]
struct PluginConfig<'a> {
    path: &'a str,
    /// Always "route": every renderer rewrites path and host in the route a
    /// backend's `route_header` value selects (see `route_matches`).
    rewrite: &'static str,
    session: Session,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<&'a Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    rate_limit_headers: bool,
    backends: Vec<PluginBackend<'a>>,
}

#[derive(Serialize)]
struct Session {
    key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    previous_keys: Vec<String>,
}

#[derive(Serialize)]
struct PluginBackend<'a> {
    name: &'a str,
    cluster: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Filter::is_empty")]
    tools: Filter<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    forward_authorization: bool,
    /// `false` for stdio bridges: they put every message on POST answers
    /// when they have no GET stream, so a GET can go to an HTTP server.
    #[serde(skip_serializing_if = "Option::is_none")]
    standalone_stream: Option<bool>,
}

#[derive(Serialize)]
struct Filter<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    include: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    exclude: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    include_regex: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    exclude_regex: &'a [String],
}

impl Filter<'_> {
    fn is_empty(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.include_regex.is_empty()
            && self.exclude_regex.is_empty()
    }
}

impl<'a> From<&'a NameFilter> for Filter<'a> {
    fn from(f: &'a NameFilter) -> Self {
        Filter {
            include: &f.include,
            exclude: &f.exclude,
            include_regex: &f.include_regex,
            exclude_regex: &f.exclude_regex,
        }
    }
}

/// Where the filter sends a backend's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The Envoy cluster (the `cluster` member).
    pub cluster: String,
    /// `:authority`; `None` keeps the client's.
    pub authority: Option<String>,
    /// Path (and query) of the MCP endpoint.
    pub path: String,
    /// Fan-out timeout, when not the filter's default.
    pub timeout: Option<&'static str>,
}

/// The plugin config's `auth` member: where the MCPRoute
/// `securityPolicy.oauth` settings (already rendered to Envoy's `jwt_authn`
/// in front of the filter) become the filter's protected-resource
/// configuration: the metadata document, the 401/403 challenges, the
/// audience check. The `jwt` defaults (filter name, `jwt_payload` metadata
/// key, payload header) are what the renderers configure `jwt_authn` with.
pub fn auth_plugin_config(gateway: &Gateway) -> Option<Value> {
    let o = gateway.oauth.as_ref()?;
    let pr = &o.protected_resource;
    let mut auth = serde_json::Map::new();
    auth.insert("resource".into(), Value::String(pr.resource.clone()));
    auth.insert(
        "authorization_servers".into(),
        Value::Array(vec![Value::String(o.issuer.clone())]),
    );
    if !pr.scopes_supported.is_empty() {
        let scopes: Vec<Value> = pr
            .scopes_supported
            .iter()
            .cloned()
            .map(Value::String)
            .collect();
        auth.insert("scopes_supported".into(), Value::Array(scopes));
    }
    if let Some(n) = &pr.resource_name {
        auth.insert("resource_name".into(), Value::String(n.clone()));
    }
    if let Some(d) = &pr.documentation {
        auth.insert("resource_documentation".into(), Value::String(d.clone()));
    }
    if !o.audiences.is_empty() {
        let auds: Vec<Value> = o.audiences.iter().cloned().map(Value::String).collect();
        auth.insert("audiences".into(), Value::Array(auds));
    }
    Some(Value::Object(auth))
}

/// The plugin JSON for `gateway`, with `upstream(i, backend)` naming each
/// backend's cluster. The session key is always a `${MCPGW_SESSION_KEY}`
/// reference: its value lives only in Envoy's environment.
pub fn plugin_json(
    gateway: &Gateway,
    with_previous_key: bool,
    upstream: &dyn Fn(usize, &Backend) -> Upstream,
) -> String {
    let backends = gateway
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let u = upstream(i, b);
            PluginBackend {
                name: &b.name,
                cluster: u.cluster,
                path: u.path,
                authority: u.authority,
                headers: &b.headers,
                tools: Filter::from(&b.tools),
                timeout: u.timeout,
                forward_authorization: b.forward_authorization,
                standalone_stream: matches!(b.target, crate::model::Target::Stdio(_))
                    .then_some(false),
            }
        })
        .collect();
    let cfg = PluginConfig {
        path: &gateway.path,
        rewrite: "route",
        session: Session {
            key: format!("${{{SESSION_KEY_VAR}}}"),
            previous_keys: if with_previous_key {
                vec![format!("${{{PREVIOUS_SESSION_KEY_VAR}}}")]
            } else {
                vec![]
            },
        },
        auth: auth_plugin_config(gateway),
        authorization: gateway.authorization.as_ref(),
        rate_limit_headers: !gateway.limits.is_empty(),
        backends,
    };
    serde_json::to_string_pretty(&cfg).unwrap_or_default()
}

/// Validate with the filter's own `compile`. `env` resolves `${VAR}` the way
/// Envoy's VM environment will. Errors name the server, not just `backends[i]`.
pub fn validate(
    gateway: &Gateway,
    json: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    compile(gateway, json, env).map(|_| ())
}

/// [`validate`], keeping the compiled form (what the filter will run on).
pub fn compile(
    gateway: &Gateway,
    json: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<mcpgw_core::gateway::config::Config, String> {
    match mcpgw_core::gateway::config::compile(json.as_bytes(), env) {
        Ok(c) => Ok(c),
        Err(e) => {
            let mut field = e.field.clone();
            if let Some(rest) = field.strip_prefix("backends[") {
                if let Some((idx, tail)) = rest.split_once(']') {
                    if let Some(b) = idx
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| gateway.backends.get(i))
                    {
                        field = format!("server \"{}\"{}", b.name, tail);
                    }
                }
            }
            Err(format!(
                "{}: the gateway configuration is not valid: {}{}{}",
                gateway.source,
                field,
                if field.is_empty() { "" } else { ": " },
                e.problem
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::model::{Host, HttpTarget, KubeMeta, Target};

    pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn gw(headers: &[(&str, &str)]) -> Gateway {
        Gateway {
            source: "t.json".into(),
            path: "/mcp".into(),
            hostnames: vec![],
            backends: vec![Backend {
                name: "a".into(),
                target: Target::Http(HttpTarget {
                    host: Host::Name("x".into()),
                    port: 80,
                    path: "/mcp".into(),
                    tls: None,
                    kube_backend: None,
                }),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                tools: NameFilter {
                    include_regex: vec!["^a".into()],
                    ..Default::default()
                },
                forward_authorization: true,
            }],
            oauth: None,
            authorization: None,
            limits: Vec::new(),
            kube: KubeMeta {
                name: "m".into(),
                namespace: "default".into(),
                parent_refs: vec![],
            },
            secret_env: vec![],
        }
    }

    fn up(_: usize, b: &Backend) -> Upstream {
        Upstream {
            cluster: b.name.clone(),
            authority: Some("x".into()),
            path: "/mcp".into(),
            timeout: Some("60s"),
        }
    }

    fn env(n: &str) -> Option<String> {
        (n == SESSION_KEY_VAR || n == PREVIOUS_SESSION_KEY_VAR).then(|| KEY.to_string())
    }

    #[test]
    fn the_filter_accepts_what_we_write() {
        let g = gw(&[("x-k", "${MCPGW_SESSION_KEY}")]);
        let json = plugin_json(&g, true, &up);
        validate(&g, &json, &env).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["session"]["key"], "${MCPGW_SESSION_KEY}");
        assert_eq!(
            v["session"]["previous_keys"][0],
            "${MCPGW_PREVIOUS_SESSION_KEY}"
        );
        assert_eq!(v["backends"][0]["tools"]["include_regex"][0], "^a");
        assert_eq!(v["backends"][0]["forward_authorization"], true);
        assert!(v.get("auth").is_none());
        assert!(auth_plugin_config(&g).is_none());
    }

    #[test]
    fn errors_name_the_server() {
        let g = gw(&[("mcp-session-id", "x")]);
        let e = validate(&g, &plugin_json(&g, false, &up), &env).unwrap_err();
        assert!(
            e.contains("server \"a\".headers.mcp-session-id: is managed by the gateway"),
            "{e}"
        );
    }
}
