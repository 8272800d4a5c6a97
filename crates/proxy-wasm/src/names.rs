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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_its_format_under_its_own_name() {
        for (field, (_, format)) in LogField::ALL.iter().zip(ACCESS_LOG_FIELDS) {
            assert_eq!(property(*field), format!("mcpgw.{}", field.name()));
            assert_eq!(
                format,
                format!("%FILTER_STATE(wasm.{}:PLAIN)%", property(*field))
            );
        }
    }
}
