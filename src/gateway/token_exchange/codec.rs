//! The wire side of RFC 8693: the form-encoded exchange request sent to the
//! token endpoint through Envoy, and what its answer means. Nothing here
//! logs: [`Failure`] carries what may be said (never a token).

use super::config::{Actor, ClientAuthMethod, TokenExchange, GRANT_TYPE, JWT_TOKEN_TYPE};
use crate::gateway::host::{CallResponse, Outbound};
use crate::protocol::http::is_safe_header_value;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;

/// The exchange request for `subject_token`; `actor` is the actor token
/// (static or freshly signed) when the block has one.
pub fn request(te: &TokenExchange, subject_token: &str, actor: Option<&str>) -> Outbound {
    let mut form = Form::default();
    form.add("grant_type", GRANT_TYPE);
    form.add("subject_token", subject_token);
    form.add("subject_token_type", &te.subject_token_type);
    form.add("requested_token_type", &te.requested_token_type);
    if let Some(a) = &te.audience {
        form.add("audience", a);
    }
    if let Some(r) = &te.resource {
        form.add("resource", r);
    }
    if let Some(s) = &te.scope {
        form.add("scope", s);
    }
    if let (Some(token), Some(a)) = (actor, &te.actor) {
        let token_type = match a {
            Actor::Static { token_type, .. } => token_type.as_str(),
            Actor::Assertion(_) => JWT_TOKEN_TYPE,
        };
        form.add("actor_token", token);
        form.add("actor_token_type", token_type);
    }
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), te.path.clone()),
        (":authority".to_string(), te.authority.clone()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    if let Some(c) = &te.client {
        match c.method {
            ClientAuthMethod::Basic => {
                // RFC 6749 2.3.1: both parts form-encoded before Base64.
                let pair = format!("{}:{}", form_encode(&c.id), form_encode(&c.secret));
                headers.push((
                    "authorization".to_string(),
                    format!("Basic {}", STANDARD.encode(pair)),
                ));
            }
            ClientAuthMethod::Post => {
                form.add("client_id", &c.id);
                form.add("client_secret", &c.secret);
            }
        }
    }
    Outbound {
        cluster: te.cluster.clone(),
        headers,
        body: form.0.into_bytes(),
        timeout_ms: te.timeout_ms,
    }
}

#[derive(Default)]
struct Form(String);

impl Form {
    fn add(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&form_encode(value));
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An issued token and how long it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    /// Seconds, from `expires_in` or the token's own `exp`; `None` when
    /// neither says.
    pub lifetime_s: Option<u64>,
}

/// Why no token came back. `Refused` and `ClientRejected` carry the OAuth
/// `error` code (a short ASCII word) and a description safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The token service answered 4xx: not for this user, target or scope.
    Refused { error: String, description: String },
    /// The token service did not accept the gateway's own client credentials.
    ClientRejected { error: String, description: String },
    /// No answer, a timeout, 5xx or 429.
    Unavailable(String),
    /// An answer that is not a usable token response.
    BadResponse(String),
}

impl Failure {
    /// The `outcome` label of `mcpgw.token_exchanges_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Refused { .. } => "refused",
            Failure::ClientRejected { .. } => "client_rejected",
            Failure::Unavailable(_) => "unavailable",
            Failure::BadResponse(_) => "bad_response",
        }
    }

    /// For logs and error messages (no token values).
    pub fn describe(&self) -> String {
        match self {
            Failure::Refused { error, description }
            | Failure::ClientRejected { error, description } => {
                if description.is_empty() {
                    error.clone()
                } else {
                    format!("{error}: {description}")
                }
            }
            Failure::Unavailable(s) | Failure::BadResponse(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// What the token endpoint's answer means (`status` 0: no answer within
/// `timeout_ms`, or a connection failure).
pub fn response(r: &CallResponse, timeout_ms: u64) -> Result<Issued, Failure> {
    match r.status {
        0 => Err(Failure::Unavailable(format!(
            "the token service did not answer within {timeout_ms} ms (down, unreachable or slow)"
        ))),
        200 => {
            let t: TokenResponse = serde_json::from_slice(&r.body)
                .map_err(|_| Failure::BadResponse("the token response is not JSON".into()))?;
            let token = t.access_token.filter(|t| !t.is_empty()).ok_or_else(|| {
                Failure::BadResponse("the token response has no access_token".into())
            })?;
            if token.len() > 16 * 1024 || !is_safe_header_value(&token) || token.contains(' ') {
                return Err(Failure::BadResponse(
                    "the issued token is not a single header-safe value".into(),
                ));
            }
            if let Some(tt) = t.token_type.as_deref() {
                if !tt.eq_ignore_ascii_case("bearer") && tt != "N_A" {
                    return Err(Failure::BadResponse(format!(
                        "token_type \"{}\" is not supported (mcpgw sends bearer tokens)",
                        sanitize(tt, 20)
                    )));
                }
            }
            let lifetime_s = match t.expires_in {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            }
            .or_else(|| jwt_lifetime(&token));
            Ok(Issued {
                access_token: token,
                lifetime_s,
            })
        }
        // Envoy answers 504 itself when the call times out, 503 when the
        // cluster has no healthy host.
        504 => Err(Failure::Unavailable(format!(
            "the token service did not answer within {timeout_ms} ms (HTTP 504)"
        ))),
        429 | 500..=599 => Err(Failure::Unavailable(format!(
            "the token service answered HTTP {}",
            r.status
        ))),
        400..=499 => {
            let e: Option<ErrorResponse> = serde_json::from_slice(&r.body).ok();
            let error = e
                .as_ref()
                .and_then(|e| e.error.as_deref())
                .map(|e| sanitize(e, 40))
                .unwrap_or_else(|| format!("HTTP {}", r.status));
            let description = e
                .as_ref()
                .and_then(|e| e.error_description.as_deref())
                .map(|d| sanitize(d, 200))
                .unwrap_or_default();
            if r.status == 401 || error == "invalid_client" || error == "unauthorized_client" {
                Err(Failure::ClientRejected { error, description })
            } else {
                Err(Failure::Refused { error, description })
            }
        }
        s => Err(Failure::BadResponse(format!(
            "the token service answered HTTP {s}"
        ))),
    }
}

/// Seconds until `exp` counted from `iat`, when the token is a JWT with both.
fn jwt_lifetime(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    let iat = v.get("iat")?.as_u64()?;
    exp.checked_sub(iat)
}

/// Printable ASCII, at most `max` characters, and nothing that looks like a
/// token: runs of 24+ base64url characters become `…`.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 24 {
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars().take(max) {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            });
        }
    }
    flush(&mut run, &mut out);
    out
}
