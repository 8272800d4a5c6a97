//! What the gateway learned about each backend's protocol era, per worker.
//!
//! A backend is asked `server/discover` once (at 2026-07-28): an answer
//! naming 2026-07-28 makes it a modern backend, spoken to statelessly; any
//! other answer that is not a failure makes it a handshake-era backend, to
//! which 2026-07-28 clients go through a session this worker holds itself
//! (`initialize` + `notifications/initialized`, re-initialised when the
//! backend ends it). What was learned is kept until it ages out (modern
//! backends: their discover `ttlMs`, bounded) or the backend fails; a backend
//! that cannot be reached is not asked again for a few seconds.
//!
//! Nothing here is shared between workers or replicas: each learns on its
//! own (one discover, and for handshake-era backends one session, each).

use super::cache::CacheHint;
use crate::gateway::host::CallResponse;
use crate::gateway::merge;
use crate::protocol::jsonrpc::{self, Message, RawObject};
use crate::protocol::mcp::{Version, MODERN_VERSIONS};
use crate::protocol::modern::UNSUPPORTED_VERSION;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// How long an unreachable backend is left alone.
pub const UNREACHABLE_MS: u64 = 5_000;
/// Bounds on how long a modern backend's discover answer is trusted.
pub const MIN_REFRESH_MS: u64 = 60_000;
pub const MAX_REFRESH_MS: u64 = 3_600_000;

/// What a backend says about itself (its discover answer, or the
/// `initialize` answer of the session held for it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendInfo {
    pub capabilities: Map<String, Value>,
    pub instructions: Option<String>,
    pub server_name: Option<String>,
    /// The discover answer's own hints (handshake-era: none, so 0 / private).
    pub cache: Option<CacheHint>,
}

/// A session this worker holds with a handshake-era backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub session_id: Option<String>,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    /// Speaks 2026-07-28.
    pub modern: bool,
    /// Answers `initialize` (a modern backend that also offers a handshake version).
    pub legacy: bool,
    pub info: BackendInfo,
    pub learned_ms: u64,
    /// For handshake-era backends: the session held for 2026-07-28 clients.
    pub held: Option<Held>,
}

impl Learned {
    fn fresh(&self, now_ms: u64) -> bool {
        if !self.modern {
            // Refreshed on failure only: a new session per refresh would
            // leave the old one open on the backend.
            return true;
        }
        let ttl = self
            .info
            .cache
            .map_or(0, |c| c.ttl_ms)
            .clamp(MIN_REFRESH_MS, MAX_REFRESH_MS);
        now_ms.saturating_sub(self.learned_ms) < ttl
    }

    /// Usable by a 2026-07-28 client as it is.
    pub fn ready(&self) -> bool {
        self.modern || self.held.is_some()
    }
}

#[derive(Debug, Clone, Default)]
enum Slot {
    #[default]
    Unknown,
    Known(Arc<Learned>),
    Unreachable {
        until_ms: u64,
    },
}

/// The state of one backend, for a request at some instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Learned and not stale.
    Fresh(Arc<Learned>),
    /// Learned, but due for another discover (still usable meanwhile).
    Stale(Arc<Learned>),
    Unknown,
    /// Failed recently: left out without asking.
    Unreachable,
}

/// Per-worker knowledge, one slot per configured backend.
#[derive(Debug, Default)]
pub struct BackendEras {
    slots: Mutex<Vec<Slot>>,
}

impl BackendEras {
    pub fn new(backends: usize) -> BackendEras {
        BackendEras {
            slots: Mutex::new(vec![Slot::Unknown; backends]),
        }
    }

    pub fn status(&self, i: usize, now_ms: u64) -> Status {
        let Ok(slots) = self.slots.lock() else {
            return Status::Unknown;
        };
        match slots.get(i) {
            Some(Slot::Known(l)) if l.fresh(now_ms) => Status::Fresh(Arc::clone(l)),
            Some(Slot::Known(l)) => Status::Stale(Arc::clone(l)),
            Some(Slot::Unreachable { until_ms }) if *until_ms > now_ms => Status::Unreachable,
            _ => Status::Unknown,
        }
    }

