//! Which era a request speaks, and the 2026-07-28 validation ladder.
//!
//! The era is chosen per request from `MCP-Protocol-Version`, as the
//! official SDK servers do: a handshake-era version (or none) takes the
//! session path, anything else the stateless path, where an unknown version
//! is answered `-32022` with the versions served. An `initialize` always
//! takes the session path, whatever header it came with.
//!
//! Anything that reads the body must check the headers against it (the
//! headers are what load balancers and this gateway route on): the ladder
//! below is the specification's, first failure wins.

use super::super::error::GatewayError;
use super::super::host::header;
use crate::protocol::http;
use crate::protocol::jsonrpc::{raw_str, Message, RawObject};
use crate::protocol::mcp::{Version, MODERN_VERSIONS};
use crate::protocol::modern::{self, decode_header_value, is_plain_header_value, meta, LogLevel};

/// The era a request is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// `initialize` and `Mcp-Session-Id` sessions (2025-11-25 and earlier).
    Legacy,
    /// Stateless, per-request metadata (2026-07-28).
    Modern,
}

/// The era of a request from its `MCP-Protocol-Version` header.
pub fn era_of(version_header: Option<&str>) -> Era {
    match version_header.map(str::trim) {
        None => Era::Legacy,
        Some(v) => match Version::parse(v) {
            Some(v) if !v.is_modern() => Era::Legacy,
            _ => Era::Modern,
        },
    }
}

/// The routing headers of a stateless request, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModernHeaders {
    pub version: String,
    pub method: Option<String>,
    /// `Mcp-Name` as sent (possibly `=?base64?...?=`).
    pub name: Option<String>,
    /// A routing header sent more than once (first and last copies could differ).
    pub duplicate: Option<&'static str>,
}

impl ModernHeaders {
    pub fn read(headers: &[(String, String)]) -> ModernHeaders {
        let mut duplicate = None;
        for name in [
            http::PROTOCOL_VERSION,
            modern::METHOD_HEADER,
            modern::NAME_HEADER,
        ] {
            let n = headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .count();
            if n > 1 {
                duplicate.get_or_insert(name);
            }
        }
        ModernHeaders {
            version: header(headers, http::PROTOCOL_VERSION)
                .unwrap_or("")
                .trim()
                .to_string(),
            method: header(headers, modern::METHOD_HEADER).map(str::to_string),
            name: header(headers, modern::NAME_HEADER).map(str::to_string),
            duplicate,
        }
    }

    /// `Mcp-Name` decoded; `None` when absent or malformed.
    pub fn decoded_name(&self) -> Option<String> {
        self.name.as_deref().and_then(decode_header_value)
    }

    /// Whether the version header names a version this gateway serves statelessly.
    pub fn supported(&self) -> bool {
        MODERN_VERSIONS.contains(&self.version.as_str())
    }
}

/// What a valid stateless request carries besides its method and params.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `_meta` `io.modelcontextprotocol/logLevel`: no log messages without it.
    pub log_level: Option<LogLevel>,
    /// The body's value of the parameter `Mcp-Name` mirrors.
    pub name: Option<String>,
    /// An echoed MRTR `requestState`.
    pub request_state: Option<String>,
}

/// A notification on the stateless path is accepted (`202`) at a served version.
pub fn check_notification(h: &ModernHeaders) -> Result<(), GatewayError> {
    if h.supported() {
        Ok(())
    } else {
        Err(GatewayError::unsupported_protocol_version(&h.version))
    }
}

