//! What the gateway reports to Envoy's stats and access logs.
//!
//! Metric names carry their labels Istio-style (`;.;label=.=value`) so that
//! Envoy's `stats_tags` can turn them into Prometheus labels; the shipped
//! configurations contain the matching tag extractors (README lists the
//! metrics). Label values are sanitised and their number is capped per VM, so
//! a client sending made-up names cannot grow the stats without bound.

use super::host::{Host, MetricKind};
use std::collections::HashSet;
use std::sync::Mutex;

/// Label value used once a label has seen too many distinct values.
pub const OVERFLOW: &str = "other";
const MAX_TOOL_LABELS: usize = 2000;

/// Every metric name, for documentation and tests.
pub mod names {
    pub const REQUESTS: &str = "mcpgw.requests_total";
    pub const TOOL_CALLS: &str = "mcpgw.tool_calls_total";
    pub const ERRORS: &str = "mcpgw.errors_total";
    pub const FANOUT_MS: &str = "mcpgw.fanout_duration_ms";
    pub const INIT_BACKEND_FAILURES: &str = "mcpgw.initialize_backend_failures_total";
    pub const BACKEND_FAILURES: &str = "mcpgw.backend_failures_total";
    pub const SESSIONS_CREATED: &str = "mcpgw.sessions_created_total";
    pub const SESSIONS_DELETED: &str = "mcpgw.sessions_deleted_total";
}

/// Every label mcpgw puts in metric names.
pub const LABELS: [&str; 5] = ["method", "outcome", "backend", "tool", "kind"];

/// Envoy `stats_tags` (tag name, regex) that turn the embedded labels into
/// tags, which `/stats/prometheus` shows as Prometheus labels.
pub fn envoy_stats_tags() -> Vec<(&'static str, String)> {
    LABELS
        .iter()
        .map(|l| (*l, format!("(;\\.;{l}=\\.=([^;]*))")))
        .collect()
}

/// The bootstrap `stats_config` section with [`envoy_stats_tags`], as YAML.
pub fn envoy_stats_config_yaml() -> String {
    let mut s = String::from("stats_config:\n  stats_tags:\n");
    for (l, re) in envoy_stats_tags() {
        s.push_str(&format!("  - tag_name: {l}\n    regex: '{re}'\n"));
    }
    s
}

/// The access-log fields mcpgw publishes, as (JSON key, Envoy format string).
pub const ACCESS_LOG_FIELDS: [(&str, &str); 6] = [
    ("mcp_method", "%FILTER_STATE(wasm.mcpgw.method:PLAIN)%"),
    ("mcp_tool", "%FILTER_STATE(wasm.mcpgw.tool:PLAIN)%"),
    ("mcp_backend", "%FILTER_STATE(wasm.mcpgw.backend:PLAIN)%"),
    ("jsonrpc_id", "%FILTER_STATE(wasm.mcpgw.jsonrpc_id:PLAIN)%"),
    ("mcp_session", "%FILTER_STATE(wasm.mcpgw.session:PLAIN)%"),
    ("mcp_error", "%FILTER_STATE(wasm.mcpgw.error:PLAIN)%"),
];

/// Kinds of errors, the `kind` label of `mcpgw_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidJsonRpc,
    BadRequest,
    TooLarge,
    Origin,
    MissingSession,
    UnknownSession,
    ExpiredSession,
    DeletedSession,
    UnknownMethod,
    UnknownTool,
    InvalidParams,
    Unauthorized,
    Forbidden,
    BackendFailure,
    Collision,
    /// 2026-07-28: headers and body disagree, or a required header is missing.
    HeaderMismatch,
    /// 2026-07-28: a protocol version the gateway does not serve.
    UnsupportedVersion,
}

