//! The gateway description both input formats (mcp-servers.json and MCPRoute
//! YAML) produce, and every renderer consumes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// A whole gateway: one MCP endpoint in front of `backends`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// Where it came from (file names), for messages.
    pub source: String,
    /// The gateway's MCP endpoint path (`/mcp`).
    pub path: String,
    /// Hostnames the route answers for (MCPRoute `hostnames`); empty = any.
    pub hostnames: Vec<String>,
    pub backends: Vec<Backend>,
    /// Client authentication (MCPRoute `securityPolicy.oauth`).
    pub oauth: Option<OAuth>,
    /// The filter's `authorization` policy (MCPRoute
    /// `securityPolicy.authorization`, translated and checked).
    pub authorization: Option<serde_json::Value>,
    /// Rate limits `run` / `render` put in front of the backends.
    pub limits: Vec<RateLimit>,
    /// Kubernetes identity (from the MCPRoute, or defaults for mcp-servers.json).
    pub kube: KubeMeta,
    /// Variables named in headers whose values come from Kubernetes Secrets
    /// (MCPRoute `apiKey.secretRef`).
    pub secret_env: Vec<SecretEnv>,
}

/// A `${var}` of a backend header whose value is a key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    pub var: String,
    /// The Secret's name and key (Kubernetes rendering reads it from there).
    pub secret: String,
    pub key: String,
    pub value: SecretValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// The Secret document in the input holds it; `mcpgw run` passes it to
    /// Envoy's environment.
    Literal(String),
    /// The Secret's `substitution.aigw.run/env/<key>` annotation names `var`,
    /// which must be in mcpgw's environment.
    HostEnv,
    /// The Secret is not in the input (it exists only in the cluster).
    NotInFile,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubeMeta {
    pub name: String,
    pub namespace: String,
    /// Gateways the route attaches to (`parentRefs`).
    pub parent_refs: Vec<ParentRef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParentRef {
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
    pub port: Option<u16>,
}

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// The gateway name (tool prefix). Valid for the filter.
    pub name: String,
    pub target: Target,
    /// Extra request headers. Values use the filter's `${VAR}` syntax (a
    /// literal `$` is `$$`); the variables come from Envoy's environment.
    pub headers: BTreeMap<String, String>,
    pub tools: NameFilter,
    /// Pass the client's `Authorization` to this backend.
    pub forward_authorization: bool,
}

impl Backend {
    /// Variables named in `headers` (`${VAR}`), sorted, deduplicated.
    pub fn env_refs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.headers.values() {
            for name in env_refs(v) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out.sort();
        out
    }
}

/// Tool filter, the filter's `tools` member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub include_regex: Vec<String>,
    pub exclude_regex: Vec<String>,
}

