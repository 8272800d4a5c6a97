//! The gateway session, carried entirely inside the `Mcp-Session-Id` the
//! client holds: which backends joined, their own session ids and protocol
//! versions, when it started and (with OAuth) whom it belongs to. Sealed with
//! the configured key, so any worker or replica with that key serves it and
//! nobody without it can read or forge one.

use super::crypto::{Keyring, Purpose, Reader, Writer, NONCE_LEN};
use crate::protocol::mcp::Version;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const FORMAT: u8 = 1;
const FLAG_PRINCIPAL: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSession {
    pub name: String,
    pub version: Version,
    /// The backend's own `Mcp-Session-Id`; `None` for stateless backends.
    pub session_id: Option<String>,
    /// Capabilities it announced (`caps::*` bits): lists and fan-outs only go
    /// to backends that serve them.
    pub caps: u8,
}

/// Capability bits kept per backend in the session.
pub mod caps {
    pub const TOOLS: u8 = 1;
    pub const PROMPTS: u8 = 2;
    pub const RESOURCES: u8 = 4;
    pub const COMPLETIONS: u8 = 8;
    pub const LOGGING: u8 = 16;
    pub const TASKS: u8 = 32;
    /// `tasks.list`: the backend answers `tasks/list`.
    pub const TASK_LIST: u8 = 64;