    /// The learned entry, fresh or not.
    pub fn learned(&self, i: usize) -> Option<Arc<Learned>> {
        match self.slots.lock().ok()?.get(i)? {
            Slot::Known(l) => Some(Arc::clone(l)),
            _ => None,
        }
    }

    fn set(&self, i: usize, slot: Slot) {
        if let Ok(mut slots) = self.slots.lock() {
            if let Some(s) = slots.get_mut(i) {
                *s = slot;
            }
        }
    }

    pub fn set_learned(&self, i: usize, learned: Learned) {
        self.set(i, Slot::Known(Arc::new(learned)));
    }

    pub fn set_unreachable(&self, i: usize, now_ms: u64) {
        self.set(
            i,
            Slot::Unreachable {
                until_ms: now_ms.saturating_add(UNREACHABLE_MS),
            },
        );
    }

    /// Forget a backend after a failure that may mean it changed (ended the
    /// held session, refused the version): it is asked again next time.
    pub fn forget(&self, i: usize) {
        self.set(i, Slot::Unknown);
    }
}

/// What a `server/discover` answer says about a backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Speaks 2026-07-28 (`legacy_too`: also offers a handshake version).
    Modern { info: BackendInfo, legacy_too: bool },
    /// Answered, but not as a 2026-07-28 server.
    Legacy,
    /// No usable answer (down, 5xx, refused credentials, garbage): why.
    Unreachable(String),
}

/// The gateway's discover probe body.
pub fn discover_body(server_name: &str) -> Vec<u8> {
    let params = format!(
        "{{\"_meta\":{{\"{}\":\"{}\",\"{}\":{{}},\"{}\":{{\"name\":{},\"version\":\"{}\"}}}}}}",
        crate::protocol::modern::meta::PROTOCOL_VERSION,
        MODERN_VERSIONS[0],
        crate::protocol::modern::meta::CLIENT_CAPABILITIES,
        crate::protocol::modern::meta::CLIENT_INFO,
        jsonrpc::json_string(server_name),
        env!("CARGO_PKG_VERSION"),
    );
    jsonrpc::request_json("\"mcpgw-discover\"", "server/discover", Some(&params)).into_bytes()
}

/// Classify a backend's answer to the discover probe.
pub fn classify_discover(resp: &CallResponse, max_bytes: usize) -> Probe {
    match resp.status {
        0 => return Probe::Unreachable("no answer".into()),
        401 | 403 => {
            return Probe::Unreachable(format!(
                "HTTP {} (check the credentials configured for it)",
                resp.status
            ))
        }
        s if s >= 500 => return Probe::Unreachable(format!("HTTP {s}")),
        _ => {}
    }
    if !(200..300).contains(&resp.status) {
        // A handshake-era server refuses an unknown method or version its
        // own way (400, 404, 405 with or without a body). A modern server
        // naming the versions it serves without 2026-07-28 is legacy too.
        return match error_of(resp) {
            Some((UNSUPPORTED_VERSION, data)) if names_modern(data.as_deref()) => {
                Probe::Unreachable("refused 2026-07-28 while listing it as supported".into())
            }
            _ => Probe::Legacy,
        };
    }
    let text = match merge::response_message(resp, max_bytes) {
        Ok(t) => t,
        Err(e) => return Probe::Unreachable(e),
    };
    let Ok(msg) = jsonrpc::parse(text.as_bytes()) else {
        return Probe::Unreachable("answered with something that is not JSON-RPC".into());
    };
    let Some(result) = msg.result else {
        // A JSON-RPC error (method not found, ...): not a modern server.
        return Probe::Legacy;
    };
    let Ok(v) = serde_json::from_str::<Value>(result.get()) else {
        return Probe::Legacy;
    };
    let versions: Vec<&str> = v
        .get("supportedVersions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !versions.iter().any(|s| MODERN_VERSIONS.contains(s)) {
        return Probe::Legacy;
    }
    let legacy_too = versions
        .iter()
        .any(|s| Version::parse(s).is_some_and(|v| !v.is_modern()));
    Probe::Modern {
        info: info_of_discover(&v, result.get()),
        legacy_too,
    }
}

