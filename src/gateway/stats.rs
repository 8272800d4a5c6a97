//! What the gateway reports to Envoy's stats and access logs.
//!
//! The metric families (name, kind, label names) are fixed here; every series
//! whose label values are known from the configuration (methods, outcomes,
//! error kinds, backends) is declared once when the configuration is set up
//! ([`Meters::new`]) and recorded per request through its handle, without
//! formatting a name or looking one up. Only `mcpgw.tool_calls_total`, labelled
//! by tool name, is recorded by label values ([`Host::record_labelled`]).
//!
//! Hosts whose stats carry no labels (proxy-wasm) name a series
//! Istio-style, `name;.;label=.=value` ([`metric_name`]), and Envoy's
//! `stats_tags` ([`envoy_stats_tags`]) turn those back into Prometheus
//! labels; the shipped configurations contain the extractors (README lists
//! the metrics). Label values are sanitised and the tool label's values are
//! capped per gateway, so a client sending made-up names cannot grow the
//! stats without bound.

use super::config::Config;
use super::host::{Configure, Family, Host, MetricId};
use crate::protocol::mcp::{Notification, Request};
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
    pub const RATE_LIMITED: &str = "mcpgw.rate_limited_total";
}

/// The metric families.
pub mod families {
    use super::names;
    use crate::gateway::host::{Family, MetricKind};

    /// Requests by `method` and `outcome` (`ok` / `error`).
    pub const REQUESTS: Family = Family {
        name: names::REQUESTS,
        kind: MetricKind::Counter,
        labels: &["method", "outcome"],
    };
    /// `tools/call` by `backend`, `tool` and `outcome`.
    pub const TOOL_CALLS: Family = Family {
        name: names::TOOL_CALLS,
        kind: MetricKind::Counter,
        labels: &["backend", "tool", "outcome"],
    };
    /// Requests the gateway failed, by `kind`.
    pub const ERRORS: Family = Family {
        name: names::ERRORS,
        kind: MetricKind::Counter,
        labels: &["kind"],
    };
    /// How long fan-outs took, by `method`.
    pub const FANOUT_MS: Family = Family {
        name: names::FANOUT_MS,
        kind: MetricKind::Histogram,
        labels: &["method"],
    };
    pub const INIT_BACKEND_FAILURES: Family = Family {
        name: names::INIT_BACKEND_FAILURES,
        kind: MetricKind::Counter,
        labels: &["backend"],
    };
    pub const BACKEND_FAILURES: Family = Family {
        name: names::BACKEND_FAILURES,
        kind: MetricKind::Counter,
        labels: &["backend"],
    };
    pub const SESSIONS_CREATED: Family = Family {
        name: names::SESSIONS_CREATED,
        kind: MetricKind::Counter,
        labels: &[],
    };
    pub const SESSIONS_DELETED: Family = Family {
        name: names::SESSIONS_DELETED,
        kind: MetricKind::Counter,
        labels: &[],
    };

    /// Routed requests Envoy's rate-limit filters refused, by `backend` and `tool`.
    pub const RATE_LIMITED: Family = Family {
        name: names::RATE_LIMITED,
        kind: MetricKind::Counter,
        labels: &["backend", "tool"],
    };

    pub const ALL: [&Family; 9] = [
        &REQUESTS,
        &TOOL_CALLS,
        &ERRORS,
        &FANOUT_MS,
        &INIT_BACKEND_FAILURES,
        &BACKEND_FAILURES,
        &SESSIONS_CREATED,
        &SESSIONS_DELETED,
        &RATE_LIMITED,
    ];
}