    /// The bit for a capability name of `initialize`'s result.
    pub fn bit(name: &str) -> u8 {
        match name {
            "tools" => TOOLS,
            "prompts" => PROMPTS,
            "resources" => RESOURCES,
            "completions" => COMPLETIONS,
            "logging" => LOGGING,
            "tasks" => TASKS,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random identity of this session (revocation, binding of derived ids).
    pub sid: [u8; 16],
    pub created_ms: u64,
    /// Version negotiated with the client.
    pub version: Version,
    /// Digest of the authenticated principal (issuer, subject), if any.
    pub principal: Option<[u8; 16]>,
    pub backends: Vec<BackendSession>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Not a session id this gateway issued (forged, damaged, other key).
    Invalid,
    /// Older than the configured lifetime.
    Expired,
}

impl Session {
    pub fn seal(&self, keys: &Keyring, nonce: &[u8; NONCE_LEN]) -> String {
        let mut w = Writer::default();
        w.u8(FORMAT)
            .bytes(&self.sid)
            .u64(self.created_ms)
            .u8(self.version.to_byte());
        match &self.principal {
            Some(p) => {
                w.u8(FLAG_PRINCIPAL).bytes(p);
            }
            None => {
                w.u8(0);
            }
        }
        w.u8(u8::try_from(self.backends.len()).unwrap_or(u8::MAX));
        for b in self.backends.iter().take(usize::from(u8::MAX)) {
            w.str(&b.name)
                .u8(b.version.to_byte())
                .u8(b.caps)
                .str(b.session_id.as_deref().unwrap_or(""));
        }
        keys.seal(Purpose::Session, nonce, &w.buf)
    }

    /// Open and check expiry (`ttl_ms` after creation; future-dated ids beyond
    /// a minute of clock skew are refused too).
    pub fn open(
        keys: &Keyring,
        token: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Session, SessionError> {
        let plain = keys
            .open(Purpose::Session, token)
            .ok_or(SessionError::Invalid)?;
        let s = Self::decode(&plain).ok_or(SessionError::Invalid)?;
        s.check_age(now_ms, ttl_ms)?;
        Ok(s)
    }

    fn check_age(&self, now_ms: u64, ttl_ms: u64) -> Result<(), SessionError> {
        if now_ms.saturating_sub(self.created_ms) > ttl_ms
            || self.created_ms > now_ms.saturating_add(60_000)
        {
            return Err(SessionError::Expired);
        }
        Ok(())
    }

    fn decode(buf: &[u8]) -> Option<Session> {
        let mut r = Reader::new(buf);
        if r.u8()? != FORMAT {
            return None;
        }
        let sid = r.array::<16>()?;
        let created_ms = r.u64()?;
        let version = Version::from_byte(r.u8()?)?;
        let flags = r.u8()?;
        let principal = if flags & FLAG_PRINCIPAL != 0 {
            Some(r.array::<16>()?)
        } else {
            None
        };
        let n = r.u8()?;
        let mut backends = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let name = r.str()?.to_string();
            let version = Version::from_byte(r.u8()?)?;
            let caps = r.u8()?;
            let sid = r.str()?;
            backends.push(BackendSession {
                name,
                version,
                session_id: (!sid.is_empty()).then(|| sid.to_string()),
                caps,
            });
        }
        if !r.is_empty() {
            return None;
        }
        Some(Session {
            sid,
            created_ms,
            version,
            principal,
            backends,
        })
    }

    pub fn backend(&self, name: &str) -> Option<&BackendSession> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// Expiry instant, used to age out revocation entries.
    pub fn expires_ms(&self, ttl_ms: u64) -> u64 {
        self.created_ms.saturating_add(ttl_ms)
    }
}

/// Sessions already opened on this worker, by their exact (authenticated)
/// token: a session is used for many requests, and opening one costs an AEAD
/// pass and base64. Two generations bound the memory: when the young one is
/// full it becomes the old one and the old one is dropped.
pub struct SessionCache {
    gens: Mutex<Generations>,
    capacity: usize,
}

#[derive(Default)]
struct Generations {
    young: HashMap<String, Opened>,
    old: HashMap<String, Opened>,
}

/// An opened session and its log tag.
pub type Opened = (Arc<Session>, Arc<str>);

impl SessionCache {
    pub fn new(capacity: usize) -> SessionCache {
        SessionCache {
            gens: Mutex::new(Generations::default()),
            capacity: capacity.max(1),
        }
    }

    /// [`Session::open`], remembered. `tag` computes the log tag once.
    pub fn open(
        &self,
        keys: &Keyring,
        token: &str,
        now_ms: u64,
        ttl_ms: u64,
        tag: impl Fn(&Session) -> String,
    ) -> Result<Opened, SessionError> {
        let hit = self.gens.lock().ok().and_then(|mut g| {
            if let Some(o) = g.young.get(token) {
                return Some(o.clone());
            }
            let o = g.old.remove(token)?;
            g.young.insert(token.to_string(), o.clone());
            Some(o)
        });
        if let Some((s, t)) = hit {
            s.check_age(now_ms, ttl_ms)?;
            return Ok((s, t));
        }
        let s = Session::open(keys, token, now_ms, ttl_ms)?;
        let t: Arc<str> = Arc::from(tag(&s));
        let opened: Opened = (Arc::new(s), t);
        if let Ok(mut g) = self.gens.lock() {
            if g.young.len() >= self.capacity {
                g.old = std::mem::take(&mut g.young);
            }
            g.young.insert(token.to_string(), opened.clone());
        }
        Ok(opened)
    }

    pub fn len(&self) -> usize {
        self.gens.lock().map_or(0, |g| g.young.len() + g.old.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A short, keyed tag of a session for access logs (not the id itself).
pub fn session_tag(keys: &Keyring, sid: &[u8; 16]) -> String {
    let n = keys.synthetic_nonce(&[b"log", sid]);
    n.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample() -> Session {
        Session {
            sid: [5; 16],
            created_ms: 1_000_000,
            version: Version::V2025_06_18,
            principal: Some([9; 16]),
            backends: vec![
                BackendSession {
                    name: "alpha".into(),
                    version: Version::V2025_11_25,
                    session_id: Some("3f0c-uuid".into()),
                    caps: caps::TOOLS | caps::LOGGING,
                },
                BackendSession {
                    name: "beta".into(),
                    version: Version::V2025_03_26,
                    session_id: None,
                    caps: 0,
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let keys = Keyring::new(&[1; 32], &[]);
        let t = sample().seal(&keys, &[2; 24]);
        assert!(t.len() < 300, "compact: {}", t.len());
        assert_eq!(
            Session::open(&keys, &t, 1_000_500, 10_000).unwrap(),
            sample()
        );
        assert_eq!(
            Session::open(&keys, &t, 1_020_000, 10_000),
            Err(SessionError::Expired)
        );
        assert_eq!(
            Session::open(&keys, &t, 0, 10_000),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn forged_or_damaged_ids_are_invalid() {
        let keys = Keyring::new(&[1; 32], &[]);
        let t = sample().seal(&keys, &[2; 24]);
        let other = Keyring::new(&[3; 32], &[]);
        assert_eq!(
            Session::open(&other, &t, 1_000_500, 10_000),
            Err(SessionError::Invalid)
        );
        let mut flipped = t.clone().into_bytes();
        let mid = flipped.len() / 2;
        flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            Session::open(&keys, &flipped, 1_000_500, 10_000),
            Err(SessionError::Invalid)
        );
        assert_eq!(
            Session::open(&keys, &t[..t.len() - 1], 1_000_500, 10_000),
            Err(SessionError::Invalid)
        );
        assert_eq!(
            Session::open(&keys, "", 1_000_500, 10_000),
            Err(SessionError::Invalid)
        );
        // A token of another purpose is not a session.
        let cursor = keys.seal(Purpose::Cursor, &[2; 24], b"\x01");
        assert_eq!(
            Session::open(&keys, &cursor, 1_000_500, 10_000),
            Err(SessionError::Invalid)
        );
    }

    #[test]
    fn cache_remembers_checks_expiry_and_stays_bounded() {
        let keys = Keyring::new(&[1; 32], &[]);
        let cache = SessionCache::new(4);
        let t = sample().seal(&keys, &[2; 24]);
        let (s, tag) = cache
            .open(&keys, &t, 1_000_500, 10_000, |_| "tag".into())
            .unwrap();
        assert_eq!(*s, sample());
        assert_eq!(&*tag, "tag");
        // A hit still checks the age.
        assert_eq!(
            cache
                .open(&keys, &t, 1_020_000, 10_000, |_| unreachable!())
                .unwrap_err(),
            SessionError::Expired
        );
        assert!(cache
            .open(&keys, "forged", 1_000_500, 10_000, |_| String::new())
            .is_err());
        for i in 0..20u8 {
            let tok = sample().seal(&keys, &[i; 24]);
            cache
                .open(&keys, &tok, 1_000_500, 10_000, |_| String::new())
                .unwrap();
        }
        assert!(cache.len() <= 8, "two generations of 4: {}", cache.len());
    }

    #[test]
    fn decoder_rejects_trailing_and_short_input() {
        let mut w = Writer::default();
        w.u8(FORMAT)
            .bytes(&[0; 16])
            .u64(1)
            .u8(4)
            .u8(0)
            .u8(1)
            .str("a")
            .u8(4)
            .u8(1)
            .str("");
        assert!(Session::decode(&w.buf).is_some());
        let mut long = w.buf.clone();
        long.push(0);
        assert!(Session::decode(&long).is_none());
        for cut in 0..w.buf.len() {
            assert!(Session::decode(&w.buf[..cut]).is_none());
        }
    }
}