fn info_of_discover(v: &Value, text: &str) -> BackendInfo {
    let server_name = v
        .get("_meta")
        .and_then(|m| m.get(crate::protocol::modern::meta::SERVER_INFO))
        .or_else(|| v.get("serverInfo"))
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    BackendInfo {
        capabilities: v
            .get("capabilities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        instructions: v
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
        server_name,
        cache: Some(CacheHint::of_result(text)),
    }
}

/// The `(code, data)` of a JSON-RPC error in a non-2xx JSON body.
fn error_of(resp: &CallResponse) -> Option<(i64, Option<String>)> {
    let msg: Message<'_> = jsonrpc::parse(&resp.body).ok()?;
    let err = RawObject::parse(msg.error?).ok()?;
    let code = err.get("code")?.get().parse::<i64>().ok()?;
    Some((code, err.get("data").map(|d| d.get().to_string())))
}

fn names_modern(data: Option<&str>) -> bool {
    data.and_then(|d| serde_json::from_str::<Value>(d).ok())
        .and_then(|d| {
            d.get("supported")?.as_array().map(|a| {
                a.iter()
                    .any(|s| s.as_str().is_some_and(|s| MODERN_VERSIONS.contains(&s)))
            })
        })
        .unwrap_or(false)
}

/// The `initialize` a worker sends to hold a session with a handshake-era
/// backend for 2026-07-28 clients. It declares no client capabilities: the
/// session is shared by every such client, which answer input requests
/// only through MRTR, never on a session's streams.
pub fn initialize_body(server_name: &str) -> Vec<u8> {
    let params = format!(
        "{{\"protocolVersion\":\"{}\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":{},\"version\":\"{}\"}}}}",
        Version::LATEST.as_str(),
        jsonrpc::json_string(server_name),
        env!("CARGO_PKG_VERSION"),
    );
    jsonrpc::request_json("\"mcpgw-init\"", "initialize", Some(&params)).into_bytes()
}

/// The held session and what the backend said, from its `initialize` answer.
pub fn classify_initialize(
    resp: &CallResponse,
    max_bytes: usize,
) -> Result<(Held, BackendInfo), String> {
    let text = merge::response_message(resp, max_bytes)?;
    let result = merge::result_of(&text)?;
    let init = merge::parse_initialize(result)?;
    let session_id = resp
        .header(crate::protocol::http::SESSION_ID)
        .map(|s| s.trim().to_string());
    if session_id
        .as_deref()
        .is_some_and(|s| !crate::protocol::http::is_valid_session_id(s))
    {
        return Err("invalid Mcp-Session-Id".into());
    }
    Ok((
        Held {
            session_id,
            version: init.version,
        },
        BackendInfo {
            capabilities: init.capabilities,
            instructions: init.instructions,
            server_name: init.server_name,
            cache: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testing::{json_response, sse_response};
    use serde_json::json;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn status(code: u16, body: &str) -> CallResponse {
        let mut r = json_response(body);
        r.status = code;
        r
    }

    #[test]
    fn discover_answers_classify_the_backend() {
        let modern = json!({"jsonrpc":"2.0","id":"mcpgw-discover","result":{
            "resultType":"complete","supportedVersions":["2026-07-28","2025-11-25"],
            "capabilities":{"tools":{"listChanged":true}},"instructions":"Use me.",
            "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"py","version":"1"}},
            "ttlMs":30000,"cacheScope":"public"}});
        let Probe::Modern { info, legacy_too } =
            classify_discover(&json_response(&modern.to_string()), 1 << 20)
        else {
            panic!()
        };
        assert!(legacy_too);
        assert_eq!(info.server_name.as_deref(), Some("py"));
        assert_eq!(info.instructions.as_deref(), Some("Use me."));
        assert_eq!(
            info.cache,
            Some(CacheHint {
                ttl_ms: 30_000,
                private: false
            })
        );
        assert_eq!(info.capabilities["tools"]["listChanged"], true);
        // Over SSE too.
        let sse = format!("event: message\ndata: {modern}\n\n");
        assert!(matches!(
            classify_discover(&sse_response(&sse), 1 << 20),
            Probe::Modern { .. }
        ));
        // Modern-only.
        let only = json!({"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}});
        assert!(matches!(
            classify_discover(&json_response(&only.to_string()), 1 << 20),
            Probe::Modern {
                legacy_too: false,
                ..
            }
        ));
        // Handshake-era servers, however they refuse.
        for (code, body) in [
            (
                400,
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#,
            ),
            (404, ""),
            (405, "Method Not Allowed"),
            (
                400,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2025-06-18"],"requested":"2026-07-28"}}}"#,
            ),
            (
                200,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#,
            ),
            (
                200,
                r#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"],"capabilities":{}}}"#,
            ),
        ] {
            assert_eq!(
                classify_discover(&status(code, body), 1 << 20),
                Probe::Legacy,
                "{code} {body}"
            );
        }
        for (code, body) in [(0, ""), (502, "upstream"), (401, ""), (200, "<html>")] {
            assert!(
                matches!(
                    classify_discover(&status(code, body), 1 << 20),
                    Probe::Unreachable(_)
                ),
                "{code} {body}"
            );
        }
    }

    #[test]
    fn initialize_answers_give_the_held_session() {
        let mut r = json_response(
            r#"{"jsonrpc":"2.0","id":"mcpgw-init","result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"old"}}}"#,
        );
        r.headers.push(("mcp-session-id".into(), "s-1".into()));
        let (held, info) = classify_initialize(&r, 1 << 20).unwrap();
        assert_eq!(
            held,
            Held {
                session_id: Some("s-1".into()),
                version: Version::V2025_06_18
            }
        );
        assert_eq!(info.server_name.as_deref(), Some("old"));
        assert!(classify_initialize(&status(500, ""), 1 << 20).is_err());
        let sent: Value = serde_json::from_slice(&initialize_body("mcpgw")).unwrap();
        assert_eq!(
            sent["params"]["capabilities"],
            json!({}),
            "no client capabilities are promised"
        );
        let probe: Value = serde_json::from_slice(&discover_body("mcpgw")).unwrap();
        assert_eq!(
            probe["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
    }

    #[test]
    fn cache_ages_and_forgets() {
        let eras = BackendEras::new(2);
        assert_eq!(eras.status(0, 0), Status::Unknown);
        let modern = Learned {
            modern: true,
            legacy: false,
            info: BackendInfo {
                cache: Some(CacheHint {
                    ttl_ms: 120_000,
                    private: false,
                }),
                ..Default::default()
            },
            learned_ms: 1_000,
            held: None,
        };
        eras.set_learned(0, modern);
        assert!(matches!(eras.status(0, 100_000), Status::Fresh(_)));
        assert!(matches!(eras.status(0, 121_001), Status::Stale(_)));
        eras.set_learned(
            1,
            Learned {
                modern: false,
                legacy: true,
                info: BackendInfo::default(),
                learned_ms: 0,
                held: Some(Held {
                    session_id: None,
                    version: Version::V2025_03_26,
                }),
            },
        );
        assert!(
            matches!(eras.status(1, u64::MAX / 2), Status::Fresh(_)),
            "held sessions do not age"
        );
        eras.set_unreachable(1, 10_000);
        assert_eq!(eras.status(1, 14_000), Status::Unreachable);
        assert_eq!(eras.status(1, 15_001), Status::Unknown);
        eras.forget(0);
        assert_eq!(eras.status(0, 2_000), Status::Unknown);
        assert_eq!(
            eras.status(7, 0),
            Status::Unknown,
            "out of range is harmless"
        );
    }
}
