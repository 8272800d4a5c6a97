//! The audit record of a request: every `tools/call`, `prompts/get`,
//! `resources/read` and every denial. mcpgw publishes its fields as filter
//! state (`wasm.mcpgw.audit_*`); Envoy's JSON access log writes the record,
//! so operators ship it with the pipeline they already have (the shipped
//! configs and `mcpgw run --audit-log` set that log up, filtered to audited
//! requests).
//!
//! Arguments are redacted by default: only the argument names a tool's
//! `audit.arguments` entry lists are recorded, with their values; the others
//! appear with the value `"[redacted]"`.

use super::host::LogField;
use super::policy::{Kind, Resource};
use crate::protocol::jsonrpc::RawObject;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Where a member of the audit record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordValue {
    /// A field the filter publishes (each adapter knows its filter-state key).
    Field(LogField),
    /// An Envoy access-log command.
    Envoy(&'static str),
}

/// The audit record as Envoy's JSON access log writes it: (JSON key, value),
/// in order. Each adapter turns it into format strings for its filter-state keys.
pub const RECORD: [(&str, RecordValue); 17] = [
    ("time", RecordValue::Envoy("%START_TIME%")),
    ("caller_issuer", RecordValue::Field(LogField::CallerIssuer)),
    (
        "caller_subject",
        RecordValue::Field(LogField::CallerSubject),
    ),
    (
        "caller_client_id",
        RecordValue::Field(LogField::CallerClientId),
    ),
    ("session", RecordValue::Field(LogField::Session)),
    ("jsonrpc_id", RecordValue::Field(LogField::JsonRpcId)),
    ("method", RecordValue::Field(LogField::Method)),
    ("backend", RecordValue::Field(LogField::AuditBackend)),
    ("kind", RecordValue::Field(LogField::AuditKind)),
    ("resource", RecordValue::Field(LogField::AuditResource)),
    ("decision", RecordValue::Field(LogField::AuditDecision)),
    ("rule", RecordValue::Field(LogField::AuditRule)),
    ("outcome", RecordValue::Field(LogField::AuditOutcome)),
    ("status", RecordValue::Envoy("%RESPONSE_CODE%")),
    ("duration_ms", RecordValue::Envoy("%DURATION%")),
    ("arguments", RecordValue::Field(LogField::AuditArguments)),
    ("request_id", RecordValue::Envoy("%REQ(X-REQUEST-ID)%")),
];

/// The record's members as Envoy format strings, given how an adapter names
/// a field's filter state (`%FILTER_STATE(<key>:PLAIN)%`).
pub fn record_formats(key: impl Fn(LogField) -> String) -> Vec<(&'static str, String)> {
    RECORD
        .iter()
        .map(|(k, v)| {
            let format = match v {
                RecordValue::Field(f) => format!("%FILTER_STATE({}:PLAIN)%", key(*f)),
                RecordValue::Envoy(e) => (*e).to_string(),
            };
            (*k, format)
        })
        .collect()
}

/// Envoy's CEL access-log filter keeping only requests with a record, given
/// the filter-state key of [`LogField::Audit`].
pub fn record_filter(audit_key: &str) -> String {
    format!("'{audit_key}' in filter_state")
}

/// `audit` in the plugin config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Per tool, the argument names whose values are recorded.
    #[serde(default)]
    pub arguments: Vec<RawArguments>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArguments {
    pub backend: String,
    pub tool: String,
    pub names: Vec<String>,
}

/// Compiled: (backend, tool) -> argument names to record.
#[derive(Debug, Default)]
pub struct AuditConfig {
    arguments: Vec<(String, String, Vec<String>)>,
}

pub fn compile(raw: &RawAudit, backends: &[&str]) -> Result<AuditConfig, (String, String)> {
    let mut out = AuditConfig::default();
    for (i, a) in raw.arguments.iter().enumerate() {
        if !backends.contains(&a.backend.as_str()) {
            return Err((
                format!("audit.arguments[{i}].backend"),
                format!("\"{}\" is not a backend of this gateway", a.backend),
            ));
        }
        out.arguments
            .push((a.backend.clone(), a.tool.clone(), a.names.clone()));
    }
    Ok(out)
}

impl AuditConfig {
    /// Whether some argument values of `backend`'s `tool` are recorded.
    pub fn keeps_values_of(&self, backend: &str, tool: &str) -> bool {
        self.arguments
            .iter()
            .any(|(b, t, n)| b == backend && t == tool && !n.is_empty())
    }
}

/// The decision part of the record (set by the policy check).
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Whether this request gets an audit record.
    pub active: bool,
    pub kind: &'static str,
    pub backend: String,
    /// The resource by its backend's own name or URI.
    pub resource: String,
    pub decision: &'static str,
    pub rule: String,
    /// The arguments, redacted, as JSON.
    pub arguments: Option<String>,
}