impl NameFilter {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.include_regex.is_empty()
            && self.exclude_regex.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A Streamable HTTP server Envoy reaches directly.
    Http(HttpTarget),
    /// A stdio server `mcpgw run` starts and bridges to HTTP on 127.0.0.1.
    Stdio(StdioCommand),
    /// A Kubernetes `Backend` the input references but does not define: it
    /// exists only in the cluster (`render --kubernetes` only).
    InCluster { backend: String, path: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpTarget {
    pub host: Host,
    pub port: u16,
    /// Path (and query) of the MCP endpoint.
    pub path: String,
    /// TLS towards the backend; `None` = plain HTTP.
    pub tls: Option<Tls>,
    /// The Kubernetes `Backend` this came from (MCPRoute input), if any.
    pub kube_backend: Option<String>,
}

impl HttpTarget {
    /// `host[:port]` as the `:authority` (port left out when it is the
    /// scheme's default).
    pub fn authority(&self) -> String {
        let default = if self.tls.is_some() { 443 } else { 80 };
        let host = match &self.host {
            Host::Name(n) => n.clone(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// SNI and the name the certificate must match.
    pub sni: String,
    pub ca: CaSource,
    /// Extra names accepted in the certificate (BackendTLSPolicy subjectAltNames).
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// The system bundle (or `--ca-file`).
    System,
    /// PEM from a ConfigMap/Secret of the input (`caCertificateRefs`).
    Inline { pem: String, from: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioCommand {
    pub command: String,
    pub args: Vec<String>,
    /// Extra environment for the child (values already expanded).
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// `maxProcesses`: live processes at most (per-session mode); `None`
    /// takes `mcpgw run --stdio-max-processes`.
    pub max_processes: Option<usize>,
    /// `sharedProcess`: one process serves every session.
    pub shared: bool,
}

/// MCPRoute `securityPolicy.oauth`: JWT access tokens checked by Envoy's
/// `jwt_authn` in front of the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: Option<Jwks>,
    pub protected_resource: ProtectedResource,
    /// `claimToHeaders`: (header, claim).
    pub claim_to_headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Jwks {
    Remote {
        uri: String,
        cache_duration: Option<String>,
    },
    /// The JWKS JSON itself.
    Local { json: String },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProtectedResource {
    pub resource: String,
    pub resource_name: Option<String>,
    pub scopes_supported: Vec<String>,
    pub signing_alg_values_supported: Vec<String>,
    pub documentation: Option<String>,
    pub policy_uri: Option<String>,
}

/// A local rate limit on routed requests (Envoy's `local_ratelimit`, fed
/// by the attributes mcpgw names in request headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub key: LimitKey,
    pub requests: u32,
    pub per_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// Each caller (the token's subject; `anonymous` without OAuth) on its own.
    PerCaller,
    /// One tool, by its client-visible name, for all callers together.
    Tool(String),
}

/// `N/PERIOD`: `60/m`, `5/s`, `100/h`, or a duration such as `10/30s`.
pub fn parse_rate(spec: &str) -> Result<(u32, u64), String> {
    let bad =
        || format!("\"{spec}\" is not a rate like \"60/m\", \"5/s\", \"100/h\" or \"10/30s\"");
    let (n, per) = spec.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let per = per.trim();
    let ms = match per {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => mcpgw_core::gateway::config::parse_duration(per).map_err(|_| bad())?,
    };
    if ms < 50 {
        return Err(format!("\"{spec}\": the period must be at least 50ms"));
    }
    Ok((n, ms))
}

/// `${NAME}` references in a filter-syntax template (`$$` is a literal `$`).
pub fn env_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = rest.get(i + 1..).unwrap_or("");
        if let Some(r) = after.strip_prefix('$') {
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            match r.find('}') {
                Some(end) => {
                    out.push(r.get(..end).unwrap_or("").to_string());
                    rest = r.get(end + 1..).unwrap_or("");
                }
                None => break,
            }
        } else {
            rest = after;
        }
    }
    out
}

/// A literal string in the filter's template syntax.
pub fn escape_dollars(s: &str) -> String {
    s.replace('$', "$$")
}

/// Problems found while loading: the first error stops, warnings are collected.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub warnings: Vec<String>,
}

impl Diagnostics {
    pub fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }
}

/// Names the filter accepts: 1-48 of letters, digits, '-', '_', without the
/// separator "__".
pub fn valid_backend_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.contains("__")
}

/// The closest valid backend name.
pub fn sanitize_backend_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let trimmed = out.trim_matches(|c| c == '-' || c == '_');
    let mut s: String = trimmed.chars().take(48).collect();
    if s.is_empty() {
        s = "server".into();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("60/m"), Ok((60, 60_000)));
        assert_eq!(parse_rate("5/s"), Ok((5, 1000)));
        assert_eq!(parse_rate("10/30s"), Ok((10, 30_000)));
        for bad in ["0/s", "x/s", "5", "5/", "5/10ms", "5/y"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refs_and_names() {
        assert_eq!(env_refs("Bearer ${A} $$x ${B_2}"), vec!["A", "B_2"]);
        assert_eq!(escape_dollars("a$b"), "a$$b");
        assert!(valid_backend_name("git-hub_1"));
        assert!(!valid_backend_name("a__b"));
        assert_eq!(
            sanitize_backend_name("github.com/foo bar"),
            "github-com-foo-bar"
        );
        assert_eq!(sanitize_backend_name("a__b"), "a_b");
        assert_eq!(sanitize_backend_name("@@"), "server");
    }

    #[test]
    fn authority_omits_default_port() {
        let mut t = HttpTarget {
            host: Host::Name("api.example.com".into()),
            port: 443,
            path: "/mcp".into(),
            tls: Some(Tls {
                sni: "api.example.com".into(),
                ca: CaSource::System,
                subject_alt_names: vec![],
            }),
            kube_backend: None,
        };
        assert_eq!(t.authority(), "api.example.com");
        assert_eq!(t.url(), "https://api.example.com/mcp");
        t.port = 8443;
        assert_eq!(t.authority(), "api.example.com:8443");
        t.tls = None;
        t.host = Host::Ip("::1".parse().unwrap_or(IpAddr::from([0u8; 16])));
        assert_eq!(t.authority(), "[::1]:8443");
    }
}

/// An `http(s)://host[:port][/path][?query]` URL, split for the Envoy config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub https: bool,
    pub host: Host,
    pub port: u16,
    /// Path and query; `/` when the URL has none.
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("\"{url}\" is not an http:// or https:// URL"));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (hostport, tail) = rest.split_at(end);
    let tail = tail.split('#').next().unwrap_or("");
    if hostport.contains('@') {
        return Err(format!(
            "\"{url}\" has user:password in the URL; put credentials in `headers` instead"
        ));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6
            .find(']')
            .ok_or_else(|| format!("\"{url}\" has an unterminated [IPv6] host"))?;
        let ip: std::net::Ipv6Addr = v6
            .get(..close)
            .unwrap_or("")
            .parse()
            .map_err(|_| format!("\"{url}\" has an invalid IPv6 address"))?;
        let after = v6.get(close + 1..).unwrap_or("");
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("\"{url}\" has junk after the IPv6 address")),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, p) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if h.is_empty() {
            return Err(format!("\"{url}\" has no host"));
        }
        let host = match h.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => {
                if !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
                {
                    return Err(format!("\"{url}\" has an invalid host name \"{h}\""));
                }
                Host::Name(h.to_ascii_lowercase())
            }
        };
        (host, p)
    };
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("\"{url}\" has an invalid port \"{p}\""))?,
    };
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    if path.contains(|c: char| c.is_ascii_control() || c == ' ' || !c.is_ascii()) {
        return Err(format!(
            "\"{url}\": the path has spaces or non-ASCII characters; percent-encode them"
        ));
    }
    Ok(ParsedUrl {
        https,
        host,
        port,
        path,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod url_tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://api.githubcopilot.com/mcp/").unwrap();
        assert!(u.https);
        assert_eq!(u.host, Host::Name("api.githubcopilot.com".into()));
        assert_eq!(u.port, 443);
        assert_eq!(u.path, "/mcp/");
        let u = parse_url("http://127.0.0.1:9001").unwrap();
        assert_eq!(u.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!((u.port, u.path.as_str()), (9001, "/"));
        let u = parse_url("http://[::1]:8080/x?y=1#frag").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/x?y=1"));
        assert_eq!(parse_url("http://h?k=v").unwrap().path, "/?k=v");
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://u:p@x").unwrap_err().contains("headers"));
        assert!(parse_url("http://x:0").is_err());
        assert!(parse_url("http://x:99999").is_err());
    }
}
