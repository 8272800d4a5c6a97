//! The `requestState` of a multi-round-trip request (MRTR, 2026-07-28), as
//! the gateway hands it to the client: the backend's own state (if any)
//! sealed together with everything the retry must match, so that the retry
//! (a new request, possibly on another worker or replica) reaches the same
//! backend with the backend's original state, and a tampered, expired,
//! foreign or replayed-elsewhere state is refused before anything reaches a
//! backend.
//!
//! Sealed like every other gateway token (XChaCha20-Poly1305 under the
//! configured key ring, purpose-bound): any replica with the key opens it,
//! key rotation keeps accepting the previous key. The plaintext binds:
//! the caller (principal digest, or the anonymous scope), an expiry, the
//! method, the client-visible name or URI, a digest of the arguments, and the
//! backend.

use super::super::crypto::{Keyring, Purpose, Reader, Writer, NONCE_LEN};
use serde_json::Value;
use sha2::{Digest, Sha256};

const FORMAT: u8 = 1;
/// How long a client may take to answer the input requests of one round.
pub const TTL_MS: u64 = 10 * 60 * 1000;
/// Longest state token accepted (the backend's state travels inside it).
pub const MAX_TOKEN: usize = 512 * 1024;
/// Marks the gateway's own states (also in logs).
pub const PREFIX: &str = "mcpgw1.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    /// Who may retry: the principal digest, or the anonymous scope.
    pub scope: [u8; 16],
    pub expires_ms: u64,
    pub method: String,
    /// The client-visible tool or prompt name, or resource URI.
    pub target: String,
    /// Digest of the request's `arguments` (see [`args_digest`]).
    pub args: [u8; 16],
    /// The backend that asked for input.
    pub backend: String,
    /// The backend's own `requestState`, returned to it on the retry.
    pub original: Option<String>,
}

/// Why an echoed state is refused (logged; the client sees one message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// Not a state this gateway sealed (forged, damaged, other key, truncated).
    Invalid,
    Expired,
    /// Sealed for another caller, method, name or arguments.
    Foreign,
}

impl StateError {
    pub fn reason(self) -> &'static str {
        match self {
            StateError::Invalid => "not sealed by this gateway (forged, damaged or another key)",
            StateError::Expired => "expired",
            StateError::Foreign => "minted for another caller, method, name or arguments",
        }
    }
}

impl RequestState {
    pub fn seal(&self, keys: &Keyring, nonce: &[u8; NONCE_LEN]) -> String {
        let mut w = Writer::default();
        w.u8(FORMAT)
            .bytes(&self.scope)
            .u64(self.expires_ms)
            .str(&self.method)
            .long_str(&self.target)
            .bytes(&self.args)
            .str(&self.backend);
        match &self.original {
            Some(o) => w.u8(1).long_str(o),
            None => w.u8(0),
        };
        let mut out = String::from(PREFIX);
        out.push_str(&keys.seal(Purpose::RequestState, nonce, &w.buf));
        out
    }

    /// Open a state echoed at `now_ms`.
    pub fn open(keys: &Keyring, token: &str, now_ms: u64) -> Result<RequestState, StateError> {
        let sealed = token.strip_prefix(PREFIX).ok_or(StateError::Invalid)?;
        let plain = keys
            .open_up_to(Purpose::RequestState, sealed, MAX_TOKEN)
            .ok_or(StateError::Invalid)?;
        let s = Self::decode(&plain).ok_or(StateError::Invalid)?;
        if now_ms > s.expires_ms {
            return Err(StateError::Expired);
        }
        Ok(s)
    }

    fn decode(buf: &[u8]) -> Option<RequestState> {
        let mut r = Reader::new(buf);
        if r.u8()? != FORMAT {
            return None;
        }
        let scope = r.array::<16>()?;
        let expires_ms = r.u64()?;
        let method = r.str()?.to_string();
        let target = r.long_str()?.to_string();
        let args = r.array::<16>()?;
        let backend = r.str()?.to_string();
        let original = match r.u8()? {
            0 => None,
            1 => Some(r.long_str()?.to_string()),
            _ => return None,
        };
        r.is_empty().then_some(RequestState {
            scope,
            expires_ms,
            method,
            target,
            args,
            backend,
            original,
        })
    }

    /// Whether this state belongs to the retry in hand.
    pub fn check(
        &self,
        scope: &[u8; 16],
        method: &str,
        target: &str,
        args: &[u8; 16],
    ) -> Result<(), StateError> {
        if &self.scope == scope
            && self.method == method
            && self.target == target
            && &self.args == args
        {
            Ok(())
        } else {
            Err(StateError::Foreign)
        }
    }
}

