//! Rewriting what a backend sends back to the client, message by message:
//! in a buffered JSON answer or, incrementally, in an SSE stream.
//!
//! - server-to-client requests get a sealed id (the client's answer is routed
//!   back by it); a server's `notifications/cancelled` for such a request
//!   names the same sealed id (the seal is deterministic for this reason);
//! - SSE event ids get sealed (resumption with `Last-Event-ID` finds the
//!   backend and its own event id);
//! - resource URIs in results and notifications get the backend namespace.
//!
//! Messages that need none of this pass through byte for byte.

use super::config::Backend;
use super::host::{Host, Level};
use super::instance::Gateway;
use super::modern::answer::{self, Outcome, Refused};
use super::modern::StreamEra;
use super::naming::Naming;
use super::tokens::Wrapped;
use crate::protocol::jsonrpc::{self, json_string, Kind, RawObject};
use crate::protocol::sse::{self, Item};
use serde_json::Value;
use std::sync::Arc;

/// Whether (and how) a backend's message answered the client's request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub seen: bool,
    pub error: bool,
}

/// Who the stream belongs to.
#[derive(Debug, Clone)]
pub struct StreamCtx {
    pub backend: usize,
    pub sid: [u8; 16],
    /// The client's request method and raw id, when the stream answers one.
    pub method: Option<String>,
    pub request_id: Option<String>,
    /// Set when the client or the backend speaks 2026-07-28 (see `modern::answer`).
    pub era: Option<Arc<StreamEra>>,
}

impl StreamCtx {
    fn backend<'g>(&self, gw: &'g Gateway) -> Option<&'g Backend> {
        gw.cfg.backends.get(self.backend)
    }
}

/// Rewrite one JSON-RPC message from the backend. `Ok(None)`: unchanged.
/// `answer` records whether the message answered the client's request, and how.
pub fn rewrite_message(
    gw: &Gateway,
    ctx: &StreamCtx,
    text: &str,
    answer: &mut Answer,
) -> Option<String> {
    match &ctx.era {
        None => rewrite_legacy(gw, ctx, text, answer),
        Some(era) => match answer::rewrite(gw, ctx, era, text, answer, &mut Vec::new()) {
            Outcome::Replace(new) => Some(new),
            Outcome::Keep | Outcome::Drop => None,
        },
    }
}

/// [`rewrite_message`] between handshake-era peers.
pub(super) fn rewrite_legacy(
    gw: &Gateway,
    ctx: &StreamCtx,
    text: &str,
    answer: &mut Answer,
) -> Option<String> {
    let Ok(msg) = jsonrpc::parse(text.as_bytes()) else {
        return None;
    };
    let backend = ctx.backend(gw)?;
    match msg.kind {
        Kind::Request => {
            let id = msg.id?;
            let token = wrap_request_id(gw, ctx, backend, id.get());
            let obj = RawObject::parse_str(text.trim()).ok()?;
            Some(obj.write_with(&[("id", &json_string(&token))]))
        }
        Kind::Notification => {
            let method = msg.method.as_deref()?;
            match method {
                "notifications/resources/updated" => {
                    let params = msg.params?;
                    let mut p: Value = serde_json::from_str(params.get()).ok()?;
                    let uri = p.get("uri")?.as_str()?;
                    let exposed = Naming::new(&gw.cfg).expose_uri(backend, uri).into_owned();
                    if let Some(slot) = p.get_mut("uri") {
                        *slot = Value::String(exposed);
                    }
                    let obj = RawObject::parse_str(text.trim()).ok()?;
                    Some(obj.write_with(&[("params", &p.to_string())]))
                }
                "notifications/tasks/status" => {
                    let params = msg.params?;
                    let mut p: Value = serde_json::from_str(params.get()).ok()?;
                    if !seal_task_at(gw, &ctx.sid, backend, Some(&mut p)) {
                        return None;
                    }
                    let obj = RawObject::parse_str(text.trim()).ok()?;
                    Some(obj.write_with(&[("params", &p.to_string())]))
                }
                "notifications/cancelled" => {
                    // The backend cancels a request it sent to the client: name it
                    // by the id the client knows.
                    let params = msg.params?;
                    let pobj = RawObject::parse(params).ok()?;
                    let rid = pobj.get("requestId")?;
                    let token = wrap_request_id(gw, ctx, backend, rid.get());
                    let new_params = pobj.write_with(&[("requestId", &json_string(&token))]);
                    let obj = RawObject::parse_str(text.trim()).ok()?;
                    Some(obj.write_with(&[("params", &new_params)]))
                }
                _ => None,
            }
        }
        Kind::Response | Kind::Error => {
            let is_answer = match (&ctx.request_id, msg.id) {
                (Some(want), Some(id)) => want == id.get(),
                _ => false,
            };
            if !is_answer {
                return None;
            }
            answer.seen = true;
            answer.error = msg.kind == Kind::Error;
            let result = msg.result?;
            let method = ctx.method.as_deref()?;
            let new_result = rewrite_result(gw, &ctx.sid, backend, method, result.get())?;
            let obj = RawObject::parse_str(text.trim()).ok()?;
            Some(obj.write_with(&[("result", &new_result)]))
        }
    }
}

