//! The gateway's own refusals and failures, typed: each carries the HTTP
//! status, the JSON-RPC error code, the message the client reads and the
//! `kind` label of `mcpgw.errors_total`, so every site names a situation
//! instead of spelling out status and code. The answers are the JSON-RPC
//! error shapes MCP clients expect (a 4xx for what the HTTP layer refuses, a
//! 200 with an error for what the JSON-RPC layer refuses).

use super::host::LocalResponse;
use super::stats::ErrorKind;
use crate::protocol::jsonrpc::{
    error_json, ParseError, BACKEND_ERROR, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST,
    METHOD_NOT_FOUND, PARSE_ERROR, RESOURCE_NOT_FOUND,
};
use crate::protocol::sse;
use serde_json::value::RawValue;
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: u16,
    pub code: i64,
    pub message: Cow<'static, str>,
    /// What `mcpgw.errors_total` counts it as; `None`: not counted.
    pub kind: Option<ErrorKind>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl GatewayError {
    fn new(
        status: u16,
        code: i64,
        message: impl Into<Cow<'static, str>>,
        kind: Option<ErrorKind>,
    ) -> GatewayError {
        GatewayError {
            status,
            code,
            message: message.into(),
            kind,
            allow: None,
        }
    }

    fn allowing(mut self, methods: &'static str) -> GatewayError {
        self.allow = Some(methods);
        self
    }

    // ----- the HTTP request -------------------------------------------------------

    pub fn origin_refused() -> GatewayError {
        Self::new(
            403,
            INVALID_REQUEST,
            "Forbidden: Origin not allowed",
            Some(ErrorKind::Origin),
        )
    }

    /// `MCP-Protocol-Version` names a revision the gateway does not speak.
    pub fn unsupported_version(sent: &str, supported: &str) -> GatewayError {
        let m = format!(
            "Bad Request: unsupported MCP-Protocol-Version \"{}\"; supported: {supported}",
            sent.chars().take(40).collect::<String>(),
        );
        Self::new(400, INVALID_REQUEST, m, Some(ErrorKind::InvalidJsonRpc))
    }

    pub fn not_acceptable_post() -> GatewayError {
        Self::new(
            406,
            INVALID_REQUEST,
            "Not Acceptable: Accept must include application/json and text/event-stream",
            Some(ErrorKind::BadRequest),
        )
    }

    pub fn not_acceptable_get() -> GatewayError {
        Self::new(
            406,
            INVALID_REQUEST,
            "Not Acceptable: Accept must include text/event-stream",
            Some(ErrorKind::BadRequest),
        )
    }

    pub fn unsupported_media_type() -> GatewayError {
        Self::new(
            415,
            INVALID_REQUEST,
            "Unsupported Media Type: POST a JSON-RPC message as application/json",
            Some(ErrorKind::BadRequest),
        )
    }

    pub fn empty_body() -> GatewayError {
        Self::new(
            400,
            PARSE_ERROR,
            "Parse error: empty body; POST one JSON-RPC message",
            Some(ErrorKind::InvalidJsonRpc),
        )
    }

    pub fn too_large(limit: usize) -> GatewayError {
        let m = format!("Payload Too Large: the limit is {limit} bytes (max_request_bytes)");
        Self::new(413, INVALID_REQUEST, m, Some(ErrorKind::TooLarge))
    }

    pub fn method_not_allowed() -> GatewayError {
        Self::new(
            405,
            INVALID_REQUEST,
            "Method Not Allowed: use POST, GET or DELETE",
            Some(ErrorKind::BadRequest),
        )
        .allowing("GET, POST, DELETE, OPTIONS")
    }

    /// A GET when several backends of the session could push messages.
    pub fn streams_not_mergeable() -> GatewayError {
        Self::new(
            405,
            INVALID_REQUEST,
            "Method Not Allowed: several servers of this session could push messages and their streams cannot be merged; server messages arrive on POST response streams",
            Some(ErrorKind::BadRequest),
        )
        .allowing("POST, DELETE")
    }

    /// The OAuth metadata documents are read with GET.
    pub fn metadata_method_not_allowed() -> GatewayError {
        Self::new(405, INVALID_REQUEST, "Method Not Allowed: use GET", None)
            .allowing("GET, OPTIONS")
    }

    /// The host could not set the gateway up (its config was refused).
    pub fn not_configured() -> GatewayError {
        Self::new(500, INTERNAL_ERROR, "mcpgw is not configured", None)
    }

    // ----- sessions ---------------------------------------------------------------

    pub fn unknown_session() -> GatewayError {
        Self::new(
            404,
            INVALID_REQUEST,
            "Not Found: unknown session; initialize a new one",
            Some(ErrorKind::UnknownSession),
        )
    }

    pub fn expired_session() -> GatewayError {
        Self::new(
            404,
            INVALID_REQUEST,
            "Not Found: session expired; initialize a new one",
            Some(ErrorKind::ExpiredSession),
        )
    }

    pub fn deleted_session() -> GatewayError {
        Self::new(
            404,
            INVALID_REQUEST,
            "Not Found: session was deleted; initialize a new one",
            Some(ErrorKind::DeletedSession),
        )
    }

    pub fn missing_session() -> GatewayError {
        Self::new(
            400,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
            Some(ErrorKind::MissingSession),
        )
    }

    /// A request other than `initialize` without a session.
    pub fn missing_session_initialize_first() -> GatewayError {
        Self::new(
            400,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required; send initialize first",
            Some(ErrorKind::MissingSession),
        )
    }

    /// A backend answered 404: it ended its own session.
    pub fn backend_session_ended(backend: &str) -> GatewayError {
        let m = format!("Not Found: backend {backend} ended its session; initialize a new one");
        Self::new(404, INVALID_REQUEST, m, Some(ErrorKind::UnknownSession))
    }

    // ----- JSON-RPC ---------------------------------------------------------------

    pub fn parse(e: &ParseError) -> GatewayError {
        Self::new(400, e.code(), e.message(), Some(ErrorKind::InvalidJsonRpc))
    }

    /// A message the gateway cannot rewrite for its backend.
    pub fn invalid_request() -> GatewayError {
        Self::new(
            400,
            INVALID_REQUEST,
            "Invalid Request",
            Some(ErrorKind::InvalidJsonRpc),
        )
    }

    pub fn method_not_found(method: &str) -> GatewayError {
        let m = format!("Method not found: {method}");
        Self::new(200, METHOD_NOT_FOUND, m, Some(ErrorKind::UnknownMethod))
    }

    /// What 2026-07-28 clients probe for: HTTP 400 with a JSON-RPC error that
    /// is not a modern-era error, so they fall back to `initialize`.
    pub fn legacy_only(supported: &str) -> GatewayError {
        let m = format!(
            "Method not found: this MCP endpoint does not support protocol 2026-07-28 or server/discover; it speaks {supported} and starts sessions with initialize"
        );
        Self::new(400, METHOD_NOT_FOUND, m, Some(ErrorKind::BadRequest))
    }

    pub fn invalid_params(message: impl Into<Cow<'static, str>>) -> GatewayError {
        Self::new(200, INVALID_PARAMS, message, Some(ErrorKind::InvalidParams))
    }

    /// A tool or prompt name the caller cannot see (as a server says it).
    pub fn unknown_name(message: impl Into<Cow<'static, str>>) -> GatewayError {
        Self::new(200, INVALID_PARAMS, message, Some(ErrorKind::UnknownTool))
    }

    pub fn resource_not_found(uri: &str) -> GatewayError {
        let m = format!("Resource not found: {uri}");
        Self::new(200, RESOURCE_NOT_FOUND, m, None)
    }

    /// A client's response to a request id this session did not issue.
    pub fn unknown_reply_id() -> GatewayError {
        Self::new(
            400,
            INVALID_REQUEST,
            "Bad Request: response to an unknown request id",
            None,
        )
    }

    // ----- backends and the gateway itself ------------------------------------------

    /// Backends failed the request (`message` names them and how).
    pub fn backend(message: impl Into<Cow<'static, str>>) -> GatewayError {
        Self::new(200, BACKEND_ERROR, message, Some(ErrorKind::BackendFailure))
    }

    /// A routed backend failed at the HTTP level: a JSON-RPC error when the
    /// client waits for an answer, a 502 otherwise.
    pub fn backend_failed(message: String, expects_answer: bool) -> GatewayError {
        let status = if expects_answer { 200 } else { 502 };
        Self::new(
            status,
            BACKEND_ERROR,
            message,
            Some(ErrorKind::BackendFailure),
        )
    }

    /// A GET stream the backend does not offer.
    pub fn no_get_stream(backend: &str) -> GatewayError {
        let m = format!("Method Not Allowed: backend {backend} offers no GET stream");
        Self::new(405, INVALID_REQUEST, m, None).allowing("POST, DELETE")
    }

    /// The issuer's metadata could not be fetched.
    pub fn as_metadata_unavailable() -> GatewayError {
        Self::new(
            502,
            BACKEND_ERROR,
            "authorization server metadata unavailable",
            None,
        )
    }

    /// Two backends offer one name (a configuration problem).
    pub fn collision(message: String) -> GatewayError {
        Self::new(200, INTERNAL_ERROR, message, Some(ErrorKind::Collision))
    }

    pub fn internal(message: impl Into<Cow<'static, str>>) -> GatewayError {
        Self::new(200, INTERNAL_ERROR, message, None)
    }

    // ----- as the client sees it --------------------------------------------------

    /// The answer, for the request with raw JSON id `id`.
    pub fn response(&self, id: Option<&str>) -> LocalResponse {
        let r = LocalResponse::json(self.status, self.body(id));
        match self.allow {
            Some(methods) => r.with_header("allow", methods),
            None => r,
        }
    }

    /// The JSON-RPC error message alone.
    pub fn body(&self, id: Option<&str>) -> String {
        let raw = id.and_then(|i| RawValue::from_string(i.to_string()).ok());
        error_json(raw.as_deref(), self.code, &self.message, None)
    }

    /// The error as an SSE `message` event, ending a stream that answers `id`.
    pub fn write_event(&self, out: &mut Vec<u8>, id: Option<&str>) {
        let raw = id.and_then(|i| RawValue::from_string(i.to_string()).ok());
        let e = sse::Event::data(error_json(raw.as_deref(), self.code, &self.message, None));
        e.write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::host::header;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn answers_carry_status_code_id_and_allow() {
        let r = GatewayError::method_not_found("x/y").response(Some("7"));
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(v["error"]["message"], "Method not found: x/y");
        let r = GatewayError::streams_not_mergeable().response(None);
        assert_eq!(
            (r.status, header(&r.headers, "allow")),
            (405, Some("POST, DELETE"))
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        let mut out = Vec::new();
        GatewayError::backend("backend b failed").write_event(&mut out, Some("\"a\""));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("data: {") && text.ends_with("\n\n"),
            "{text}"
        );
        assert!(
            text.contains("\"id\":\"a\"") && text.contains("-32010"),
            "{text}"
        );
    }
}
