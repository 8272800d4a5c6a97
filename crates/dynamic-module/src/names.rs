//! What the dynamic-module build calls things in Envoy: the filter-state keys
//! of the access-log fields and the module's name. `mcpgw render` writes
//! access-log formats from this table, and the filter publishes under the
//! same keys.

use mcpgw_core::gateway::host::LogField;

/// The module name in Envoy's `dynamic_module_config` (Envoy loads
/// `lib<name>.so`).
pub const MODULE_NAME: &str = "mcpgw";

/// The file Envoy loads.
pub const LIBRARY_FILE: &str = "libmcpgw.so";

/// The `filter_name` the module answers to.
pub const FILTER_NAME: &str = "mcpgw";

/// Envoy's default `metrics_namespace` of dynamic modules, left as it is (so
/// every deployment names the metrics alike, Envoy Gateway's included): the
/// module's metrics are `dynamicmodulescustom.mcpgw.<name>` in Envoy's stats
/// and `envoy_dynamicmodulescustom_mcpgw_<name>` in its Prometheus output
/// (proxy-wasm's custom namespace is stripped there: `mcpgw_<name>`).
pub const METRICS_NAMESPACE: &str = "dynamicmodulescustom";

/// The Prometheus prefix of the module's metrics (before `mcpgw_`).
pub const PROMETHEUS_PREFIX: &str = "envoy_dynamicmodulescustom_";

/// The filter-state key a field is published under (a plain string object,
/// readable as `%FILTER_STATE(<key>:PLAIN)%`).
pub fn filter_state_key(field: LogField) -> &'static str {
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
    ("mcp_method", "%FILTER_STATE(mcpgw.method:PLAIN)%"),
    ("mcp_tool", "%FILTER_STATE(mcpgw.tool:PLAIN)%"),
    ("mcp_backend", "%FILTER_STATE(mcpgw.backend:PLAIN)%"),
    ("jsonrpc_id", "%FILTER_STATE(mcpgw.jsonrpc_id:PLAIN)%"),
    ("mcp_session", "%FILTER_STATE(mcpgw.session:PLAIN)%"),
    ("mcp_error", "%FILTER_STATE(mcpgw.error:PLAIN)%"),
];

/// The audit record (the core's `audit::RECORD`), as (JSON key, Envoy format).
pub fn audit_log_fields() -> Vec<(&'static str, String)> {
    mcpgw_core::gateway::audit::record_formats(|f| filter_state_key(f).to_string())
}

/// Envoy's CEL access-log filter that keeps only requests with an audit record.
pub fn audit_log_filter() -> String {
    mcpgw_core::gateway::audit::record_filter(filter_state_key(LogField::Audit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_its_format_under_its_own_name() {
        for field in LogField::ALL {
            assert_eq!(filter_state_key(field), format!("mcpgw.{}", field.name()));
        }
        assert!(audit_log_filter().contains("'mcpgw.audit'"));
        for (field, (_, format)) in LogField::ALL.iter().zip(ACCESS_LOG_FIELDS) {
            assert_eq!(filter_state_key(*field), format!("mcpgw.{}", field.name()));
            assert_eq!(
                format,
                format!("%FILTER_STATE({}:PLAIN)%", filter_state_key(*field))
            );
        }
    }
}