impl Audit {
    /// Record a decision. Calls, gets and reads are audited, and every denial.
    pub fn decided(&mut self, r: &Resource<'_>, method: &str, allowed: bool, rule: &str) {
        let audited_use = matches!(
            (r.kind, method),
            (Kind::Tool(_), "tools/call")
                | (Kind::Prompt(_), "prompts/get")
                | (Kind::Resource(_), "resources/read")
        );
        self.active = !allowed || audited_use || self.active;
        self.kind = r.kind_label();
        self.backend = r.backend.to_string();
        self.resource = r.label().to_string();
        self.decision = if allowed { "allow" } else { "deny" };
        self.rule = rule.to_string();
    }

    /// Record a tool call's arguments, keeping the values of `keep` only.
    pub fn arguments(
        &mut self,
        cfg: &AuditConfig,
        backend: &str,
        tool: &str,
        params: Option<&RawValue>,
    ) {
        let keep: &[String] = cfg
            .arguments
            .iter()
            .find(|(b, t, _)| b == backend && t == tool)
            .map(|(_, _, n)| n.as_slice())
            .unwrap_or(&[]);
        // Borrowed parsing: only kept values are decoded. Members are written
        // sorted by name, compact, the last of a repeated name winning (as a
        // JSON object read into a map and written back).
        let Some(args) = params.and_then(|p| RawObject::parse(p).ok()).and_then(|p| {
            p.members
                .iter()
                .rev()
                .find(|(k, _)| k == "arguments")
                .map(|(_, v)| *v)
        }) else {
            return;
        };
        let Ok(args) = serde_json::from_str::<BTreeMap<Cow<'_, str>, &RawValue>>(args.get()) else {
            return;
        };
        let mut out = String::with_capacity(2 + args.len() * 24);
        out.push('{');
        for (i, (k, v)) in args.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k.as_ref()).unwrap_or_default());
            out.push(':');
            if keep.iter().any(|n| n == k.as_ref()) {
                let compact = serde_json::from_str::<Value>(v.get())
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| "null".into());
                out.push_str(&compact);
            } else {
                out.push_str("\"[redacted]\"");
            }
        }
        out.push('}');
        self.arguments = Some(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn arguments_are_redacted_unless_listed() {
        let cfg = compile(
            &RawAudit {
                arguments: vec![RawArguments {
                    backend: "gh".into(),
                    tool: "create_issue".into(),
                    names: vec!["repo".into()],
                }],
            },
            &["gh"],
        )
        .unwrap();
        let params = RawValue::from_string(
            r#"{"name":"gh__create_issue","arguments":{"repo":"acme/x","body":"secret"}}"#.into(),
        )
        .unwrap();
        let mut a = Audit::default();
        a.arguments(&cfg, "gh", "create_issue", Some(&params));
        let v: Value = serde_json::from_str(a.arguments.as_deref().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"repo": "acme/x", "body": "[redacted]"})
        );
        // The exact record: sorted names, compact kept values, as a JSON
        // object read into a map and written back.
        let spaced = RawValue::from_string(
            r#"{"arguments":{"zeta":1,"repo":{ "a" : [1, 2] },"b\u0061d":"x","repo2":true,"body":"s"},"name":"gh__create_issue"}"#.into(),
        )
        .unwrap();
        let mut c = Audit::default();
        c.arguments(&cfg, "gh", "create_issue", Some(&spaced));
        let mut want: serde_json::Map<String, Value> = serde_json::from_str::<Value>(spaced.get())
            .unwrap()["arguments"]
            .as_object()
            .unwrap()
            .clone();
        for (k, v) in want.iter_mut() {
            if k != "repo" {
                *v = Value::String("[redacted]".into());
            }
        }
        assert_eq!(
            c.arguments.as_deref().unwrap(),
            Value::Object(want).to_string()
        );
        let mut b = Audit::default();
        b.arguments(&cfg, "gh", "delete_repo", Some(&params));
        let v: Value = serde_json::from_str(b.arguments.as_deref().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"repo": "[redacted]", "body": "[redacted]"})
        );
        assert!(compile(
            &RawAudit {
                arguments: vec![RawArguments {
                    backend: "nope".into(),
                    tool: "x".into(),
                    names: vec![]
                }]
            },
            &["gh"]
        )
        .is_err());
    }
}
