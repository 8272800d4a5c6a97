//! JSON-RPC 2.0 envelopes, parsed without copying.
//!
//! The gateway looks at `jsonrpc`, `id`, `method` and the presence of
//! `params` / `result` / `error`; everything else stays as raw JSON text so a
//! message can be forwarded or spliced without re-serialising what we did not
//! touch. Ids are kept raw too: `1`, `1.0` and `"1"` are three different ids and
//! must come back exactly as they went out.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP's "resource not found" (resources/read of an unknown URI).
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// Implementation-defined server error range (-32000..-32099): a backend failed.
pub const BACKEND_ERROR: i64 = -32010;
/// Same range: Envoy's rate limit refused the call (`error.data.retryAfter`).
pub const RATE_LIMITED: i64 = -32029;

/// What a single JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    Error,
}

/// A parsed JSON-RPC message borrowing from the body it came from.
#[derive(Debug)]
pub struct Message<'a> {
    pub id: Option<&'a RawValue>,
    pub method: Option<Cow<'a, str>>,
    pub params: Option<&'a RawValue>,
    pub result: Option<&'a RawValue>,
    pub error: Option<&'a RawValue>,
    pub kind: Kind,
}

/// Why a body is not one valid JSON-RPC message. Each maps to a spec code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (-32700).
    Json(String),
    /// A JSON array: batches are not allowed since 2025-06-18 (-32600).
    Batch,
    /// JSON, but not a JSON-RPC 2.0 message (-32600).
    Invalid(String),
}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => PARSE_ERROR,
            ParseError::Batch | ParseError::Invalid(_) => INVALID_REQUEST,
        }
    }
    pub fn message(&self) -> String {
        match self {
            ParseError::Json(e) => format!("Parse error: {e}"),
            ParseError::Batch => {
                "Invalid Request: JSON-RPC batches are not supported; send one message per POST"
                    .to_string()
            }
            ParseError::Invalid(e) => format!("Invalid Request: {e}"),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// Keeps `null` as a present raw value (serde maps it to `None` otherwise):
/// `"id": null` and `"result": null` are not the same as a missing member.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parse one JSON-RPC message. Leading whitespace and a UTF-8 BOM are allowed.
pub fn parse(body: &[u8]) -> Result<Message<'_>, ParseError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ParseError::Json(format!("body is not UTF-8 ({e})")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        // Validate it is JSON so garbage still gets -32700.
        serde_json::from_str::<&RawValue>(trimmed).map_err(|e| ParseError::Json(e.to_string()))?;
        return Err(ParseError::Batch);
    }
    if !trimmed.starts_with('{') {
        serde_json::from_str::<&RawValue>(trimmed).map_err(|e| ParseError::Json(e.to_string()))?;
        return Err(ParseError::Invalid(
            "a JSON-RPC message is a JSON object".into(),
        ));
    }
    let env: Envelope<'_> = serde_json::from_str(trimmed).map_err(|e| {
        if e.is_data() {
            ParseError::Invalid(e.to_string())
        } else {
            ParseError::Json(e.to_string())
        }
    })?;
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\"".into()));
    }
    if let Some(id) = env.id {
        let null_error_id = env.error.is_some() && id.get() == "null";
        if !(valid_id(id) || null_error_id) {
            return Err(ParseError::Invalid(
                "\"id\" must be a string or an integer".into(),
            ));
        }
    }
    if let Some(p) = env.params {
        let first = p.get().as_bytes().first();
        if first != Some(&b'{') && first != Some(&b'[') {
            return Err(ParseError::Invalid(
                "\"params\" must be an object or an array".into(),
            ));
        }
    }
    let kind = match (&env.method, env.id, env.result, env.error) {
        (Some(_), Some(_), None, None) => Kind::Request,
        (Some(_), None, None, None) => Kind::Notification,
        (None, Some(_), Some(_), None) => Kind::Response,
        (None, Some(_), None, Some(_)) => Kind::Error,
        (None, None, None, Some(_)) => Kind::Error,
        _ => {
            return Err(ParseError::Invalid(
                "a message needs \"method\" (request or notification) or exactly one of \"result\" and \"error\" (response)"
                    .into(),
            ))
        }
    };
    Ok(Message {
        id: env.id,
        method: env.method,
        params: env.params,
        result: env.result,
        error: env.error,
        kind,
    })
}

/// MCP ids are strings or integers (never null for requests).
pub fn valid_id(id: &RawValue) -> bool {
    let s = id.get();
    match s.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => s.bytes().all(|b| b == b'-' || b.is_ascii_digit()),
        _ => false,
    }
}

/// `{"jsonrpc":"2.0","id":<id>,"result":<result>}`
pub fn result_json(id: &RawValue, result: &str) -> String {
    let mut out = String::with_capacity(40 + id.get().len() + result.len());
    out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    out.push_str(id.get());
    out.push_str(",\"result\":");
    out.push_str(result);
    out.push('}');
    out
}

/// A JSON-RPC error response; `id` is `null` when the request's id is unknown.
pub fn error_json(id: Option<&RawValue>, code: i64, message: &str, data: Option<&str>) -> String {
    let mut out = String::with_capacity(64 + message.len());
    out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    out.push_str(id.map(RawValue::get).unwrap_or("null"));
    out.push_str(",\"error\":{\"code\":");
    out.push_str(&code.to_string());
    out.push_str(",\"message\":");
    push_json_string(&mut out, message);
    if let Some(d) = data {
        out.push_str(",\"data\":");
        out.push_str(d);
    }
    out.push_str("}}");
    out
}

