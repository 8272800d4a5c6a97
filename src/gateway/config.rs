//! Plugin configuration: the JSON users write, validated once and compiled
//! into the form the request path uses. Every error names the field and the
//! fix, because the only place a user sees it is Envoy's log.

use super::crypto::{decode_key, Keyring};
use super::filter::{NameFilter, NameFilterSpec};
use crate::protocol::http::is_safe_header_value;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Who rewrites a routed request's `:path` and `:authority` to the backend's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rewrite {
    /// The filter sets them (with `route_header`): enough when Envoy picks
    /// the route on the header alone (one virtual host, `cluster_header`).
    #[default]
    Filter,
    /// The filter sets only `route_header` and leaves `:path` and
    /// `:authority` as the client sent them (minus any query string), so the
    /// route is re-resolved on the client's host and path; the route matching
    /// the header rewrites both (Envoy `regex_rewrite` + `host_rewrite_literal`,
    /// Gateway API `URLRewrite`). Fan-out calls still carry `path` and
    /// `authority`.
    Route,
}

/// How names from a backend are exposed to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrefixMode {
    /// `<backend><sep><name>` always.
    Always,
    /// Prefixed only when the gateway has more than one backend.
    WhenMultiplexed,
    /// Bare names; a name offered by two backends is an error, never shadowed.
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_route_header")]
    route_header: String,
    #[serde(default)]
    rewrite: Rewrite,
    session: RawSession,
    #[serde(default = "default_separator")]
    separator: String,
    #[serde(default = "default_prefix")]
    prefix: PrefixMode,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default = "default_max_request")]
    max_request_bytes: usize,
    #[serde(default = "default_max_response")]
    max_response_bytes: usize,
    #[serde(default)]
    server_name: Option<String>,
    /// OAuth protected resource and per-tool authorization (see `auth`).
    #[serde(default)]
    auth: Option<super::auth::RawAuth>,
    /// Who may see and use what (see `policy`); absent = everything.
    #[serde(default)]
    authorization: Option<super::policy::RawPolicy>,
    /// Which tool arguments the audit record keeps (see `audit`).
    #[serde(default)]
    audit: super::audit::RawAudit,
    #[serde(default)]
    observability: RawObservability,
    /// Name the backend, tool and caller in request headers before routing,
    /// for Envoy's rate-limit descriptors (see `RATE_LIMIT_HEADERS`).
    #[serde(default)]
    rate_limit_headers: bool,
    backends: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObservability {
    #[serde(default = "yes")]
    metrics: bool,
    #[serde(default = "yes")]
    access_log_fields: bool,
}

impl Default for RawObservability {
    fn default() -> Self {
        RawObservability {
            metrics: true,
            access_log_fields: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    key: String,
    #[serde(default)]
    previous_keys: Vec<String>,
    #[serde(default = "default_ttl")]
    ttl: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: String,
    cluster: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tools: NameFilterSpec,
    #[serde(default)]
    prompts: NameFilterSpec,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default)]
    prefix: Option<PrefixMode>,
    #[serde(default)]
    forward_authorization: bool,
    #[serde(default = "yes")]
    standalone_stream: bool,
    /// RFC 8693: the client's token exchanged for one minted for this backend.
    #[serde(default)]
    token_exchange: Option<super::token_exchange::RawTokenExchange>,
}