/// What a backend's whole JSON body is, for the client's request `want`
/// (its raw JSON id): the answer the gateway may forward, or the reason it
/// may not. A backend's garbage, empty body or another request's answer must
/// never reach the client as if it were the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A response or error with the client's id.
    Answer { error: bool },
    /// A JSON-RPC error with a null id (the backend could not read the
    /// request's id): the client's id is put in.
    NullIdError(String),
    /// Not the answer, and why (for the log and the client's error).
    Not(&'static str),
}

pub fn judge_answer(body: &[u8], want: Option<&str>) -> Verdict {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Not("an empty body");
    }
    let Ok(msg) = jsonrpc::parse(body) else {
        return Verdict::Not("a body that is not JSON-RPC");
    };
    if !matches!(msg.kind, Kind::Response | Kind::Error) {
        return Verdict::Not("a JSON-RPC request or notification instead of the answer");
    }
    let id = msg.id.map(|i| i.get());
    if id.is_some() && id == want {
        return Verdict::Answer {
            error: msg.kind == Kind::Error,
        };
    }
    if msg.kind == Kind::Error && id.is_none_or(|i| i == "null") {
        let fixed = std::str::from_utf8(body)
            .ok()
            .and_then(|t| RawObject::parse_str(t.trim_start_matches('\u{feff}').trim()).ok())
            .map(|o| o.write_with(&[("id", want.unwrap_or("null"))]));
        if let Some(f) = fixed {
            return Verdict::NullIdError(f);
        }
    }
    Verdict::Not("the answer to another request (its id differs)")
}

/// The sealed id for a backend's request id. Deterministic, so a later
/// `notifications/cancelled` from the backend maps to the same id.
pub fn wrap_request_id(gw: &Gateway, ctx: &StreamCtx, backend: &Backend, original: &str) -> String {
    let w = Wrapped {
        sid: ctx.sid,
        backend: backend.name.clone(),
        original: original.to_string(),
    };
    let nonce =
        gw.cfg
            .keys
            .synthetic_nonce(&[&ctx.sid, backend.name.as_bytes(), original.as_bytes()]);
    w.seal_request_id(&gw.cfg.keys, &nonce)
}

/// The sealed id for a backend's task id (2025-11-25 tasks). Deterministic:
/// every `tasks/get` of one task must show the client the same id.
pub fn wrap_task_id(gw: &Gateway, sid: &[u8; 16], backend: &Backend, original: &str) -> String {
    let w = Wrapped {
        sid: *sid,
        backend: backend.name.clone(),
        original: original.to_string(),
    };
    let nonce =
        gw.cfg
            .keys
            .synthetic_nonce(&[b"task", sid, backend.name.as_bytes(), original.as_bytes()]);
    w.seal_task_id(&gw.cfg.keys, &nonce)
}

const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Seal the task id at `v[path..]["taskId"]`, if there is one.
fn seal_task_at(gw: &Gateway, sid: &[u8; 16], backend: &Backend, task: Option<&mut Value>) -> bool {
    let Some(slot) = task.and_then(|t| t.get_mut("taskId")) else {
        return false;
    };
    let Some(id) = slot.as_str() else {
        return false;
    };
    *slot = Value::String(wrap_task_id(gw, sid, backend, id));
    true
}

