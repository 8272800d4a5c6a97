//! What the proxy-wasm build calls things in Envoy: the filter-state keys of
//! the access-log fields. `mcpgw render` writes access-log formats from this
//! table, and the filter publishes under the same keys.

use mcpgw_core::gateway::host::LogField;

/// The property a field is published as; Envoy keeps it as filter state
/// `wasm.<property>`.
pub fn property(field: LogField) -> &'static str {
    match field {
        LogField::Method => "mcpgw.method",
        LogField::Tool => "mcpgw.tool",
        LogField::Backend => "mcpgw.backend",
        LogField::JsonRpcId => "mcpgw.jsonrpc_id",
        LogField::Session => "mcpgw.session",
        LogField::Error => "mcpgw.error",
        LogField::Audit => "mcpgw.audit",
        LogField::AuditKind => "mcpgw.audit_kind",
        LogField::AuditBackend => "mcpgw.audit_backend",
        LogField::AuditResource => "mcpgw.audit_resource",
        LogField::AuditDecision => "mcpgw.audit_decision",
        LogField::AuditRule => "mcpgw.audit_rule",
        LogField::AuditOutcome => "mcpgw.audit_outcome",
        LogField::AuditArguments => "mcpgw.audit_arguments",
        LogField::CallerIssuer => "mcpgw.caller_issuer",
        LogField::CallerSubject => "mcpgw.caller_subject",
        LogField::CallerClientId => "mcpgw.caller_client_id",
    }
}

/// The access-log fields, as (JSON key, Envoy format string).
pub const ACCESS_LOG_FIELDS: [(&str, &str); 6] = [
    ("mcp_method", "%FILTER_STATE(wasm.mcpgw.method:PLAIN)%"),
    ("mcp_tool", "%FILTER_STATE(wasm.mcpgw.tool:PLAIN)%"),
    ("mcp_backend", "%FILTER_STATE(wasm.mcpgw.backend:PLAIN)%"),
    ("jsonrpc_id", "%FILTER_STATE(wasm.mcpgw.jsonrpc_id:PLAIN)%"),
    ("mcp_session", "%FILTER_STATE(wasm.mcpgw.session:PLAIN)%"),
    ("mcp_error", "%FILTER_STATE(wasm.mcpgw.error:PLAIN)%"),
];

/// The audit record (the core's `audit::RECORD`): one JSON line per
/// `tools/call`, `prompts/get`, `resources/read` and denial, as (JSON key,
/// Envoy format).
pub fn audit_log_fields() -> Vec<(&'static str, String)> {
    mcpgw_core::gateway::audit::record_formats(|f| format!("wasm.{}", property(f)))
}

/// Envoy's CEL access-log filter that keeps only requests with an audit record.
pub fn audit_log_filter() -> String {
    mcpgw_core::gateway::audit::record_filter(&format!("wasm.{}", property(LogField::Audit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_its_format_under_its_own_name() {
        for field in LogField::ALL {
            assert_eq!(property(field), format!("mcpgw.{}", field.name()));
        }
        // The audit record prints what the filter publishes.
        for (_, format) in audit_log_fields() {
            if let Some(key) = format
                .strip_prefix("%FILTER_STATE(wasm.")
                .and_then(|f| f.strip_suffix(":PLAIN)%"))
            {
                assert!(LogField::ALL.iter().any(|f| property(*f) == key), "{key}");
            }
        }
        assert!(audit_log_filter().contains(&format!("'wasm.{}'", property(LogField::Audit))));
        for (field, (_, format)) in LogField::ALL.iter().zip(ACCESS_LOG_FIELDS) {
            assert_eq!(property(*field), format!("mcpgw.{}", field.name()));
            assert_eq!(
                format,
                format!("%FILTER_STATE(wasm.{}:PLAIN)%", property(*field))
            );
        }
    }
}