/// A digest of a request's `arguments` that does not depend on member order
/// or whitespace (a client may re-serialise its retry).
pub fn args_digest(arguments: Option<&str>) -> [u8; 16] {
    let mut canon = String::new();
    match arguments.and_then(|a| serde_json::from_str::<Value>(a).ok()) {
        Some(v) => canonical(&v, &mut canon),
        None => canon.push_str("null"),
    }
    let d = Sha256::digest(canon.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    out
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample(original: Option<&str>) -> RequestState {
        RequestState {
            scope: [4; 16],
            expires_ms: 2_000,
            method: "tools/call".into(),
            target: "py__confirm".into(),
            args: args_digest(Some(r#"{"x":1}"#)),
            backend: "py".into(),
            original: original.map(str::to_string),
        }
    }

    #[test]
    fn round_trip_with_and_without_the_backends_state() {
        let keys = Keyring::new(&[1; 32], &[]);
        for original in [None, Some("v1.backend-state"), Some(&*"x".repeat(100_000))] {
            let s = sample(original);
            let t = s.seal(&keys, &[9; 24]);
            assert!(t.starts_with(PREFIX));
            assert_eq!(RequestState::open(&keys, &t, 1_000), Ok(s.clone()));
            assert_eq!(
                s.check(
                    &[4; 16],
                    "tools/call",
                    "py__confirm",
                    &args_digest(Some(r#"{ "x" : 1 }"#))
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn tampered_foreign_expired_or_other_key_states_are_refused() {
        let keys = Keyring::new(&[1; 32], &[]);
        let t = sample(Some("orig")).seal(&keys, &[9; 24]);
        // Every flipped character of the sealed part.
        let body = t.strip_prefix(PREFIX).unwrap();
        for i in 0..body.len() {
            let mut b = body.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let forged = format!("{PREFIX}{}", String::from_utf8(b).unwrap());
            assert_eq!(
                RequestState::open(&keys, &forged, 1_000),
                Err(StateError::Invalid)
            );
        }
        assert_eq!(
            RequestState::open(&keys, "v1.backend-state", 1_000),
            Err(StateError::Invalid)
        );
        assert_eq!(
            RequestState::open(&keys, &t[..t.len() - 2], 1_000),
            Err(StateError::Invalid)
        );
        assert_eq!(
            RequestState::open(&keys, &t, 2_001),
            Err(StateError::Expired)
        );
        let other = Keyring::new(&[2; 32], &[]);
        assert_eq!(
            RequestState::open(&other, &t, 1_000),
            Err(StateError::Invalid)
        );
        // Another purpose's token under the same key is not a state.
        let cursor = format!("{PREFIX}{}", keys.seal(Purpose::Cursor, &[1; 24], b"\x01"));
        assert_eq!(
            RequestState::open(&keys, &cursor, 1_000),
            Err(StateError::Invalid)
        );
        let s = RequestState::open(&keys, &t, 1_000).unwrap();
        let args = args_digest(Some(r#"{"x":1}"#));
        assert_eq!(
            s.check(&[5; 16], "tools/call", "py__confirm", &args),
            Err(StateError::Foreign)
        );
        assert_eq!(
            s.check(&[4; 16], "prompts/get", "py__confirm", &args),
            Err(StateError::Foreign)
        );
        assert_eq!(
            s.check(&[4; 16], "tools/call", "py__other", &args),
            Err(StateError::Foreign)
        );
        assert_eq!(
            s.check(
                &[4; 16],
                "tools/call",
                "py__confirm",
                &args_digest(Some(r#"{"x":2}"#))
            ),
            Err(StateError::Foreign)
        );
    }

    #[test]
    fn rotation_keeps_accepting_the_previous_key() {
        let old = Keyring::new(&[1; 32], &[]);
        let t = sample(None).seal(&old, &[3; 24]);
        let rotated = Keyring::new(&[2; 32], &[[1; 32]]);
        assert!(RequestState::open(&rotated, &t, 1_000).is_ok());
        let t2 = sample(None).seal(&rotated, &[3; 24]);
        assert_eq!(
            RequestState::open(&old, &t2, 1_000),
            Err(StateError::Invalid)
        );
    }

    #[test]
    fn argument_digest_ignores_order_and_spacing_only() {
        assert_eq!(
            args_digest(Some(r#"{"a":1,"b":{"c":[1,2],"d":"x"}}"#)),
            args_digest(Some(r#"{ "b": {"d":"x","c":[1,2]}, "a":1 }"#))
        );
        assert_ne!(
            args_digest(Some(r#"{"a":[1,2]}"#)),
            args_digest(Some(r#"{"a":[2,1]}"#))
        );
        assert_eq!(args_digest(None), args_digest(Some("null")));
    }
}