fn default_path() -> String {
    "/mcp".into()
}
fn default_route_header() -> String {
    "x-mcpgw-cluster".into()
}
fn default_separator() -> String {
    "__".into()
}
fn default_prefix() -> PrefixMode {
    PrefixMode::WhenMultiplexed
}
fn default_ttl() -> String {
    "24h".into()
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_max_request() -> usize {
    4 << 20
}
fn default_max_response() -> usize {
    16 << 20
}

/// A configuration problem: `field` is a path like `backends[1].headers.authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "mcpgw config: {}", self.problem)
        } else {
            write!(f, "mcpgw config: {}: {}", self.field, self.problem)
        }
    }
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// One upstream MCP server, compiled.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub cluster: String,
    pub path: String,
    /// `:authority` sent upstream; `None` keeps the client's.
    pub authority: Option<String>,
    /// Extra request headers (credentials), `${VAR}` already expanded.
    pub headers: Vec<(String, String)>,
    pub tools: NameFilter,
    pub prompts: NameFilter,
    pub timeout_ms: u64,
    /// Effective prefix mode (gateway default or the backend's override).
    pub prefix: PrefixMode,
    pub forward_authorization: bool,
    /// Whether the backend may push messages on a standalone GET stream.
    /// `false` (mcpgw's stdio bridges, which then deliver on POST answers)
    /// lets a GET go to the one stateful backend that may.
    pub standalone_stream: bool,
    /// The upstream credential comes from a token exchange (`token_exchange`).
    pub token_exchange: Option<Box<super::token_exchange::TokenExchange>>,
}

impl Backend {
    /// Whether names of this backend carry the `<name><sep>` prefix.
    pub fn prefixed(&self, backend_count: usize) -> bool {
        match self.prefix {
            PrefixMode::Always => true,
            PrefixMode::Never => false,
            PrefixMode::WhenMultiplexed => backend_count > 1,
        }
    }
}

/// The compiled configuration the request path runs on.
#[derive(Debug)]
pub struct Config {
    pub path: String,
    pub route_header: String,
    pub rewrite: Rewrite,
    pub separator: String,
    pub backends: Vec<Backend>,
    pub keys: Keyring,
    pub session_ttl_ms: u64,
    pub allowed_origins: Vec<String>,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub server_name: String,
    pub auth: Option<super::auth::Auth>,
    pub authorization: Option<super::policy::Policy>,
    pub audit: super::audit::AuditConfig,
    /// Define and update Envoy stats (`observability.metrics`).
    pub metrics: bool,
    /// Publish the per-request access-log fields (`observability.access_log_fields`).
    pub access_log_fields: bool,
    pub rate_limit_headers: bool,
}

/// Request headers mcpgw sets (with `rate_limit_headers`) on a routed request
/// for Envoy's local and global rate-limit filters: the backend, the tool's
/// client-visible name (`tools/call` only) and the caller (the token's
/// subject, or `anonymous`). Client-sent values are always replaced or removed.
pub const RATE_LIMIT_HEADERS: [&str; 3] = ["x-mcpgw-backend", "x-mcpgw-tool", "x-mcpgw-caller"];

impl Config {
    pub fn backend(&self, name: &str) -> Option<(usize, &Backend)> {
        self.backends
            .iter()
            .enumerate()
            .find(|(_, b)| b.name == name)
    }
}