/// Every label mcpgw's families use.
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
    /// A backend's token exchange failed (`token_exchange`).
    TokenExchange,
    RateLimited,
    /// 2026-07-28: headers and body disagree, or a required header is missing.
    HeaderMismatch,
    /// 2026-07-28: a protocol version the gateway does not serve.
    UnsupportedVersion,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::InvalidJsonRpc,
        ErrorKind::BadRequest,
        ErrorKind::TooLarge,
        ErrorKind::Origin,
        ErrorKind::MissingSession,
        ErrorKind::UnknownSession,
        ErrorKind::ExpiredSession,
        ErrorKind::DeletedSession,
        ErrorKind::UnknownMethod,
        ErrorKind::UnknownTool,
        ErrorKind::InvalidParams,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::BackendFailure,
        ErrorKind::Collision,
        ErrorKind::TokenExchange,
        ErrorKind::RateLimited,
        ErrorKind::HeaderMismatch,
        ErrorKind::UnsupportedVersion,
    ];

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
            ErrorKind::TokenExchange => "token_exchange",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::HeaderMismatch => "header_mismatch",
            ErrorKind::UnsupportedVersion => "unsupported_version",
        }
    }
}

/// The flat name of a series for hosts without labelled stats:
/// `base;.;k=.=v;.;k2=.=v2` with sanitised values.
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

