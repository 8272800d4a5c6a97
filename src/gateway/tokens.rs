//! Ids the gateway mints in place of a backend's, so that whatever the client
//! sends back finds its way to the right backend without server-side state:
//!
//! - list cursors: the pending cursor of every backend that has more pages;
//! - server-to-client request ids: backend + the original id, exactly (a
//!   number stays a number, a string a string);
//! - SSE event ids: backend + the original event id, for `Last-Event-ID`;
//! - event ids of merged streams (`fanin`): the last event id of every
//!   backend, so one `Last-Event-ID` resumes each from its own position.
//!
//! Each is sealed (see `crypto`) and bound to the session it was minted in,
//! so a client cannot forge one, nor carry one into another session.

use super::crypto::{Keyring, Purpose, Reader, Writer, NONCE_LEN};
use crate::protocol::mcp::ListKind;

const FORMAT: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub sid: [u8; 16],
    pub kind: u8,
    /// (backend name, that backend's cursor)
    pub pending: Vec<(String, String)>,
}

impl ListCursor {
    pub fn new(sid: [u8; 16], kind: ListKind, pending: Vec<(String, String)>) -> Self {
        ListCursor {
            sid,
            kind: kind.to_byte(),
            pending,
        }
    }

    pub fn seal(&self, keys: &Keyring, nonce: &[u8; NONCE_LEN]) -> String {
        let mut w = Writer::default();
        w.u8(FORMAT).bytes(&self.sid).u8(self.kind);
        w.u8(u8::try_from(self.pending.len()).unwrap_or(u8::MAX));
        for (b, c) in self.pending.iter().take(usize::from(u8::MAX)) {
            w.str(b).str(c);
        }
        keys.seal(Purpose::Cursor, nonce, &w.buf)
    }

    /// Open a cursor minted for `kind` in session `sid`.
    pub fn open(keys: &Keyring, token: &str, sid: &[u8; 16], kind: ListKind) -> Option<ListCursor> {
        let plain = keys.open(Purpose::Cursor, token)?;
        let mut r = Reader::new(&plain);
        if r.u8()? != FORMAT {
            return None;
        }
        let c_sid = r.array::<16>()?;
        let c_kind = r.u8()?;
        if &c_sid != sid || c_kind != kind.to_byte() {
            return None;
        }
        let n = r.u8()?;
        let mut pending = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            pending.push((r.str()?.to_string(), r.str()?.to_string()));
        }
        r.is_empty().then_some(ListCursor {
            sid: c_sid,
            kind: c_kind,
            pending,
        })
    }
}

/// A backend-side identifier (request id or event id) wrapped for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub sid: [u8; 16],
    pub backend: String,
    /// The backend's identifier: raw JSON for request ids, text for event ids.
    pub original: String,
}

/// Client-visible request ids carry this prefix, which keeps them
/// recognisable in logs and cheap to tell apart from client-chosen ids.
pub const REQUEST_ID_PREFIX: &str = "mcpgw.";

impl Wrapped {
    fn seal(&self, keys: &Keyring, purpose: Purpose, nonce: &[u8; NONCE_LEN]) -> String {
        let mut w = Writer::default();
        w.u8(FORMAT)
            .bytes(&self.sid)
            .str(&self.backend)
            .str(&self.original);
        keys.seal(purpose, nonce, &w.buf)
    }

    fn open(keys: &Keyring, purpose: Purpose, token: &str, sid: &[u8; 16]) -> Option<Wrapped> {
        let plain = keys.open(purpose, token)?;
        let mut r = Reader::new(&plain);
        if r.u8()? != FORMAT {
            return None;
        }
        let w_sid = r.array::<16>()?;
        let backend = r.str()?.to_string();
        let original = r.str()?.to_string();
        (r.is_empty() && &w_sid == sid).then_some(Wrapped {
            sid: w_sid,
            backend,
            original,
        })
    }

    /// The string id given to the client for a server-to-client request.
    pub fn seal_request_id(&self, keys: &Keyring, nonce: &[u8; NONCE_LEN]) -> String {
        let mut s = String::from(REQUEST_ID_PREFIX);
        s.push_str(&self.seal(keys, Purpose::RequestId, nonce));
        s
    }

    pub fn open_request_id(keys: &Keyring, id: &str, sid: &[u8; 16]) -> Option<Wrapped> {
        Self::open(
            keys,
            Purpose::RequestId,
            id.strip_prefix(REQUEST_ID_PREFIX)?,
            sid,
        )
    }

    /// Task ids are plain strings to the client (no prefix: some clients
    /// show them), sealed deterministically by the caller's nonce.
    pub fn seal_task_id(&self, keys: &Keyring, nonce: &[u8; NONCE_LEN]) -> String {
        self.seal(keys, Purpose::TaskId, nonce)
    }

