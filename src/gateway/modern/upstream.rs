//! A request on its way to a backend, adapted to the backend's era: a
//! 2026-07-28 backend needs the request metadata in `_meta` and the
//! `Mcp-Method` / `Mcp-Name` headers on every POST, whoever the client is.
//!
//! A 2025-era client's request gets `_meta` with the protocol version and
//! empty client capabilities: such a client cannot answer MRTR input
//! requests through the gateway, and a backend must not ask for what the
//! client did not declare. A 2026-07-28 client's request to a 2025-era
//! backend loses that envelope (`io.modelcontextprotocol/*` in `_meta`): a
//! handshake-era session refuses requests that carry it (the Python SDK does).

use super::super::exchange::Exchange;
use super::super::host::HeaderOp;
use super::super::session::{BackendSession, Session};
use crate::protocol::http;
use crate::protocol::jsonrpc::{self, RawObject};
use crate::protocol::mcp::MODERN_VERSIONS;
use crate::protocol::modern::{self, encode_header_value, meta};

/// `body` with the 2026-07-28 request metadata added where missing; `None`
/// when it is not one JSON-RPC message (it then goes as it is).
pub fn with_request_meta(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let msg = RawObject::parse_str(text.trim_start_matches('\u{feff}').trim()).ok()?;
    let params = match msg.get("params") {
        Some(p) => RawObject::parse(p).ok()?,
        None => RawObject::default(),
    };
    let meta_obj = match params.get("_meta") {
        Some(m) => RawObject::parse(m).ok()?,
        None => RawObject::default(),
    };
    let version = jsonrpc::json_string(MODERN_VERSIONS[0]);
    let mut add: Vec<(&str, &str)> = vec![(meta::PROTOCOL_VERSION, &version)];
    if meta_obj.get(meta::CLIENT_CAPABILITIES).is_none() {
        add.push((meta::CLIENT_CAPABILITIES, "{}"));
    }
    let new_meta = meta_obj.write_with(&add);
    let new_params = params.write_with(&[("_meta", &new_meta)]);
    Some(msg.write_with(&[("params", &new_params)]).into_bytes())
}

/// The request metadata keys of the 2026-07-28 envelope.
const ENVELOPE: [&str; 4] = [
    meta::PROTOCOL_VERSION,
    meta::CLIENT_CAPABILITIES,
    meta::CLIENT_INFO,
    meta::LOG_LEVEL,
];

/// `body` without the 2026-07-28 envelope in `_meta` (other `_meta` keys,
/// such as `progressToken` and trace context, stay); `None` when it has none.
pub fn without_request_meta(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let msg = RawObject::parse_str(text.trim_start_matches('\u{feff}').trim()).ok()?;
    let params = RawObject::parse(msg.get("params")?).ok()?;
    let meta_obj = RawObject::parse(params.get("_meta")?).ok()?;
    if !ENVELOPE.iter().any(|k| meta_obj.get(k).is_some()) {
        return None;
    }
    let new_params = if meta_obj
        .members
        .iter()
        .all(|(k, _)| ENVELOPE.contains(&k.as_ref()))
    {
        params.write_without(&["_meta"], &[])
    } else {
        params.write_with(&[("_meta", &meta_obj.write_without(&ENVELOPE, &[]))])
    };
    Some(msg.write_with(&[("params", &new_params)]).into_bytes())
}

/// A 2026-07-28 client's message for a session the gateway holds with a
/// 2025-era backend: without the 2026-07-28 envelope and, for a request,
/// with `id` (raw JSON) in place of the client's. Stateless clients share the
/// held session, and their ids would collide in it (the backend pairs each
/// answer and each stream with a request id). `None`: unchanged.
pub fn for_held_session(body: &[u8], id: Option<&str>) -> Option<Vec<u8>> {
    let stripped = without_request_meta(body);
    let Some(id) = id else {
        return stripped;
    };
    let base = stripped.as_deref().unwrap_or(body);
    let renumbered = std::str::from_utf8(base)
        .ok()
        .and_then(|t| RawObject::parse_str(t.trim_start_matches('\u{feff}').trim()).ok())
        .filter(|m| m.get("method").is_some() && m.get("id").is_some())
        .map(|m| m.write_with(&[("id", id)]).into_bytes());
    renumbered.or(stripped)
}

/// `Mcp-Method` and, for the methods that have one, `Mcp-Name`, from a body.
pub fn routing_headers(body: &[u8]) -> Vec<(String, String)> {
    let Ok(msg) = jsonrpc::parse(body) else {
        return Vec::new();
    };
    let Some(method) = msg.method.as_deref() else {
        return Vec::new();
    };
    let mut out = vec![(modern::METHOD_HEADER.to_string(), method.to_string())];
    if let Some((member, _)) = modern::name_param(method) {
        let name = msg
            .params
            .and_then(|p| RawObject::parse(p).ok())
            .and_then(|p| p.get_str(member).map(|n| n.into_owned()));
        if let Some(n) = name {
            out.push((modern::NAME_HEADER.to_string(), encode_header_value(&n)));
        }
    }
    out
}

/// A side call's body and extra headers for backend session entry `bs`.
pub fn for_call(
    client_modern: bool,
    bs: Option<&BackendSession>,
    body: Vec<u8>,
    held_id: Option<&str>,
) -> (Vec<u8>, Vec<(String, String)>) {
    match bs {
        Some(bs) if bs.version.is_modern() && !body.is_empty() => {
            let body = if client_modern {
                body
            } else {
                with_request_meta(&body).unwrap_or(body)
            };
            let headers = routing_headers(&body);
            (body, headers)
        }
        Some(_) if client_modern => (for_held_session(&body, held_id).unwrap_or(body), Vec::new()),
        _ => (body, Vec::new()),
    }
}