/// The flat name of one series of `family`, `labels` in its label order.
pub fn series_name(family: &Family, labels: &[&str]) -> String {
    let pairs: Vec<(&str, &str)> = family
        .labels
        .iter()
        .copied()
        .zip(labels.iter().copied())
        .collect();
    metric_name(family.name, &pairs)
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
    /// The tool label to use: the name itself (sanitised) while the set of
    /// seen names is small, `other` after that.
    pub fn tool_label(&self, name: &str) -> String {
        let Ok(mut seen) = self.tools.lock() else {
            return OVERFLOW.into();
        };
        if !seen.contains(name) {
            if seen.len() >= MAX_TOOL_LABELS {
                return OVERFLOW.into();
            }
            seen.insert(name.to_string());
        }
        sanitize(name)
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

/// Words of the `method` label besides MCP's own methods (client-chosen
/// method names never become labels).
const OTHER_METHODS: [&str; 7] = [
    "http.get",
    "http.delete",
    "http.post",
    "jsonrpc.response",
    "invalid",
    "notifications/other",
    "other",
];

/// Every value of the `method` label of `mcpgw.requests_total`, in the
/// order [`method_index`] counts them.
pub fn method_labels() -> impl Iterator<Item = &'static str> {
    Request::TABLE
        .iter()
        .map(|(m, _)| *m)
        .chain(Notification::TABLE.iter().map(|(m, _)| *m))
        .chain(OTHER_METHODS)
}

/// The position of `m`'s label in [`method_labels`].
pub fn method_index(m: &str) -> usize {
    let requests = Request::TABLE.len();
    let notifications = Notification::TABLE.len();
    let other = |w: &str| {
        let i = OTHER_METHODS.iter().position(|o| *o == w).unwrap_or(0);
        requests + notifications + i
    };
    if let Some(i) = Request::TABLE.iter().position(|(n, _)| *n == m) {
        return i;
    }
    if let Some(i) = Notification::TABLE.iter().position(|(n, _)| *n == m) {
        return requests + i;
    }
    match m {
        "http.get" | "http.delete" | "http.post" | "jsonrpc.response" | "invalid" => other(m),
        _ if m.starts_with("notifications/") => other("notifications/other"),
        _ => other("other"),
    }
}

/// The `method` label of `mcpgw.fanout_duration_ms`: what was fanned out.
pub const FANOUT_METHODS: [&str; 13] = [
    "initialize",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "tasks/list",
    "logging/setLevel",
    "notification",
    "http.delete",
    "lookup",
    "first_success",
    "authorization_server_metadata",
    "learn",
];

/// The gateway's metric handles, declared once per configuration.
pub struct Meters {
    /// Whether anything is reported (`observability.metrics`).
    enabled: bool,
    /// By [`method_index`]: `[ok, error]`.
    requests: Vec<[Option<MetricId>; 2]>,
    /// By [`ErrorKind::ALL`] position.
    errors: Vec<Option<MetricId>>,
    /// By [`FANOUT_METHODS`] position.
    fanout_ms: Vec<Option<MetricId>>,
    /// By backend index.
    backend_failures: Vec<Option<MetricId>>,
    init_failures: Vec<Option<MetricId>>,
    sessions_created: Option<MetricId>,
    sessions_deleted: Option<MetricId>,
}

const OUTCOMES: [&str; 2] = ["ok", "error"];

impl Meters {
    /// Declare every fixed series of `cfg` with the host (nothing when
    /// metrics are off).
    pub fn new(cfg: &Config, host: &mut dyn Configure) -> Meters {
        if !cfg.metrics {
            return Meters::off();
        }
        let mut define = |f: &Family, labels: &[&str]| host.define_metric(f, labels);
        let requests = method_labels()
            .map(|m| OUTCOMES.map(|o| define(&families::REQUESTS, &[m, o])))
            .collect();
        let errors = ErrorKind::ALL
            .iter()
            .map(|k| define(&families::ERRORS, &[k.label()]))
            .collect();
        let fanout_ms = FANOUT_METHODS
            .iter()
            .map(|m| define(&families::FANOUT_MS, &[m]))
            .collect();
        let names: Vec<String> = cfg.backends.iter().map(|b| sanitize(&b.name)).collect();
        let backend_failures = names
            .iter()
            .map(|b| define(&families::BACKEND_FAILURES, &[b.as_str()]))
            .collect();
        let init_failures = names
            .iter()
            .map(|b| define(&families::INIT_BACKEND_FAILURES, &[b.as_str()]))
            .collect();
        Meters {
            enabled: true,
            requests,
            errors,
            fanout_ms,
            backend_failures,
            init_failures,
            sessions_created: define(&families::SESSIONS_CREATED, &[]),
            sessions_deleted: define(&families::SESSIONS_DELETED, &[]),
        }
    }

    /// Nothing is reported.
    pub fn off() -> Meters {
        Meters {
            enabled: false,
            requests: Vec::new(),
            errors: Vec::new(),
            fanout_ms: Vec::new(),
            backend_failures: Vec::new(),
            init_failures: Vec::new(),
            sessions_created: None,
            sessions_deleted: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn add(host: &dyn Host, id: Option<&Option<MetricId>>, value: u64) {
        if let Some(Some(id)) = id {
            host.record(*id, value);
        }
    }

    /// A request ended (`method` as in [`RequestStats::method`]).
    pub fn request(&self, host: &dyn Host, method: &str, failed: bool) {
        let series = self.requests.get(method_index(method));
        Self::add(host, series.and_then(|s| s.get(usize::from(failed))), 1);
    }

    pub fn error(&self, host: &dyn Host, kind: ErrorKind) {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind);
        Self::add(host, i.and_then(|i| self.errors.get(i)), 1);
    }

    /// A tool call ended; `tool` is the label from [`Cardinality::tool_label`].
    pub fn tool_call(&self, host: &dyn Host, backend: &str, tool: &str, failed: bool) {
        if self.enabled {
            let outcome = OUTCOMES.get(usize::from(failed)).copied().unwrap_or("ok");
            host.record_labelled(&families::TOOL_CALLS, &[backend, tool, outcome], 1);
        }
    }

    /// Envoy's rate limit refused a routed request (`tool` as for [`Self::tool_call`]).
    pub fn rate_limited(&self, host: &dyn Host, backend: &str, tool: &str) {
        if self.enabled {
            host.record_labelled(&families::RATE_LIMITED, &[backend, tool], 1);
        }
    }

    /// A fan-out (`what`: one of [`FANOUT_METHODS`]) took `ms`.
    pub fn fanout(&self, host: &dyn Host, what: &str, ms: u64) {
        let i = FANOUT_METHODS.iter().position(|m| *m == what);
        Self::add(host, i.and_then(|i| self.fanout_ms.get(i)), ms);
    }

    pub fn backend_failure(&self, host: &dyn Host, backend: usize) {
        Self::add(host, self.backend_failures.get(backend), 1);
    }

    pub fn init_failure(&self, host: &dyn Host, backend: usize) {
        Self::add(host, self.init_failures.get(backend), 1);
    }

    pub fn session_created(&self, host: &dyn Host) {
        Self::add(host, Some(&self.sessions_created), 1);
    }

    pub fn session_deleted(&self, host: &dyn Host) {
        Self::add(host, Some(&self.sessions_deleted), 1);
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
    fn method_labels_are_indexed_consistently() {
        let labels: Vec<&str> = method_labels().collect();
        for (i, m) in labels.iter().enumerate() {
            assert_eq!(method_index(m), i, "{m}");
        }
        let label = |m: &str| labels[method_index(m)];
        assert_eq!(label("tools/call"), "tools/call");
        assert_eq!(label("notifications/progress"), "notifications/progress");
        assert_eq!(
            label("nope/nope"),
            "other",
            "client-chosen names are not labels"
        );
        assert_eq!(label("notifications/whatever"), "notifications/other");
        assert_eq!(label("http.options"), "other");
        assert_eq!(label("jsonrpc.response"), "jsonrpc.response");
    }

    #[test]
    fn every_fan_out_has_its_label() {
        use crate::gateway::exchange::{FanOp, Lookup, NameKind};
        use crate::protocol::mcp::{ListKind, Version};
        let mut ops = vec![
            FanOp::Initialize {
                negotiated: Version::LATEST,
            },
            FanOp::SetLevel,
            FanOp::Notify,
            FanOp::Delete,
            FanOp::Lookup(Box::new(Lookup {
                what: NameKind::Tool,
                name: "x".into(),
                params: None,
                found: Vec::new(),
            })),
            FanOp::FirstSuccess,
            FanOp::AsMetadata,
            FanOp::Learn(Box::new(crate::gateway::modern::client::Learn::nothing())),
        ];
        ops.extend(ListKind::ALL.map(|kind| FanOp::List { kind }));
        let labels: HashSet<&str> = ops.iter().map(FanOp::label).collect();
        assert_eq!(labels, FANOUT_METHODS.into_iter().collect());
    }

    /// Declares series by their flat names.
    struct Names(Vec<String>);

    impl Configure for Names {
        fn define_metric(&mut self, family: &Family, labels: &[&str]) -> Option<MetricId> {
            assert_eq!(family.labels.len(), labels.len(), "{}", family.name);
            self.0.push(series_name(family, labels));
            Some(MetricId(u32::try_from(self.0.len()).unwrap()))
        }
    }

    #[test]
    fn fixed_series_are_declared_once_at_configure_time() {
        let gw = crate::gateway::testing::gateway(
            r#"[{"name":"alpha","cluster":"a"},{"name":"beta","cluster":"b"}]"#,
        );
        let mut names = Names(Vec::new());
        let meters = Meters::new(&gw.cfg, &mut names);
        assert!(meters.enabled());
        let n = names.0.len();
        assert_eq!(
            n,
            method_labels().count() * 2 + ErrorKind::ALL.len() + FANOUT_METHODS.len() + 2 * 2 + 2
        );
        let unique: HashSet<&String> = names.0.iter().collect();
        assert_eq!(unique.len(), n, "no series twice");
        for want in [
            "mcpgw.requests_total;.;method=.=tools/call;.;outcome=.=error",
            "mcpgw.errors_total;.;kind=.=name_collision",
            "mcpgw.fanout_duration_ms;.;method=.=resources/templates/list",
            "mcpgw.backend_failures_total;.;backend=.=beta",
            "mcpgw.initialize_backend_failures_total;.;backend=.=alpha",
            "mcpgw.sessions_created_total",
        ] {
            assert!(names.0.iter().any(|x| x == want), "{want}");
        }
        // Every label they use has a tag extractor.
        for f in families::ALL {
            for l in f.labels {
                assert!(LABELS.contains(l), "{l}");
            }
        }
        let off = crate::gateway::testing::gateway_with(
            r#"[{"name":"a","cluster":"a"}]"#,
            r#","observability":{"metrics":false}"#,
        );
        let mut none = Names(Vec::new());
        assert!(!Meters::new(&off.cfg, &mut none).enabled());
        assert!(none.0.is_empty());
    }

    #[test]
    fn tool_labels_are_capped() {
        let c = Cardinality::default();
        for i in 0..MAX_TOOL_LABELS {
            assert_eq!(c.tool_label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(c.tool_label("one_too_many"), OVERFLOW);
        assert_eq!(c.tool_label("t5"), "t5", "known names keep their label");
        assert_eq!(
            Cardinality::default().tool_label("a;b=c"),
            "a_b_c",
            "sanitised"
        );
    }
}
