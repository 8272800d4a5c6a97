//! The wire rules of the stateless revision 2026-07-28 ("modern" era): the
//! request metadata headers and their `=?base64?...?=` encoding, the `_meta`
//! keys every request carries, the methods that exist in it, its error codes
//! and the HTTP status each error takes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// `Mcp-Method`: mirrors the body's `method` on every POST.
pub const METHOD_HEADER: &str = "mcp-method";
/// `Mcp-Name`: mirrors `params.name`, `params.uri` or `params.taskId`.
pub const NAME_HEADER: &str = "mcp-name";
/// `Mcp-Param-{Name}`: tool arguments a tool's schema mirrors (`x-mcp-header`).
pub const PARAM_HEADER_PREFIX: &str = "mcp-param-";

/// Reserved `_meta` keys.
pub mod meta {
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
}

/// The headers do not match the body, or a required one is missing or malformed.
pub const HEADER_MISMATCH: i64 = -32020;
/// The request needs a client capability it did not declare.
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// The requested protocol version is not served (`data: {supported, requested}`).
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// The tasks extension's identifier (capabilities `extensions` member).
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// MCP Apps: tool UIs as `ui://` resources, read through the gateway.
pub const UI_EXTENSION: &str = "io.modelcontextprotocol/ui";

/// Client requests that exist in 2026-07-28. `ping`, `initialize`,
/// `logging/setLevel`, `resources/subscribe`, `resources/unsubscribe`,
/// `tasks/list` and `tasks/result` do not.
pub fn is_method(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "tools/call"
            | "prompts/list"
            | "prompts/get"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "completion/complete"
            | "subscriptions/listen"
            | "tasks/get"
            | "tasks/update"
            | "tasks/cancel"
    )
}

/// The `params` member `Mcp-Name` mirrors for `method`; `required` when the
/// core specification requires the header (the tasks extension routes by it
/// but a client may leave it out).
pub fn name_param(method: &str) -> Option<(&'static str, bool)> {
    match method {
        "tools/call" | "prompts/get" => Some(("name", true)),
        "resources/read" => Some(("uri", true)),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some(("taskId", false)),
        _ => None,
    }
}

/// The requests that may answer `resultType: "input_required"` (MRTR).
pub fn allows_input_required(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// Results that carry `ttlMs` and `cacheScope`.
pub fn is_cacheable(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// Codes JSON-RPC leaves to implementations and MCP partitions (legacy
/// -32000..-32019, specification -32020..-32099): the gateway never emits
/// one to a 2026-07-28 client except those the specification defines.
pub fn is_reserved_code(code: i64) -> bool {
    (-32099..=-32000).contains(&code)
}

/// The HTTP status of an error the server produces itself, by code.
pub fn error_status(code: i64) -> u16 {
    match code {
        -32700
        | -32600
        | -32602
        | HEADER_MISMATCH
        | MISSING_CLIENT_CAPABILITY
        | UNSUPPORTED_VERSION => 400,
        -32601 => 404,
        _ => 200,
    }
}

/// Whether a header value is plain visible ASCII, space or tab (RFC 9110).
pub fn is_plain_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Decode `Mcp-Name` / `Mcp-Param-*`: the value itself, or the UTF-8 text of
/// a `=?base64?...?=` value. `None` for a malformed encoding (never equal
/// to a body value by accident) or characters a header may not carry.
pub fn decode_header_value(v: &str) -> Option<String> {
    if !is_plain_header_value(v) {
        return None;
    }
    let Some(payload) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Some(v.to_string());
    };
    let bytes = STANDARD.decode(payload).ok()?;
    // Only the canonical encoding (the one a client writes) decodes.
    if STANDARD.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Encode a value for `Mcp-Name` / `Mcp-Param-*`: as is when it is plain
/// ASCII without edge whitespace and does not look encoded, else base64.
pub fn encode_header_value(v: &str) -> String {
    let plain = v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !(v.starts_with("=?base64?") && v.ends_with("?="));
    if plain {
        v.to_string()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(v.as_bytes()))
    }
}

/// Log levels (RFC 5424 severities), least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "notice" => LogLevel::Notice,
            "warning" => LogLevel::Warning,
            "error" => LogLevel::Error,
            "critical" => LogLevel::Critical,
            "alert" => LogLevel::Alert,
            "emergency" => LogLevel::Emergency,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn header_values_round_trip_like_the_spec_examples() {
        for (plain, encoded) in [
            ("us-west1", "us-west1"),
            ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),
            (" padded ", "=?base64?IHBhZGRlZCA=?="),
            ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
            ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
        ] {
            assert_eq!(encode_header_value(plain), encoded);
            assert_eq!(decode_header_value(encoded).as_deref(), Some(plain));
        }
        // Malformed or non-canonical base64, non-UTF-8 payloads, raw control
        // characters: never a value.
        for bad in [
            "=?base64?!!!?=",
            "=?base64?SGVsbG9=?=",
            "=?base64?/w==?=",
            "a\u{1}b",
            "caf\u{e9}",
        ] {
            assert_eq!(decode_header_value(bad), None, "{bad:?}");
        }
        // Lower-case markers only.
        assert_eq!(
            decode_header_value("=?BASE64?YQ==?=").as_deref(),
            Some("=?BASE64?YQ==?=")
        );
    }

    #[test]
    fn method_table_and_statuses() {
        assert!(is_method("subscriptions/listen") && is_method("tasks/update"));
        for removed in [
            "ping",
            "initialize",
            "logging/setLevel",
            "resources/subscribe",
            "resources/unsubscribe",
            "tasks/list",
            "tasks/result",
        ] {
            assert!(!is_method(removed), "{removed}");
        }
        assert_eq!(name_param("resources/read"), Some(("uri", true)));
        assert_eq!(name_param("tasks/get"), Some(("taskId", false)));
        assert_eq!(name_param("tools/list"), None);
        assert_eq!(error_status(-32601), 404);
        assert_eq!(error_status(UNSUPPORTED_VERSION), 400);
        assert_eq!(error_status(-32603), 200);
        assert!(is_reserved_code(-32010) && is_reserved_code(-32002));
        assert!(!is_reserved_code(-32603) && !is_reserved_code(-32100));
        assert!(LogLevel::parse("warning") > LogLevel::parse("info"));
        assert_eq!(LogLevel::parse("verbose"), None);
    }
}