/// Rewrite what a result carries for the client: resource URIs get the
/// backend namespace, task ids get sealed. `None` when nothing changes.
pub fn rewrite_result(
    gw: &Gateway,
    sid: &[u8; 16],
    backend: &Backend,
    method: &str,
    result: &str,
) -> Option<String> {
    let naming = Naming::new(&gw.cfg);
    let uris = !naming.expose_uri(backend, "").is_empty() && result.contains("\"uri\"");
    let tasks = result.contains("\"taskId\"");
    if !uris && !tasks {
        return None;
    }
    let mut v: Value = serde_json::from_str(result).ok()?;
    let mut changed = false;
    if tasks {
        // 2026-07-28 tasks (an extension): the created task is the result itself.
        let task_result = v.get("resultType").and_then(Value::as_str) == Some("task");
        changed |= match method {
            "tools/call" if task_result => seal_task_at(gw, sid, backend, Some(&mut v)),
            "tools/call" => seal_task_at(gw, sid, backend, v.get_mut("task")),
            "tasks/get" | "tasks/cancel" | "tasks/update" => {
                seal_task_at(gw, sid, backend, Some(&mut v))
            }
            "tasks/result" => seal_task_at(
                gw,
                sid,
                backend,
                v.get_mut("_meta").and_then(|m| m.get_mut(RELATED_TASK)),
            ),
            _ => false,
        };
    }
    if uris {
        let fix = |uri: &mut Value| expose_uri_value(&naming, backend, uri);
        let fix_content = |c: &mut Value| expose_content_uris(&naming, backend, c);
        match method {
            "tools/call" | "tasks/result" => {
                if let Some(items) = v.get_mut("content").and_then(Value::as_array_mut) {
                    items.iter_mut().for_each(fix_content);
                    changed = true;
                }
            }
            "prompts/get" => {
                if let Some(msgs) = v.get_mut("messages").and_then(Value::as_array_mut) {
                    for m in msgs {
                        if let Some(c) = m.get_mut("content") {
                            fix_content(c);
                        }
                    }
                    changed = true;
                }
            }
            "resources/read" => {
                if let Some(items) = v.get_mut("contents").and_then(Value::as_array_mut) {
                    for c in items {
                        if let Some(u) = c.get_mut("uri") {
                            fix(u);
                        }
                    }
                    changed = true;
                }
            }
            _ => {}
        }
    }
    changed.then(|| v.to_string())
}

fn expose_uri_value(naming: &Naming<'_>, backend: &Backend, uri: &mut Value) {
    if let Some(s) = uri.as_str() {
        *uri = Value::String(naming.expose_uri(backend, s).into_owned());
    }
}

/// A content block's resource URI (`resource_link`, embedded `resource`)
/// in the backend's namespace.
pub fn expose_content_uris(naming: &Naming<'_>, backend: &Backend, c: &mut Value) {
    match c.get("type").and_then(Value::as_str) {
        Some("resource_link") => {
            if let Some(u) = c.get_mut("uri") {
                expose_uri_value(naming, backend, u);
            }
        }
        Some("resource") => {
            if let Some(u) = c.get_mut("resource").and_then(|r| r.get_mut("uri")) {
                expose_uri_value(naming, backend, u);
            }
        }
        _ => {}
    }
}

/// Incremental SSE rewriting for one routed stream.
#[derive(Debug)]
pub struct SseRewrite {
    parser: sse::Parser,
    items: Vec<Item>,
    /// The client's request has been answered in this stream.
    pub answer: Answer,
    /// The backend gave event ids, so the client can resume after a drop.
    pub resumable: bool,
    /// Requests of the backend the client cannot receive (see `modern::answer`).
    pub refused: Vec<Refused>,
}

impl SseRewrite {
    pub fn new(max_event: usize) -> Self {
        SseRewrite {
            parser: sse::Parser::new(max_event),
            items: Vec::new(),
            answer: Answer::default(),
            resumable: false,
            refused: Vec::new(),
        }
    }

    /// Rewrite a chunk; complete events go to `out`, partial ones wait. Event
    /// ids are sealed with the backend (resumption finds it again).
    pub fn feed(
        &mut self,
        gw: &Gateway,
        host: &dyn Host,
        ctx: &StreamCtx,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), sse::SseError> {
        let name = ctx.backend(gw).map(|b| b.name.clone()).unwrap_or_default();
        self.feed_with(gw, ctx, chunk, out, &mut |id| {
            if id.is_empty() {
                return id;
            }
            let w = Wrapped {
                sid: ctx.sid,
                backend: name.clone(),
                original: id,
            };
            let mut nonce = [0u8; 24];
            if host.random(&mut nonce).is_err() {
                host.log(
                    Level::Error,
                    "no randomness for an event id; dropping the id",
                );
                return String::new();
            }
            w.seal_event_id(&gw.cfg.keys, &nonce)
        })
    }

    /// [`SseRewrite::feed`], with `event_id` giving the id the client sees
    /// for each event id of the backend (an empty one included).
    pub fn feed_with(
        &mut self,
        gw: &Gateway,
        ctx: &StreamCtx,
        chunk: &[u8],
        out: &mut Vec<u8>,
        event_id: &mut dyn FnMut(String) -> String,
    ) -> Result<(), sse::SseError> {
        self.parser.feed(chunk, &mut self.items)?;
        if ctx.backend(gw).is_none() {
            self.items.clear();
            return Ok(());
        }
        let modern_client = ctx.era.as_ref().is_some_and(|e| e.client_modern);
        for mut item in self.items.drain(..) {
            if let Item::Event(ev) = &mut item {
                if modern_client {
                    // 2026-07-28 streams are not resumable: no event ids, no
                    // priming events, no reconnection delay.
                    ev.id = None;
                    ev.retry = None;
                    if ev.data.as_deref().is_none_or(str::is_empty) {
                        continue;
                    }
                }
                if let Some(id) = ev.id.take() {
                    self.resumable = true;
                    ev.id = Some(event_id(id));
                }
                if ev.event_type() == "message" {
                    if let Some(data) = ev.data.as_deref() {
                        let outcome = match &ctx.era {
                            None => rewrite_legacy(gw, ctx, data, &mut self.answer)
                                .map_or(Outcome::Keep, Outcome::Replace),
                            Some(era) => answer::rewrite(
                                gw,
                                ctx,
                                era,
                                data,
                                &mut self.answer,
                                &mut self.refused,
                            ),
                        };
                        match outcome {
                            Outcome::Keep => {}
                            Outcome::Replace(new) => ev.data = Some(new),
                            Outcome::Drop => continue,
                        }
                    }
                }
            }
            item.write(out);
        }
        Ok(())
    }