/// The validation ladder for a request body against its headers.
pub fn check_request(h: &ModernHeaders, msg: &Message<'_>) -> Result<Envelope, GatewayError> {
    if let Some(d) = h.duplicate {
        return Err(GatewayError::header_mismatch(format!(
            "Header mismatch: {d} header appears more than once"
        )));
    }
    // A version the gateway does not serve is said first: a client that
    // sent it may not even be shaped for this era.
    if !h.supported() {
        return Err(GatewayError::unsupported_protocol_version(&h.version));
    }
    let method = msg.method.as_deref().unwrap_or("");
    let params = msg.params.and_then(|p| RawObject::parse(p).ok());
    let meta_obj = params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| RawObject::parse(m).ok());
    let Some(meta_obj) = meta_obj else {
        return Err(GatewayError::invalid_meta(format!(
            "Invalid params: params._meta must be an object carrying {} and {}",
            meta::PROTOCOL_VERSION,
            meta::CLIENT_CAPABILITIES
        )));
    };
    let missing: Vec<&str> = [meta::PROTOCOL_VERSION, meta::CLIENT_CAPABILITIES]
        .into_iter()
        .filter(|k| meta_obj.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(GatewayError::invalid_meta(format!(
            "Invalid params: params._meta is missing {}",
            missing.join(" and ")
        )));
    }
    let body_version = meta_obj.get_str(meta::PROTOCOL_VERSION);
    if h.version.is_empty() || body_version.as_deref() != Some(h.version.as_str()) {
        return Err(GatewayError::header_mismatch(format!(
            "Header mismatch: MCP-Protocol-Version header \"{}\" does not match _meta {}",
            h.version.chars().take(40).collect::<String>(),
            meta::PROTOCOL_VERSION
        )));
    }
    match h.method.as_deref() {
        None => {
            return Err(GatewayError::header_mismatch(
                "Header mismatch: the Mcp-Method header is required",
            ))
        }
        Some(m) if !is_plain_header_value(m) => {
            return Err(GatewayError::header_mismatch(
                "Header mismatch: Mcp-Method carries characters a header value may not",
            ))
        }
        Some(m) if m != method => {
            return Err(GatewayError::header_mismatch(format!(
                "Header mismatch: Mcp-Method header \"{}\" does not match body method \"{}\"",
                m.chars().take(64).collect::<String>(),
                method.chars().take(64).collect::<String>()
            )))
        }
        Some(_) => {}
    }
    let mut name = None;
    if let Some((member, required)) = modern::name_param(method) {
        let body_value = params.as_ref().and_then(|p| p.get_str(member));
        let header_value = h.name.as_deref();
        match (header_value, body_value.as_deref()) {
            (None, Some(_)) if required => {
                return Err(GatewayError::header_mismatch(format!(
                    "Header mismatch: the Mcp-Name header is required for {method}"
                )))
            }
            (Some(raw), body) => match decode_header_value(raw) {
                None => {
                    return Err(GatewayError::header_mismatch(
                        "Header mismatch: Mcp-Name is malformed (invalid characters or base64)",
                    ))
                }
                Some(decoded) if Some(decoded.as_str()) != body => {
                    return Err(GatewayError::header_mismatch(format!(
                        "Header mismatch: Mcp-Name header does not match params.{member}"
                    )))
                }
                Some(_) => {}
            },
            _ => {}
        }
        name = body_value.map(|v| v.into_owned());
    }
    let log_level = match meta_obj.get(meta::LOG_LEVEL) {
        None => None,
        Some(v) => match raw_str(v).as_deref().and_then(LogLevel::parse) {
            Some(l) => Some(l),
            None => {
                return Err(GatewayError::invalid_meta(format!(
                    "Invalid params: {} is not a log level",
                    meta::LOG_LEVEL
                )))
            }
        },
    };
    if !modern::is_method(method) {
        return Err(GatewayError::not_a_modern_method(method, &h.version));
    }
    let request_state = params
        .as_ref()
        .and_then(|p| p.get("requestState"))
        .filter(|v| v.get() != "null")
        .map(|v| raw_str(v).map(|s| s.into_owned()).ok_or(()))
        .transpose()
        .map_err(|()| {
            GatewayError::invalid_meta("Invalid params: requestState must be a string")
        })?;
    Ok(Envelope {
        log_level,
        name,
        request_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jsonrpc::{parse, INVALID_PARAMS, METHOD_NOT_FOUND};
    use crate::protocol::modern::{HEADER_MISMATCH, UNSUPPORTED_VERSION};
    use serde_json::{json, Value};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn hdrs(pairs: &[(&str, &str)]) -> ModernHeaders {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ModernHeaders::read(&v)
    }

    fn call(name: &str, extra_meta: Value) -> String {
        let mut meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        if let (Some(m), Some(e)) = (meta.as_object_mut(), extra_meta.as_object()) {
            m.extend(e.clone());
        }
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
               "params":{"name":name,"arguments":{},"_meta":meta}})
        .to_string()
    }

    fn check(h: &ModernHeaders, body: &str) -> Result<Envelope, GatewayError> {
        check_request(h, &parse(body.as_bytes()).unwrap())
    }

    const GOOD: &[(&str, &str)] = &[
        ("mcp-protocol-version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("mcp-name", "echo"),
    ];

    #[test]
    fn eras_from_the_version_header() {
        assert_eq!(era_of(None), Era::Legacy);
        assert_eq!(era_of(Some("2025-06-18")), Era::Legacy);
        assert_eq!(era_of(Some("2024-11-05")), Era::Legacy);
        assert_eq!(era_of(Some(" 2026-07-28 ")), Era::Modern);
        assert_eq!(
            era_of(Some("2099-01-01")),
            Era::Modern,
            "-32022 comes from the modern path"
        );
    }

    #[test]
    fn a_valid_request_passes_with_its_envelope() {
        let e = check(
            &hdrs(GOOD),
            &call(
                "echo",
                json!({"io.modelcontextprotocol/logLevel":"warning"}),
            ),
        )
        .unwrap();
        assert_eq!(e.log_level, Some(LogLevel::Warning));
        assert_eq!(e.name.as_deref(), Some("echo"));
        // Base64-encoded names compare decoded.
        let h = hdrs(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?aMOpbGxv?="),
        ]);
        assert!(check(&h, &call("héllo", json!({}))).is_ok());
        let mut state = serde_json::from_str::<Value>(&call("echo", json!({}))).unwrap();
        state["params"]["requestState"] = json!("opaque");
        assert_eq!(
            check(&hdrs(GOOD), &state.to_string())
                .unwrap()
                .request_state
                .as_deref(),
            Some("opaque")
        );
    }

    #[test]
    fn every_rung_refuses_with_the_specified_code() {
        let body = call("echo", json!({}));
        type Case<'a> = (Vec<(&'a str, &'a str)>, String, i64);
        let cases: Vec<Case<'_>> = vec![
            // Header missing or different from the body.
            (vec![("mcp-protocol-version", "2026-07-28"), ("mcp-name", "echo")], body.clone(), HEADER_MISMATCH),
            (vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list"), ("mcp-name", "echo")], body.clone(), HEADER_MISMATCH),
            (vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")], body.clone(), HEADER_MISMATCH),
            (vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "other")], body.clone(), HEADER_MISMATCH),
            (vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "=?base64?!?=")], body.clone(), HEADER_MISMATCH),
            (vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo"), ("mcp-name", "echo")], body.clone(), HEADER_MISMATCH),
            // Header and _meta disagree on the version.
            (vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")],
             body.replace("2026-07-28", "2099-01-01"), HEADER_MISMATCH),
            // An unsupported version, whatever the body says.
            (vec![("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/call"), ("mcp-name", "echo")], body.clone(), UNSUPPORTED_VERSION),
            (vec![("mcp-protocol-version", "2099-01-01")], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.into(), UNSUPPORTED_VERSION),
            // _meta missing or incomplete.
            (GOOD.to_vec(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#.into(), INVALID_PARAMS),
            (GOOD.to_vec(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.into(), INVALID_PARAMS),
            (GOOD.to_vec(), call("echo", json!({"io.modelcontextprotocol/logLevel":"loud"})), INVALID_PARAMS),
        ];
        for (i, (h, b, code)) in cases.into_iter().enumerate() {
            let r = check(&hdrs(&h), &b).unwrap_err();
            assert_eq!(r.code, code, "case {i}: {}", r.message);
            assert_eq!(r.status, 400, "case {i}");
        }
        let r = check(
            &hdrs(&[
                ("mcp-protocol-version", "2099-01-01"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ]),
            &body.replace("2026-07-28", "2099-01-01"),
        )
        .unwrap_err();
        let data: Value = serde_json::from_str(r.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["requested"], "2099-01-01");
        assert_eq!(data["supported"][0], "2026-07-28");
        assert!(data["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25")));
    }

    #[test]
    fn removed_and_unknown_methods_are_404() {
        for m in [
            "ping",
            "logging/setLevel",
            "resources/subscribe",
            "tasks/result",
            "widgets/spin",
        ] {
            let h = hdrs(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", m)]);
            let b = json!({"jsonrpc":"2.0","id":2,"method":m,"params":{"_meta":{
                "io.modelcontextprotocol/protocolVersion":"2026-07-28",
                "io.modelcontextprotocol/clientCapabilities":{}}}})
            .to_string();
            let r = check(&h, &b).unwrap_err();
            assert_eq!((r.code, r.status), (METHOD_NOT_FOUND, 404), "{m}");
        }
    }

    #[test]
    fn task_methods_check_the_name_only_when_sent() {
        let b =
            json!({"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"t1","_meta":{
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientCapabilities":{}}}})
            .to_string();
        let base = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tasks/get"),
        ];
        assert_eq!(check(&hdrs(&base), &b).unwrap().name.as_deref(), Some("t1"));
        let mut with = base.to_vec();
        with.push(("mcp-name", "t2"));
        assert_eq!(check(&hdrs(&with), &b).unwrap_err().code, HEADER_MISMATCH);
    }

    #[test]
    fn notifications_need_only_a_served_version() {
        assert!(check_notification(&hdrs(&[("mcp-protocol-version", "2026-07-28")])).is_ok());
        assert_eq!(
            check_notification(&hdrs(&[("mcp-protocol-version", "1999")]))
                .unwrap_err()
                .code,
            UNSUPPORTED_VERSION
        );
    }
}