impl Exchange {
    pub(in crate::gateway) fn client_is_modern(&self) -> bool {
        self.req.modern.is_some()
    }

    /// The routed request's body and header changes for backend `i`'s era
    /// (beyond the session headers `upstream_headers` sets). `body` is the
    /// rewritten body, if any; `None` forwards the client's.
    pub(in crate::gateway) fn era_forward(
        &mut self,
        session: &Session,
        i: usize,
        body: Option<Vec<u8>>,
    ) -> (Option<Vec<u8>>, Vec<HeaderOp>) {
        let backend_modern = self
            .session_backend(session, i)
            .is_some_and(|bs| bs.version.is_modern());
        let mut ops = Vec::new();
        if self.client_is_modern() {
            if self.req.present.contains(&http::LAST_EVENT_ID) {
                ops.push(HeaderOp::Remove(http::LAST_EVENT_ID.into()));
            }
            // A rewritten name or task id: the header says what the body says.
            if let (true, Some(b)) = (backend_modern, body.as_deref()) {
                ops.extend(
                    routing_headers(b)
                        .into_iter()
                        .filter(|(k, _)| k == modern::NAME_HEADER)
                        .map(|(k, v)| HeaderOp::Set(k, v)),
                );
            }
            if !backend_modern {
                // A handshake-era session refuses the 2026-07-28 envelope;
                // the session is shared, so the request gets an id of its own.
                let id = self.gw.next_held_id();
                let original = body.as_deref().or(self.req.body.as_deref());
                if let Some(held) = original.and_then(|b| for_held_session(b, Some(&id))) {
                    if let Some(m) = self.req.modern.as_deref_mut() {
                        m.held_id = Some(id);
                    }
                    return (Some(held), ops);
                }
            }
            return (body, ops);
        }
        if !backend_modern {
            return (body, ops);
        }
        let original = body.as_deref().or(self.req.body.as_deref());
        let Some(adapted) = original.and_then(with_request_meta) else {
            return (body, ops);
        };
        ops.extend(
            routing_headers(&adapted)
                .into_iter()
                .map(|(k, v)| HeaderOp::Set(k, v)),
        );
        (Some(adapted), ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::mcp::Version;
    use serde_json::{json, Value};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn legacy_requests_get_the_request_metadata() {
        let b = with_request_meta(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","arguments":{"a":1},"_meta":{"progressToken":7}}}"#).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["params"]["_meta"]["progressToken"], 7, "kept");
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
            json!({})
        );
        assert_eq!(v["params"]["arguments"]["a"], 1);
        let b = with_request_meta(br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
        assert!(with_request_meta(b"[1]").is_none());
    }

    #[test]
    fn handshake_era_backends_get_no_envelope() {
        let b = without_request_meta(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/logLevel":"info"}}}"#).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["params"]["_meta"], json!({"progressToken": 7}));
        assert_eq!(v["params"]["name"], "x");
        let b = without_request_meta(br#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["params"], json!({}));
        assert!(without_request_meta(br#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"progressToken":1}}}"#).is_none());
        let legacy_bs = BackendSession {
            name: "o".into(),
            version: Version::V2025_06_18,
            session_id: None,
            caps: 0,
        };
        let (b, h) = for_call(true, Some(&legacy_bs), br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.to_vec(), Some("\"mcpgw-held-4\""));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["params"], json!({}));
        assert_eq!(v["id"], "mcpgw-held-4", "the held session's own id");
        assert!(h.is_empty());
        // Only requests are renumbered (an answer to the backend keeps its id),
        // and a body without the envelope is renumbered all the same.
        let answer = br#"{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"m"}}"#;
        assert_eq!(for_held_session(answer, Some("\"x\"")), None);
        let bare = for_held_session(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            Some("\"x\""),
        )
        .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&bare).unwrap()["id"], "x");
    }

    #[test]
    fn routing_headers_mirror_the_body() {
        assert_eq!(
            routing_headers(br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}"#),
            vec![
                ("mcp-method".to_string(), "resources/read".to_string()),
                ("mcp-name".to_string(), "file:///a b".to_string())
            ]
        );
        let h = routing_headers("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"h\u{e9}\"}}".as_bytes());
        assert_eq!(h[1].1, "=?base64?aMOp?=");
        assert_eq!(
            routing_headers(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).len(),
            1
        );
        let modern_bs = BackendSession {
            name: "m".into(),
            version: Version::V2026_07_28,
            session_id: None,
            caps: 0,
        };
        let legacy_bs = BackendSession {
            version: Version::V2025_06_18,
            ..modern_bs.clone()
        };
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#.to_vec();
        let (b, h) = for_call(false, Some(&modern_bs), body.clone(), None);
        assert!(String::from_utf8(b).unwrap().contains("protocolVersion"));
        assert_eq!(h.len(), 1);
        assert_eq!(
            for_call(false, Some(&legacy_bs), body.clone(), None),
            (body.clone(), vec![])
        );
        assert_eq!(
            for_call(true, Some(&modern_bs), body.clone(), None).0,
            body,
            "a modern client's body is already complete"
        );
    }
}