    /// End of the backend stream. Returns whether an event was cut off.
    pub fn finish(&mut self) -> bool {
        self.parser.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testing::{gateway, FakeHost};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ctx(method: &str) -> StreamCtx {
        StreamCtx {
            backend: 0,
            sid: [3; 16],
            method: Some(method.into()),
            request_id: Some("7".into()),
            era: None,
        }
    }

    #[test]
    fn sse_rewrite_any_chunking() {
        let gw = gateway(r#"[{"name":"a","cluster":"a"},{"name":"b","cluster":"b"}]"#);
        let host = FakeHost::default();
        let stream = concat!(
            "id: e1\nretry: 1000\ndata:\n\n",
            ": ping\n\n",
            "id: e2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n",
            "id: e3\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n",
            "id: e4\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"resource_link\",\"uri\":\"test://r\",\"name\":\"r\"}]}}\n\n",
        )
        .as_bytes();
        let c = ctx("tools/call");
        let mut outputs = Vec::new();
        for split in [1, 7, 40, 100, stream.len() - 1] {
            let mut rw = SseRewrite::new(1 << 20);
            let mut out = Vec::new();
            rw.feed(&gw, &host, &c, &stream[..split], &mut out).unwrap();
            rw.feed(&gw, &host, &c, &stream[split..], &mut out).unwrap();
            assert!(!rw.finish());
            assert!(rw.answer.seen && !rw.answer.error && rw.resumable);
            outputs.push(out);
        }
        let items = sse::parse_all(&outputs[0], 1 << 20).unwrap();
        let events: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].retry, Some(1000));
        assert_eq!(events[0].data.as_deref(), Some(""));
        let e1 = events[0].id.as_deref().unwrap();
        assert_eq!(
            Wrapped::open_event_id(&gw.cfg.keys, e1, &[3; 16])
                .unwrap()
                .original,
            "e1"
        );
        assert!(events[1]
            .data
            .as_deref()
            .unwrap()
            .contains("\"progressToken\":1"));
        let req: Value = serde_json::from_str(events[2].data.as_deref().unwrap()).unwrap();
        let rid = req["id"].as_str().unwrap();
        let w = Wrapped::open_request_id(&gw.cfg.keys, rid, &[3; 16]).unwrap();
        assert_eq!((w.backend.as_str(), w.original.as_str()), ("a", "0"));
        let resp: Value = serde_json::from_str(events[3].data.as_deref().unwrap()).unwrap();
        assert_eq!(resp["id"], 7);
        assert_eq!(resp["result"]["content"][0]["uri"], "a+test://r");
    }

    #[test]
    fn cancellation_names_the_same_wrapped_id() {
        let gw = gateway(r#"[{"name":"a","cluster":"a"},{"name":"b","cluster":"b"}]"#);
        let c = ctx("tools/call");
        let mut answered = Answer::default();
        let req = rewrite_message(
            &gw,
            &c,
            r#"{"jsonrpc":"2.0","id":"s-1","method":"elicitation/create","params":{}}"#,
            &mut answered,
        )
        .unwrap();
        let cancel = rewrite_message(
            &gw,
            &c,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"s-1","reason":"x"}}"#,
            &mut answered,
        )
        .unwrap();
        let req: Value = serde_json::from_str(&req).unwrap();
        let cancel: Value = serde_json::from_str(&cancel).unwrap();
        assert_eq!(req["id"], cancel["params"]["requestId"]);
        assert_eq!(cancel["params"]["reason"], "x");
        assert!(!answered.seen);
    }

    #[test]
    fn untouched_messages_pass_byte_for_byte() {
        let gw = gateway(r#"[{"name":"a","cluster":"a"}]"#);
        let mut answered = Answer::default();
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"resource_link","uri":"test://r"}]}}"#;
        // Single backend: bare URIs, nothing to rewrite.
        assert_eq!(
            rewrite_message(&gw, &ctx("tools/call"), text, &mut answered),
            None
        );
        assert!(answered.seen);
    }
}
