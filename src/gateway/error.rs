//! The gateway's own refusals and failures, typed: each carries the HTTP
//! status, the JSON-RPC error code, the message the client reads and the
//! `kind` label of `mcpgw.errors_total`, so every site names a situation
//! instead of spelling out status and code. The answers are the JSON-RPC
//! error shapes MCP clients expect (a 4xx for what the HTTP layer refuses, a
//! 200 with an error for what the JSON-RPC layer refuses).

use super::host::LocalResponse;
use super::stats::ErrorKind;
use crate::protocol::jsonrpc::json_string;
use crate::protocol::jsonrpc::{
    error_json, ParseError, BACKEND_ERROR, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST,
    METHOD_NOT_FOUND, PARSE_ERROR, RESOURCE_NOT_FOUND,
};
use crate::protocol::mcp::Version;
use crate::protocol::modern::{HEADER_MISMATCH, UNSUPPORTED_VERSION};
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
    /// `error.data`, raw JSON.
    pub data: Option<String>,
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
            data: None,
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

    /// The token service refused to exchange the caller's token for
    /// `backend`'s (OAuth `error`): a JSON-RPC error when the client waits for
    /// an answer, a 403 otherwise.
    pub fn credential_refused(backend: &str, error: &str, expects_answer: bool) -> GatewayError {
        let m = format!(
            "Forbidden: backend {backend} is not available to this user: the token service refused to exchange the token ({error})"
        );
        let status = if expects_answer { 200 } else { 403 };
        Self::new(status, INVALID_REQUEST, m, Some(ErrorKind::TokenExchange))
    }

    /// No credential for `backend` (the token service is down, slow, or
    /// misconfigured): a JSON-RPC error when the client waits for an answer,
    /// a 503 otherwise.
    pub fn credential_unavailable(backend: &str, why: &str, expects_answer: bool) -> GatewayError {
        let m = format!("backend {backend} is unavailable: {why}");
        let status = if expects_answer { 200 } else { 503 };
        Self::new(status, BACKEND_ERROR, m, Some(ErrorKind::TokenExchange))
    }

    /// Two backends offer one name (a configuration problem).
    pub fn collision(message: String) -> GatewayError {
        Self::new(200, INTERNAL_ERROR, message, Some(ErrorKind::Collision))
    }

    pub fn internal(message: impl Into<Cow<'static, str>>) -> GatewayError {
        Self::new(200, INTERNAL_ERROR, message, None)
    }

    // ----- 2026-07-28 (stateless) --------------------------------------------------

    /// A routing header missing, sent twice, malformed, or unlike the body.
    pub fn header_mismatch(message: impl Into<Cow<'static, str>>) -> GatewayError {
        Self::new(
            400,
            HEADER_MISMATCH,
            message,
            Some(ErrorKind::HeaderMismatch),
        )
    }

    /// A protocol version the gateway does not serve, naming those it does
    /// (both eras: a client that also speaks a handshake version falls back).
    pub fn unsupported_protocol_version(requested: &str) -> GatewayError {
        let supported: Vec<String> = Version::ALL_SERVED
            .iter()
            .map(|v| json_string(v.as_str()))
            .collect();
        let mut e = Self::new(
            400,
            UNSUPPORTED_VERSION,
            "Unsupported protocol version",
            Some(ErrorKind::UnsupportedVersion),
        );
        e.data = Some(format!(
            "{{\"supported\":[{}],\"requested\":{}}}",
            supported.join(","),
            json_string(requested)
        ));
        e
    }

    /// Malformed request metadata (`_meta`), answered 400.
    pub fn invalid_meta(message: impl Into<Cow<'static, str>>) -> GatewayError {
        Self::new(400, INVALID_PARAMS, message, Some(ErrorKind::InvalidParams))
    }

    /// A method the stateless revision does not have.
    pub fn not_a_modern_method(method: &str, version: &str) -> GatewayError {
        let m = format!(
            "Method not found: {} (not a method of protocol {version})",
            method.chars().take(64).collect::<String>()
        );
        Self::new(404, METHOD_NOT_FOUND, m, Some(ErrorKind::UnknownMethod))
    }

    /// A 2026-07-28 request (`server/discover`, `subscriptions/listen`)
    /// without the 2026-07-28 headers.
    pub fn modern_request_without_headers(method: &str) -> GatewayError {
        Self::header_mismatch(format!(
            "Header mismatch: {method} is a 2026-07-28 request; send it with MCP-Protocol-Version: 2026-07-28 and Mcp-Method"
        ))
    }

    /// GET and DELETE have no meaning in 2026-07-28.
    pub fn modern_method_not_allowed() -> GatewayError {
        Self::new(
            405,
            INVALID_REQUEST,
            "Method Not Allowed: protocol 2026-07-28 has no GET stream and no sessions; POST each request (subscriptions/listen for notifications)",
            Some(ErrorKind::BadRequest),
        )
        .allowing("POST")
    }

    /// A 2026-07-28 client posted a JSON-RPC response.
    pub fn modern_response_refused() -> GatewayError {
        Self::new(
            400,
            INVALID_REQUEST,
            "Invalid Request: a 2026-07-28 client sends requests and notifications only; servers ask for input with input_required results",
            Some(ErrorKind::InvalidJsonRpc),
        )
    }

    /// An MRTR `requestState` the gateway did not seal for this retry.
    pub fn invalid_request_state() -> GatewayError {
        Self::invalid_meta("Invalid params: invalid or expired requestState")
    }

    /// A handshake-era backend ended the session a worker held for
    /// 2026-07-28 clients (a new one is opened on the next request).
    pub fn held_session_ended(backend: &str) -> GatewayError {
        let m = format!(
            "backend {backend} ended the session mcpgw held with it; retry the request (a new session is opened)"
        );
        Self::new(200, INTERNAL_ERROR, m, Some(ErrorKind::BackendFailure))
    }

    /// This error as a 2026-07-28 client gets it: no code of the reserved
    /// -32000..-32099 range but the specification's own (a backend failure
    /// is -32603, "resource not found" -32602), and an error of the JSON-RPC
    /// layer takes its code's status (-32602 is 400, -32601 404).
    pub fn for_modern_client(mut self) -> GatewayError {
        self.code = match self.code {
            RESOURCE_NOT_FOUND => INVALID_PARAMS,
            c if crate::protocol::modern::is_reserved_code(c)
                && !(UNSUPPORTED_VERSION..=HEADER_MISMATCH).contains(&c) =>
            {
                INTERNAL_ERROR
            }
            c => c,
        };
        if self.status == 200 {
            self.status = crate::protocol::modern::error_status(self.code);
        }
        self
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
        error_json(
            raw.as_deref(),
            self.code,
            &self.message,
            self.data.as_deref(),
        )
    }

    /// The error as an SSE `message` event, ending a stream that answers `id`.
    pub fn write_event(&self, out: &mut Vec<u8>, id: Option<&str>) {
        sse::Event::data(self.body(id)).write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::host::header;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn modern_clients_get_no_reserved_code_and_the_codes_status() {
        let e = GatewayError::backend("backend b failed").for_modern_client();
        assert_eq!((e.status, e.code), (200, INTERNAL_ERROR));
        let e = GatewayError::resource_not_found("x://1").for_modern_client();
        assert_eq!((e.status, e.code), (400, INVALID_PARAMS));
        let e = GatewayError::method_not_found("x/y").for_modern_client();
        assert_eq!((e.status, e.code), (404, METHOD_NOT_FOUND));
        let e = GatewayError::unsupported_protocol_version("1999").for_modern_client();
        assert_eq!((e.status, e.code), (400, UNSUPPORTED_VERSION));
        let v: serde_json::Value = serde_json::from_str(&e.body(Some("1"))).unwrap();
        assert_eq!(v["error"]["data"]["requested"], "1999");
        assert_eq!(v["error"]["data"]["supported"][0], "2026-07-28");
        let e = GatewayError::too_large(10).for_modern_client();
        assert_eq!(
            (e.status, e.code),
            (413, INVALID_REQUEST),
            "HTTP-layer statuses stay"
        );
    }

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