/// A request `{"jsonrpc":"2.0","id":..,"method":..,"params":..}`.
pub fn request_json(id: &str, method: &str, params: Option<&str>) -> String {
    let mut out = String::with_capacity(64 + params.map_or(0, str::len));
    out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    out.push_str(id);
    out.push_str(",\"method\":");
    push_json_string(&mut out, method);
    if let Some(p) = params {
        out.push_str(",\"params\":");
        out.push_str(p);
    }
    out.push('}');
    out
}

/// A notification `{"jsonrpc":"2.0","method":..,"params":..}`.
pub fn notification_json(method: &str, params: Option<&str>) -> String {
    let mut out = String::with_capacity(48 + params.map_or(0, str::len));
    out.push_str("{\"jsonrpc\":\"2.0\",\"method\":");
    push_json_string(&mut out, method);
    if let Some(p) = params {
        out.push_str(",\"params\":");
        out.push_str(p);
    }
    out.push('}');
    out
}

/// Append `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or(""));
        match esc {
            Some(e) => out.push_str(e),
            None => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
        start = i + c.len_utf8();
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

/// A JSON object kept as an ordered list of (key, raw value): the members we
/// do not touch are written back byte for byte.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    pub members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    pub fn parse(raw: &'a RawValue) -> Result<Self, String> {
        serde_json::from_str(raw.get()).map_err(|e| e.to_string())
    }

    pub fn parse_str(s: &'a str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    /// Bytes this object takes when written back.
    pub fn size_hint(&self) -> usize {
        self.members
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + 2
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The member as a string, if it is a JSON string.
    pub fn get_str(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(raw_str)
    }

    /// Serialise, replacing the members named in `replace` (raw JSON text)
    /// and appending those not present.
    pub fn write_with(&self, replace: &[(&str, &str)]) -> String {
        let mut out = String::with_capacity(
            self.members
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + replace
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>()
                + 2,
        );
        self.write_into(&mut out, replace);
        out
    }

    /// Serialise without the members named in `remove`, replacing as `write_with`.
    pub fn write_without(&self, remove: &[&str], replace: &[(&str, &str)]) -> String {
        let kept = RawObject {
            members: self
                .members
                .iter()
                .filter(|(k, _)| !remove.contains(&k.as_ref()))
                .cloned()
                .collect(),
        };
        kept.write_with(replace)
    }

    pub fn write_into(&self, out: &mut String, replace: &[(&str, &str)]) {
        out.push('{');
        let mut first = true;
        for (k, v) in &self.members {
            if !first {
                out.push(',');
            }
            first = false;
            push_json_string(out, k);
            out.push(':');
            match replace.iter().find(|(rk, _)| rk == k) {
                Some((_, rv)) => out.push_str(rv),
                None => out.push_str(v.get()),
            }
        }
        for (rk, rv) in replace {
            if self.members.iter().any(|(k, _)| k == rk) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            push_json_string(out, rk);
            out.push(':');
            out.push_str(rv);
        }
        out.push('}');
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let v: &'de RawValue = m.next_value()?;
                    if members.iter().any(|(ek, _): &(Cow<str>, _)| *ek == k) {
                        return Err(de::Error::custom(format!("duplicate member \"{k}\"")));
                    }
                    members.push((k, v));
                }
                Ok(RawObject { members })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A raw JSON string value decoded; `None` if it is not a string.
pub fn raw_str(v: &RawValue) -> Option<Cow<'_, str>> {
    if !v.get().starts_with('"') {
        return None;
    }
    serde_json::from_str::<Cow<'_, str>>(v.get()).ok()
}

/// A raw JSON array's elements, still raw.
pub fn raw_array(v: &RawValue) -> Option<Vec<&RawValue>> {
    if !v.get().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<&RawValue>>(v.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn request_kinds() {
        let m = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).unwrap();
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(m.id.unwrap().get(), "7");
        let m = parse(br#" {"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.kind, Kind::Notification);
        let m = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(m.kind, Kind::Response);
        let m = parse(br#"{"jsonrpc":"2.0","id":"a","result":null}"#).unwrap();
        assert_eq!(m.kind, Kind::Response);
        let m = parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#).unwrap();
        assert_eq!(m.kind, Kind::Error);
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(b"{nope").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(parse(b"").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(parse(b"[{}]").unwrap_err(), ParseError::Batch);
        assert_eq!(parse(b"[{]").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(parse(b"42").unwrap_err().code(), INVALID_REQUEST);
        assert_eq!(
            parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","method":"y"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert!(parse(&[0xff, 0xfe]).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn ids_round_trip_exactly() {
        for id in ["1", "-3", "\"1\"", "\"x\\\"y\"", "12345678901234567890123"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let m = parse(body.as_bytes()).unwrap();
            let out = result_json(m.id.unwrap(), "{}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                v["id"],
                serde_json::from_str::<serde_json::Value>(id).unwrap()
            );
        }
    }

    #[test]
    fn raw_object_replaces_and_keeps_order() {
        let o = RawObject::parse_str(r#"{"name":"a","x":{"y":[1,2]},"z":"\u00e9"}"#).unwrap();
        assert_eq!(o.get_str("name").unwrap(), "a");
        let s = o.write_with(&[("name", "\"p__a\""), ("new", "1")]);
        assert_eq!(s, r#"{"name":"p__a","x":{"y":[1,2]},"z":"\u00e9","new":1}"#);
        assert!(RawObject::parse_str(r#"{"a":1,"a":2}"#).is_err());
    }

    #[test]
    fn json_strings_escape_controls() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
        let e = error_json(None, -1, "m\"", Some("{}"));
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["error"]["message"], "m\"");
    }
}
