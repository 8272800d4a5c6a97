//! The stateless revision 2026-07-28 ("modern" era), beside the session
//! path of the earlier revisions, on the same endpoint and configuration.
//!
//! A request's era is chosen from its `MCP-Protocol-Version` header
//! (`validate`). A 2026-07-28 request is checked against its headers, then
//! served without a session: the gateway answers `server/discover` itself
//! (`discover`), fans lists out and merges them with cache hints (`cache`),
//! routes calls by `Mcp-Name` (when nothing about the body needs changing,
//! before the body arrives), wraps a backend's MRTR `requestState` in a
//! sealed one of its own (`state`), and serves `subscriptions/listen`
//! (`listen`).
//!
//! Each backend is spoken to in its own era (`eras`): 2026-07-28 backends
//! statelessly, handshake-era backends through a session each worker holds
//! for 2026-07-28 clients; 2025-era clients reach 2026-07-28-only backends
//! with the request metadata added (`upstream`). What the backend answers is
//! rewritten for the client's era (`answer`). The orchestration, in the
//! terms of an [`Exchange`](super::Exchange), is in `client`.
//!
//! What cannot cross eras, and what the gateway does instead:
//! - a handshake-era backend's request to the client (sampling, elicitation,
//!   roots) during a 2026-07-28 client's call: the held session declared no
//!   client capabilities, so a conforming backend does not ask; if it does,
//!   the gateway answers the backend with an error (a `ping` with an empty
//!   result) and the client never sees the request;
//! - a 2026-07-28 backend's `input_required` result for a 2025-era client:
//!   such clients are declared to the backend with no capabilities, so a
//!   conforming backend answers `-32021` instead; if it asks anyway, the
//!   client gets a JSON-RPC error saying why;
//! - `subscriptions/listen` reaches 2026-07-28 backends only (a handshake-era
//!   backend's change notifications belong to its sessions' GET streams);
//! - log messages: 2026-07-28 clients get `notifications/message` only for
//!   requests that ask (`_meta` `logLevel`), at that level or above; 2025-era
//!   clients' `logging/setLevel` reaches handshake-era backends only.

pub mod answer;
pub mod cache;
pub(super) mod client;
pub mod discover;
pub mod eras;
pub mod listen;
pub mod state;
pub mod upstream;
pub mod validate;

use crate::protocol::modern::LogLevel;
use listen::ListenCtx;
use validate::{Envelope, ModernHeaders};

/// A 2026-07-28 request in flight.
#[derive(Debug, Clone, Default)]
pub struct ModernReq {
    pub headers: ModernHeaders,
    pub envelope: Envelope,
    /// The caller's scope: its principal digest (zero when anonymous). Task
    /// ids, cursors and request states minted for it open only for it.
    pub scope: [u8; 16],
    /// Routed from the headers alone: the body was never read.
    pub header_routed: bool,
    /// A `subscriptions/listen` stream being served.
    pub listen: Option<ListenCtx>,
    /// MRTR: wrap the backend's `requestState` in a sealed one.
    pub seal: Option<Seal>,
    /// When the request arrived.
    pub now_ms: u64,
    /// The id the request went to a held 2025-era session with (see
    /// `upstream::for_held_session`).
    pub held_id: Option<String>,
}

/// What a sealed `requestState` binds (see `state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub method: String,
    pub target: String,
    pub args: [u8; 16],
    pub backend: String,
}

/// How a routed answer is rewritten when the client's or the backend's era
/// is 2026-07-28 (`None` in a stream context: both handshake-era, as before).
#[derive(Debug, Clone, Default)]
pub struct StreamEra {
    pub client_modern: bool,
    pub backend_modern: bool,
    pub log_level: Option<LogLevel>,
    /// The request id is unknown (routed from headers): the first response
    /// in the stream is the answer.
    pub any_id: bool,
    pub scope: [u8; 16],
    pub seal: Option<Seal>,
    pub listen: Option<ListenCtx>,
    /// The answer differs per caller (authorization): `cacheScope` private.
    pub per_caller: bool,
    /// When the request started (request-state expiry).
    pub now_ms: u64,
    /// The request went to a held session with this id (raw JSON): the
    /// backend's answer carries it, the client gets its own back.
    pub held_id: Option<String>,
}