    pub fn open_task_id(keys: &Keyring, id: &str, sid: &[u8; 16]) -> Option<Wrapped> {
        Self::open(keys, Purpose::TaskId, id, sid)
    }

    pub fn seal_event_id(&self, keys: &Keyring, nonce: &[u8; NONCE_LEN]) -> String {
        self.seal(keys, Purpose::EventId, nonce)
    }

    pub fn open_event_id(keys: &Keyring, id: &str, sid: &[u8; 16]) -> Option<Wrapped> {
        Self::open(keys, Purpose::EventId, id, sid)
    }
}

/// Merged-stream cursors are event ids too, told apart by their format.
const CURSOR_FORMAT: u8 = 2;

/// The event id of a merged stream: every backend's last event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCursor {
    pub sid: [u8; 16],
    /// (backend name, that backend's last event id)
    pub positions: Vec<(String, String)>,
}

impl StreamCursor {
    pub fn seal(&self, keys: &Keyring, nonce: &[u8; NONCE_LEN]) -> String {
        let mut w = Writer::default();
        w.u8(CURSOR_FORMAT).bytes(&self.sid);
        w.u8(u8::try_from(self.positions.len()).unwrap_or(u8::MAX));
        for (b, id) in self.positions.iter().take(usize::from(u8::MAX)) {
            w.str(b).str(id);
        }
        keys.seal(Purpose::EventId, nonce, &w.buf)
    }

    /// Open a cursor minted in session `sid`.
    pub fn open(keys: &Keyring, token: &str, sid: &[u8; 16]) -> Option<StreamCursor> {
        let plain = keys.open(Purpose::EventId, token)?;
        let mut r = Reader::new(&plain);
        if r.u8()? != CURSOR_FORMAT || &r.array::<16>()? != sid {
            return None;
        }
        let n = r.u8()?;
        let mut positions = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            positions.push((r.str()?.to_string(), r.str()?.to_string()));
        }
        r.is_empty().then_some(StreamCursor {
            sid: *sid,
            positions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn cursor_binding() {
        let keys = Keyring::new(&[1; 32], &[]);
        let c = ListCursor::new([4; 16], ListKind::Tools, vec![("a".into(), "page2".into())]);
        let t = c.seal(&keys, &[0; 24]);
        assert_eq!(
            ListCursor::open(&keys, &t, &[4; 16], ListKind::Tools),
            Some(c)
        );
        assert_eq!(
            ListCursor::open(&keys, &t, &[5; 16], ListKind::Tools),
            None,
            "other session"
        );
        assert_eq!(
            ListCursor::open(&keys, &t, &[4; 16], ListKind::Prompts),
            None,
            "other list"
        );
        assert_eq!(
            ListCursor::open(&keys, "garbage", &[4; 16], ListKind::Tools),
            None
        );
    }

    #[test]
    fn stream_cursors_are_bound_and_distinct_from_event_ids() {
        let keys = Keyring::new(&[1; 32], &[]);
        let c = StreamCursor {
            sid: [4; 16],
            positions: vec![("a".into(), "e7".into()), ("b".into(), "0".into())],
        };
        let t = c.seal(&keys, &[2; 24]);
        assert_eq!(StreamCursor::open(&keys, &t, &[4; 16]), Some(c));
        assert_eq!(
            StreamCursor::open(&keys, &t, &[5; 16]),
            None,
            "other session"
        );
        assert_eq!(Wrapped::open_event_id(&keys, &t, &[4; 16]), None);
        let single = Wrapped {
            sid: [4; 16],
            backend: "a".into(),
            original: "e7".into(),
        }
        .seal_event_id(&keys, &[3; 24]);
        assert_eq!(StreamCursor::open(&keys, &single, &[4; 16]), None);
        assert_eq!(StreamCursor::open(&keys, "garbage", &[4; 16]), None);
    }

    #[test]
    fn request_ids_restore_exactly() {
        let keys = Keyring::new(&[1; 32], &[]);
        for original in ["0", "\"0\"", "-12", "\"abc\\\"d\""] {
            let w = Wrapped {
                sid: [7; 16],
                backend: "alpha".into(),
                original: original.into(),
            };
            let id = w.seal_request_id(&keys, &[3; 24]);
            assert!(id.starts_with(REQUEST_ID_PREFIX));
            assert_eq!(
                Wrapped::open_request_id(&keys, &id, &[7; 16]),
                Some(w.clone())
            );
            assert_eq!(Wrapped::open_request_id(&keys, &id, &[8; 16]), None);
            // Not interchangeable with event ids.
            assert_eq!(
                Wrapped::open_event_id(&keys, &id[REQUEST_ID_PREFIX.len()..], &[7; 16]),
                None
            );
        }
        assert_eq!(Wrapped::open_request_id(&keys, "42", &[7; 16]), None);
    }
}