impl ErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidJsonRpc => "invalid_jsonrpc",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Origin => "origin",
            ErrorKind::MissingSession => "missing_session",
            ErrorKind::UnknownSession => "unknown_session",
            ErrorKind::ExpiredSession => "expired_session",
            ErrorKind::DeletedSession => "deleted_session",
            ErrorKind::UnknownMethod => "unknown_method",
            ErrorKind::UnknownTool => "unknown_tool",
            ErrorKind::InvalidParams => "invalid_params",
            ErrorKind::Unauthorized => "auth",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::BackendFailure => "backend_failure",
            ErrorKind::Collision => "name_collision",
            ErrorKind::HeaderMismatch => "header_mismatch",
            ErrorKind::UnsupportedVersion => "unsupported_version",
        }
    }
}

/// Build `base;.;k=.=v;.;k2=.=v2` with sanitised values.
pub fn metric_name(base: &str, labels: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(base.len() + labels.len() * 24);
    s.push_str(base);
    for (k, v) in labels {
        s.push_str(";.;");
        s.push_str(k);
        s.push_str("=.=");
        s.push_str(&sanitize(v));
    }
    s
}

/// Label values: printable ASCII without the delimiter characters, at most 96 bytes.
pub fn sanitize(v: &str) -> String {
    let mut out: String = v
        .chars()
        .take(96)
        .map(|c| {
            if c.is_ascii_graphic() && c != ';' && c != '=' && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Per-gateway bookkeeping for label cardinality.
#[derive(Default)]
pub struct Cardinality {
    tools: Mutex<HashSet<String>>,
}

impl Cardinality {
    /// The tool label to use: the name itself while the set of seen names is
    /// small, `other` after that.
    pub fn tool_label(&self, name: &str) -> String {
        let Ok(mut seen) = self.tools.lock() else {
            return OVERFLOW.into();
        };
        if seen.contains(name) {
            return name.to_string();
        }
        if seen.len() >= MAX_TOOL_LABELS {
            return OVERFLOW.into();
        }
        seen.insert(name.to_string());
        name.to_string()
    }
}

/// The request-level facts reported when the request ends.
#[derive(Debug, Default, Clone)]
pub struct RequestStats {
    /// JSON-RPC method, or `http.get` / `http.delete` / `jsonrpc.response`.
    pub method: Option<String>,
    pub backend: Option<String>,
    pub error: Option<ErrorKind>,
    /// The backend answered with a JSON-RPC error (the request failed, but
    /// not in the gateway).
    pub backend_error: bool,
    pub reported: bool,
}

/// Count one event (when metrics are `enabled` in the config).
pub fn count(enabled: bool, host: &dyn Host, base: &str, labels: &[(&str, &str)]) {
    if enabled {
        host.metric(MetricKind::Counter, &metric_name(base, labels), 1);
    }
}

/// Record a histogram sample (when metrics are `enabled` in the config).
pub fn observe(enabled: bool, host: &dyn Host, base: &str, labels: &[(&str, &str)], value: u64) {
    if enabled {
        host.metric(MetricKind::Histogram, &metric_name(base, labels), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_embed_sanitised_labels() {
        assert_eq!(
            metric_name(
                names::REQUESTS,
                &[("method", "tools/call"), ("outcome", "ok")]
            ),
            "mcpgw.requests_total;.;method=.=tools/call;.;outcome=.=ok"
        );
        assert_eq!(sanitize("a;.;b=.=c d\n\"é"), "a_._b_._c_d___");
        assert_eq!(sanitize(""), "_");
        assert_eq!(sanitize(&"x".repeat(500)).len(), 96);
    }

    #[test]
    fn stats_config() {
        let y = envoy_stats_config_yaml();
        assert!(y.starts_with("stats_config:\n  stats_tags:\n  - tag_name: method\n    regex: '(;\\.;method=\\.=([^;]*))'\n"));
        assert_eq!(y.matches("tag_name").count(), LABELS.len());
    }

    #[test]
    fn tool_labels_are_capped() {
        let c = Cardinality::default();
        for i in 0..MAX_TOOL_LABELS {
            assert_eq!(c.tool_label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(c.tool_label("one_too_many"), OVERFLOW);
        assert_eq!(c.tool_label("t5"), "t5", "known names keep their label");
    }
}