/// Parse and validate. `env` resolves `${VAR}` references (the VM environment
/// in Envoy, a map in tests).
pub fn compile(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(err(
            "",
            "the plugin configuration is empty; set `configuration` to a JSON object with at least `session` and `backends`",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        err(field, e.inner().to_string())
    })?;

    if !raw.path.starts_with('/') || raw.path.contains(['?', '#']) {
        return Err(err("path", "must be an absolute path like \"/mcp\""));
    }
    if !is_token(&raw.route_header) || raw.route_header != raw.route_header.to_ascii_lowercase() {
        return Err(err(
            "route_header",
            "must be a lower-case HTTP header name, the one your route's `cluster_header` names",
        ));
    }
    if raw.separator.is_empty()
        || raw.separator.len() > 8
        || !raw.separator.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(err(
            "separator",
            "must be 1 to 8 visible ASCII characters (the default is \"__\")",
        ));
    }

    let key_text = expand(&raw.session.key, env).map_err(|p| err("session.key", p))?;
    let key = decode_key(&key_text).map_err(|e| {
        err(
            "session.key",
            format!("{e}; generate one with `openssl rand -base64 32`"),
        )
    })?;
    let mut previous = Vec::new();
    for (i, k) in raw.session.previous_keys.iter().enumerate() {
        let field = format!("session.previous_keys[{i}]");
        let text = expand(k, env).map_err(|p| err(&field, p))?;
        previous.push(decode_key(&text).map_err(|e| err(&field, e.to_string()))?);
    }
    let session_ttl_ms = parse_duration(&raw.session.ttl).map_err(|p| err("session.ttl", p))?;
    if session_ttl_ms < 1000 {
        return Err(err("session.ttl", "must be at least 1s"));
    }

    if raw.backends.is_empty() {
        return Err(err(
            "backends",
            "needs at least one backend: {\"name\": ..., \"cluster\": ...}",
        ));
    }
    if raw.backends.len() > 64 {
        return Err(err("backends", "at most 64 backends per gateway"));
    }
    for (i, origin) in raw.allowed_origins.iter().enumerate() {
        if origin != "*" && crate::protocol::http::origin_host(origin).is_none() {
            return Err(err(
                format!("allowed_origins[{i}]"),
                "must be an origin like \"https://app.example.com\" (scheme://host[:port]) or \"*\"",
            ));
        }
    }

    let raw_auth_missing = raw.auth.is_none();
    let mut backends: Vec<Backend> = Vec::with_capacity(raw.backends.len());
    for (i, rb) in raw.backends.into_iter().enumerate() {
        let f = |name: &str| format!("backends[{i}].{name}");
        if rb.name.is_empty()
            || rb.name.len() > 48
            || !rb
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(
                f("name"),
                "must be 1 to 48 characters of letters, digits, '-' and '_'",
            ));
        }
        if rb.name.contains(raw.separator.as_str()) {
            return Err(err(
                f("name"),
                format!(
                    "\"{}\" contains the separator \"{}\", so prefixed names could not be split; rename the backend or change `separator`",
                    rb.name, raw.separator
                ),
            ));
        }
        if backends.iter().any(|b| b.name == rb.name) {
            return Err(err(
                f("name"),
                format!(
                    "\"{}\" is used by another backend; names must be unique",
                    rb.name
                ),
            ));
        }
        if rb.cluster.is_empty() || !is_safe_header_value(&rb.cluster) || rb.cluster.contains(' ') {
            return Err(err(f("cluster"), "must be the name of an Envoy cluster"));
        }
        if !rb.path.starts_with('/') || !is_safe_header_value(&rb.path) || rb.path.contains(' ') {
            return Err(err(
                f("path"),
                "must be the absolute path of the backend's MCP endpoint, like \"/mcp\"",
            ));
        }
        if let Some(a) = &rb.authority {
            if a.is_empty() || !is_safe_header_value(a) || a.contains(['/', ' ', '@']) {
                return Err(err(
                    f("authority"),
                    "must be host[:port], like \"api.example.com\"",
                ));
            }
        }
        let mut headers = Vec::with_capacity(rb.headers.len());
        for (name, value) in &rb.headers {
            let hf = format!("backends[{i}].headers.{name}");
            let lname = name.to_ascii_lowercase();
            if !is_token(&lname) {
                return Err(err(&hf, "is not a valid HTTP header name"));
            }
            if RESERVED_HEADERS.contains(&lname.as_str()) || lname == raw.route_header {
                return Err(err(
                    &hf,
                    "is managed by the gateway and cannot be set per backend (use `authority` for the Host)",
                ));
            }
            let v = expand(value, env).map_err(|p| err(&hf, p))?;
            if !is_safe_header_value(&v) {
                return Err(err(
                    &hf,
                    "the value (after ${VAR} expansion) contains control characters or non-ASCII bytes",
                ));
            }
            headers.push((lname, v));
        }
        let tools = NameFilter::compile(&rb.tools)
            .map_err(|(fld, p)| err(f(&format!("tools.{fld}")), p))?;
        let prompts = NameFilter::compile(&rb.prompts)
            .map_err(|(fld, p)| err(f(&format!("prompts.{fld}")), p))?;
        let timeout_ms = parse_duration(&rb.timeout).map_err(|p| err(f("timeout"), p))?;
        if timeout_ms == 0 {
            return Err(err(f("timeout"), "must be greater than zero"));
        }
        let token_exchange = match &rb.token_exchange {
            None => None,
            Some(raw) => {
                let te = super::token_exchange::compile(raw, env)
                    .map_err(|(fld, p)| err(f(&format!("token_exchange.{fld}")), p))?;
                if rb.forward_authorization {
                    return Err(err(
                        f("forward_authorization"),
                        "cannot be combined with token_exchange: the backend gets an exchanged token, never the client's",
                    ));
                }
                if headers.iter().any(|(k, _)| *k == te.header) {
                    return Err(err(
                        format!("backends[{i}].headers.{}", te.header),
                        "is where token_exchange puts the exchanged token; remove it",
                    ));
                }
                if raw_auth_missing {
                    return Err(err(
                        f("token_exchange"),
                        "needs `auth`: the gateway exchanges only tokens it verified (configure `auth` and jwt_authn)",
                    ));
                }
                Some(Box::new(te))
            }
        };
        backends.push(Backend {
            name: rb.name,
            cluster: rb.cluster,
            path: rb.path,
            authority: rb.authority,
            headers,
            tools,
            prompts,
            timeout_ms,
            prefix: rb.prefix.unwrap_or(raw.prefix),
            forward_authorization: rb.forward_authorization,
            standalone_stream: rb.standalone_stream,
            token_exchange,
        });
    }

    let mut auth = match &raw.auth {
        Some(a) => Some(super::auth::compile(a, &raw.path).map_err(|(f, p)| err(f, p))?),
        None => None,
    };
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    let authorization = match &raw.authorization {
        Some(p) => Some(super::policy::compile(p, &names).map_err(|(f, p)| err(f, p))?),
        None => None,
    };
    let audit = super::audit::compile(&raw.audit, &names).map_err(|(f, p)| err(f, p))?;
    // Without the payload header, claims are read one by one: the policy's too.
    if let (Some(a), Some(p)) = (auth.as_mut(), authorization.as_ref()) {
        for c in p.claim_names() {
            if !a.claim_names.contains(&c) {
                a.claim_names.push(c);
            }
        }
    }
    Ok(Config {
        path: raw.path,
        route_header: raw.route_header,
        rewrite: raw.rewrite,
        separator: raw.separator,
        backends,
        keys: Keyring::new(&key, &previous),
        session_ttl_ms,
        allowed_origins: raw.allowed_origins,
        max_request_bytes: raw.max_request_bytes,
        max_response_bytes: raw.max_response_bytes,
        server_name: raw.server_name.unwrap_or_else(|| "mcpgw".into()),
        auth,
        authorization,
        audit,
        metrics: raw.observability.metrics,
        access_log_fields: raw.observability.access_log_fields,
        rate_limit_headers: raw.rate_limit_headers,
    })
}

