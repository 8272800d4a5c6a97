//! The HTTP side of Streamable HTTP: header names and the small parsers the
//! transport rules need (Accept, Origin, header-value safety).

pub const SESSION_ID: &str = "mcp-session-id";
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const LAST_EVENT_ID: &str = "last-event-id";
pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_LENGTH: &str = "content-length";
pub const ACCEPT: &str = "accept";
pub const ORIGIN: &str = "origin";
pub const AUTHORIZATION: &str = "authorization";

pub const JSON: &str = "application/json";
pub const EVENT_STREAM: &str = "text/event-stream";

/// Whether an `Accept` header value admits `mime` (`type/subtype`), honouring
/// wildcards and `q=0` exclusions (RFC 9110 section 12.5.1).
pub fn accepts(accept: &str, mime: &str) -> bool {
    let (ty, _) = mime.split_once('/').unwrap_or((mime, ""));
    let mut best: Option<(u8, bool)> = None; // (specificity, acceptable)
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let m = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q_zero = false;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    let v = v.trim();
                    q_zero = v.parse::<f32>().map(|q| q <= 0.0).unwrap_or(false);
                }
            }
        }
        let specificity = if m == mime {
            3
        } else if m.split_once('/').is_some_and(|(t, s)| t == ty && s == "*") {
            2
        } else if m == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, !q_zero));
        }
    }
    best.is_some_and(|(_, ok)| ok)
}

/// Whether the client ranks `text/event-stream` above `application/json`
/// (higher q, or the same q and listed first). Both are allowed either way.
pub fn prefers_event_stream(accept: &str) -> bool {
    let rank = |mime: &str| -> (f32, usize) {
        let mut best: (u8, f32, usize) = (0, 0.0, usize::MAX);
        for (pos, range) in accept.split(',').enumerate() {
            let mut parts = range.split(';');
            let m = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let (ty, _) = mime.split_once('/').unwrap_or((mime, ""));
            let spec = if m == mime {
                3
            } else if m.split_once('/').is_some_and(|(t, s)| t == ty && s == "*") {
                2
            } else if m == "*/*" {
                1
            } else {
                0
            };
            if spec > best.0 {
                best = (spec, q, pos);
            }
        }
        (best.1, best.2)
    };
    let (q_sse, pos_sse) = rank(EVENT_STREAM);
    let (q_json, pos_json) = rank(JSON);
    q_sse > q_json || (q_sse == q_json && pos_sse < pos_json)
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A value safe to put in an HTTP header we send: visible ASCII and spaces,
/// no CR/LF/NUL (nothing can be smuggled into a second header).
pub fn is_safe_header_value(v: &str) -> bool {
    v.bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
}

/// `Mcp-Session-Id` must be visible ASCII (0x21-0x7E) per the transport spec.
pub fn is_valid_session_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The request path without query string.
pub fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// `scheme://host[:port]` of an Origin, host lower-cased. `None` if malformed.
pub fn origin_host(origin: &str) -> Option<(String, String)> {
    let (scheme, rest) = origin.split_once("://")?;
    if rest.contains('/') || rest.is_empty() {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), rest.to_ascii_lowercase()))
}

/// Host part of an authority (`host[:port]`, `[v6]:port`), lower-cased.
pub fn authority_host(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match a.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => a,
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host == "::1" || host.starts_with("127.") || host.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn accept_rules() {
        let both = "application/json, text/event-stream";
        assert!(accepts(both, JSON) && accepts(both, EVENT_STREAM));
        assert!(!accepts("application/json", EVENT_STREAM));
        assert!(accepts("*/*", EVENT_STREAM));
        assert!(accepts("application/*;q=0.5, text/*", JSON));
        assert!(!accepts("*/*, text/event-stream;q=0", EVENT_STREAM));
        assert!(!accepts("", JSON));
        assert!(accepts("APPLICATION/JSON", JSON));
    }

    #[test]
    fn preference() {
        assert!(!prefers_event_stream("application/json, text/event-stream"));
        assert!(prefers_event_stream("text/event-stream, application/json"));
        assert!(prefers_event_stream(
            "application/json;q=0.5, text/event-stream"
        ));
        assert!(!prefers_event_stream("*/*"));
    }

    #[test]
    fn header_safety() {
        assert!(is_safe_header_value("Bearer abc.def"));
        assert!(!is_safe_header_value("a\r\nx-evil: 1"));
        assert!(is_valid_session_id("abc-123_ZZ"));
        assert!(!is_valid_session_id("a b"));
        assert!(!is_valid_session_id(""));
    }

    #[test]
    fn hosts() {
        assert_eq!(authority_host("LocalHost:1975"), "localhost");
        assert_eq!(authority_host("[::1]:80"), "::1");
        assert_eq!(authority_host("example.com"), "example.com");
        assert!(is_loopback_host("127.0.0.1"));
        assert_eq!(
            origin_host("http://Example.com:8080"),
            Some(("http".into(), "example.com:8080".into()))
        );
        assert_eq!(origin_host("null"), None);
        assert_eq!(path_only("/mcp?x=1"), "/mcp");
    }
}