/// Headers the gateway sets itself on upstream requests.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "te",
    "upgrade",
];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Replace `${NAME}` with the environment variable's value. `$$` is a literal `$`.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i + 1..).unwrap_or("");
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_string())?;
            let name = r.get(..end).unwrap_or("");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("\"${{{name}}}\" is not a valid variable reference"));
            }
            let v = env(name).ok_or_else(|| {
                format!(
                    "environment variable {name} is not set; set it and expose it to the wasm VM with `vm_config.environment_variables.host_env_keys: [{name}]`"
                )
            })?;
            out.push_str(&v);
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `"250ms"`, `"15s"`, `"2m"`, `"24h"`, `"7d"` -> milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("\"{s}\" is not a duration like \"15s\", \"500ms\", \"2m\" or \"24h\"")
    })?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "\"{s}\" has no unit; write e.g. \"15s\", \"500ms\", \"2m\" or \"24h\""
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    pub fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            _ => None,
        }
    }

    fn compile_str(s: &str) -> Result<Config, ConfigError> {
        compile(s.as_bytes(), &env)
    }

    #[test]
    fn minimal_and_defaults() {
        let c = compile_str(&format!(
            r#"{{"session":{{"key":"{KEY}"}},"backends":[{{"name":"a","cluster":"c_a"}}]}}"#
        ))
        .unwrap();
        assert_eq!(c.path, "/mcp");
        assert_eq!(c.separator, "__");
        assert_eq!(c.backends[0].path, "/mcp");
        assert_eq!(c.backends[0].timeout_ms, 30_000);
        assert_eq!(c.session_ttl_ms, 86_400_000);
        assert_eq!(c.rewrite, Rewrite::Filter);
        assert!(!c.backends[0].prefixed(1));
        assert!(c.backends[0].prefixed(2));
    }

    #[test]
    fn env_expansion_in_headers() {
        let c = compile_str(&format!(
            r#"{{"session":{{"key":"{KEY}"}},"backends":[{{"name":"a","cluster":"c","headers":{{"Authorization":"Bearer ${{TOKEN}}","x-cost":"$$5"}}}}]}}"#
        ))
        .unwrap();
        assert_eq!(
            c.backends[0].headers,
            vec![
                ("authorization".to_string(), "Bearer s3cret".to_string()),
                ("x-cost".to_string(), "$5".to_string())
            ]
        );
    }

    fn expect_err(json: &str, field: &str, needle: &str) {
        let e = compile_str(json).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.problem.contains(needle), "{e}");
    }

    #[test]
    fn errors_name_the_field_and_fix() {
        let k = KEY;
        expect_err(
            &format!(
                r#"{{"session":{{"key":"{k}"}},"backends":[{{"name":"a","cluster":"c","headers":{{"x":"${{MISSING}}"}}}}]}}"#
            ),
            "backends[0].headers.x",
            "host_env_keys",
        );
        expect_err(
            r#"{"session":{"key":"AAAA"},"backends":[{"name":"a","cluster":"c"}]}"#,
            "session.key",
            "openssl rand",
        );
        expect_err(
            &format!(
                r#"{{"session":{{"key":"{k}"}},"backends":[{{"name":"a","cluster":"c","tols":{{}}}}]}}"#
            ),
            "backends[0].tols",
            "unknown field",
        );
        expect_err(
            &format!(
                r#"{{"session":{{"key":"{k}"}},"backends":[{{"name":"a__b","cluster":"c"}}]}}"#
            ),
            "backends[0].name",
            "separator",
        );
        expect_err(
            &format!(
                r#"{{"session":{{"key":"{k}"}},"backends":[{{"name":"a","cluster":"c"}},{{"name":"a","cluster":"d"}}]}}"#
            ),
            "backends[1].name",
            "unique",
        );
        expect_err(
            &format!(
                r#"{{"session":{{"key":"{k}"}},"backends":[{{"name":"a","cluster":"c","timeout":"10"}}]}}"#
            ),
            "backends[0].timeout",
            "unit",
        );
        expect_err(
            &format!(
                r#"{{"session":{{"key":"{k}"}},"backends":[{{"name":"a","cluster":"c","tools":{{"include_regex":["("]}}}}]}}"#
            ),
            "backends[0].tools.include_regex[0]",
            "regex",
        );
        expect_err(
            &format!(
                r#"{{"session":{{"key":"{k}"}},"backends":[{{"name":"a","cluster":"c","headers":{{"mcp-session-id":"x"}}}}]}}"#
            ),
            "backends[0].headers.mcp-session-id",
            "managed by the gateway",
        );
        expect_err(
            &format!(r#"{{"session":{{"key":"{k}"}},"backends":[]}}"#),
            "backends",
            "at least one",
        );
        expect_err(r#"{"backends":[]}"#, "", "missing field `session`");
        expect_err("", "", "empty");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("2m"), Ok(120_000));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
