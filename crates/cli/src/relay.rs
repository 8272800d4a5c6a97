//! Where each message between a stdio child and its HTTP side goes: the
//! stdio bridge's routing, without I/O (the bridge owns the processes, the
//! HTTP streams and the clock).
//!
//! The bridge is a transparent JSON-RPC relay: the child's messages are
//! passed on byte for byte except for the one member the relay owns, the
//! request `id`. Every client request gets a fresh numeric id towards the
//! child (so ids can never collide, also when sessions share a process);
//! the child's answer gets the client's id back, byte for byte (a
//! 10,000-digit number stays exactly that). The child's own requests
//! (sampling, elicitation, roots/list, ping) keep their ids: only this child
//! issues them, and the client answers with the same id.
//!
//! A message from the child goes, in this order of preference:
//! - an answer: on the stream of the request it answers, which then ends;
//! - `notifications/progress`: on the stream of the request that carried its
//!   progress token (tokens pass unchanged unless two requests in flight use
//!   the same one, then the later gets a relay-made token, restored on the
//!   way back);
//! - `notifications/cancelled` for a request of the child: where that
//!   request went;
//! - anything else (logs, `resources/updated`, `list_changed`, and the
//!   child's requests): stdio carries no "related request" marker, so it
//!   goes on the stream of the newest request in flight whose answer streams
//!   to the client (`tools/call`, `prompts/get`, `resources/read`, ...), as
//!   the child most likely raised it while serving that request; with none,
//!   on the session's standalone (GET) stream; with neither, it is held
//!   until one opens. A held request is refused after [`HOLD`] with an error
//!   the child sees at once, so nothing waits for an answer that cannot
//!   come; held notifications are kept (at most [`MAX_HELD`]).
//!
//! When one process serves every session (shared mode) the relay cannot
//! tell which client a message without a token is for: it delivers it only
//! when exactly one request is in flight, and refuses a request otherwise,
//! rather than show one client another's messages.

use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a request of the child waits for a stream to the client.
pub const HOLD: Duration = Duration::from_secs(3);
/// Held notifications kept per session (the oldest go first).
pub const MAX_HELD: usize = 64;
/// Requests of the child awaiting the client's answer, remembered for
/// routing a cancellation (the oldest are forgotten first).
const MAX_OUTBOUND: usize = 1024;

/// A JSON-RPC message with its top-level members kept as raw JSON text.
pub type Members = BTreeMap<String, Box<RawValue>>;

/// Where messages for the client are written: one HTTP response stream.
pub trait Sink: Clone {
    /// False once the HTTP side has gone (the stream cannot be written).
    fn is_open(&self) -> bool;
}

/// What the relay asks the bridge to do.
#[derive(Debug)]
pub struct Actions<S> {
    /// JSON text to write on a stream.
    pub deliver: Vec<(S, String)>,
    /// Lines to write to the child.
    pub to_child: Vec<String>,
    /// Things worth a log line.
    pub notes: Vec<String>,
}

impl<S> Default for Actions<S> {
    fn default() -> Self {
        Actions {
            deliver: Vec::new(),
            to_child: Vec::new(),
            notes: Vec::new(),
        }
    }
}

struct Pending<S> {
    sink: S,
    /// The client's id, byte for byte.
    original_id: Box<RawValue>,
    method: String,
    /// The token as the child knows it (canonical JSON), and the client's
    /// original when the relay replaced it.
    token: Option<(String, Option<Value>)>,
}

enum Dest<S> {
    Stream(S),
    /// Nowhere yet.
    Hold,
    /// Nowhere, and it cannot be held: why.
    Refuse(&'static str),
}

struct Held {
    at: Instant,
    text: String,
    /// The child's id when this is a request (it is refused on expiry).
    request_id: Option<Box<RawValue>>,
    method: String,
}

/// The routing state of one child process (and the sessions it serves).
pub struct Relay<S> {
    name: String,
    shared: bool,
    next_id: u64,
    /// Client requests the child is serving, by the relay's id (newest last).
    pending: BTreeMap<u64, Pending<S>>,
    /// Progress token (canonical JSON, as the child knows it) -> relay id.
    tokens: HashMap<String, u64>,
    /// The child's requests to the client (canonical id) -> where they went.
    outbound: VecDeque<(String, Option<S>)>,
    standalone: Option<S>,
    held: VecDeque<Held>,
}

/// Methods whose answer streams back to the client through the gateway
/// (routed calls). Fanned-out calls (`initialize`, lists, `logging/setLevel`)
/// are merged by the gateway, which keeps only the answer: a message
/// riding on them would be lost.
fn streams_to_client(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
            | "tasks/get"
            | "tasks/result"
            | "tasks/cancel"
    )
}

/// Canonical text of a JSON value (keys for ids and tokens).
fn canonical(raw: &RawValue) -> String {
    serde_json::from_str::<Value>(raw.get())
        .map(|v| v.to_string())
        .unwrap_or_else(|_| raw.get().to_string())
}

fn raw(v: &Value) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(v).ok()
}

fn str_member(m: &Members, key: &str) -> Option<String> {
    m.get(key)
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

pub fn encode(m: &Members) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

/// A JSON-RPC error answer for `id`.
pub fn error_text(id: &RawValue, code: i64, message: &str) -> String {
    let msg = Value::String(message.to_string()).to_string();
    format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":{msg}}}}}"#,
        id.get()
    )
}

/// A JSON-RPC error answer with a null id (no request to name).
pub fn error_null(code: i64, message: &str) -> String {
    error_text(&Box::<RawValue>::default(), code, message)
}

/// Parse one message (an object); `None` for anything else.
pub fn parse(text: &str) -> Option<Members> {
    serde_json::from_str(text).ok()
}

/// The kind of a parsed message.
pub enum Kind {
    Request(String),
    Notification(String),
    Response,
    Invalid,
}

pub fn kind(m: &Members) -> Kind {
    match (str_member(m, "method"), m.contains_key("id")) {
        (Some(method), true) => Kind::Request(method),
        (Some(method), false) => Kind::Notification(method),
        (None, true) if m.contains_key("result") || m.contains_key("error") => Kind::Response,
        _ => Kind::Invalid,
    }
}

/// `params._meta.progressToken`, if any.
fn progress_token(params: Option<&RawValue>) -> Option<Value> {
    let p: Value = serde_json::from_str(params?.get()).ok()?;
    p.get("_meta")?.get("progressToken").cloned()
}

fn set_progress_token(m: &mut Members, token: &Value) {
    let Some(mut p) = m
        .get("params")
        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
    else {
        return;
    };
    if let Some(meta) = p.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.insert("progressToken".into(), token.clone());
    } else if let Some(obj) = p.as_object_mut() {
        // Progress notifications carry the token in params.
        obj.insert("progressToken".into(), token.clone());
    }
    if let Some(r) = raw(&p) {
        m.insert("params".into(), r);
    }
}

impl<S: Sink> Relay<S> {
    pub fn new(name: &str, shared: bool) -> Relay<S> {
        Relay {
            name: name.to_string(),
            shared,
            next_id: 1,
            pending: BTreeMap::new(),
            tokens: HashMap::new(),
            outbound: VecDeque::new(),
            standalone: None,
            held: VecDeque::new(),
        }
    }

    /// Requests in flight.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn has_standalone(&self) -> bool {
        self.standalone.as_ref().is_some_and(Sink::is_open)
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// A client request: the line for the child, and the relay id whose
    /// answer ends `sink`. Held messages go out on this stream first if its
    /// answer streams to the client.
    pub fn request(&mut self, mut m: Members, method: &str, sink: S) -> (u64, Actions<S>) {
        let mut out = Actions::default();
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let original_id = m.remove("id").unwrap_or_default();
        if let Some(r) = raw(&Value::from(id)) {
            m.insert("id".into(), r);
        }
        let token = progress_token(m.get("params").map(|b| &**b)).map(|t| {
            let key = t.to_string();
            if self.tokens.contains_key(&key) {
                // Another request in flight uses it: give the child one of ours.
                let mine = Value::String(format!("mcpgw-progress-{id}"));
                set_progress_token(&mut m, &mine);
                self.tokens.insert(mine.to_string(), id);
                (mine.to_string(), Some(t))
            } else {
                self.tokens.insert(key.clone(), id);
                (key, None)
            }
        });
        if streams_to_client(method) {
            self.flush_held(&sink, &mut out);
        }
        self.pending.insert(
            id,
            Pending {
                sink,
                original_id,
                method: method.to_string(),
                token,
            },
        );
        out.to_child.push(encode(&m));
        (id, out)
    }

    /// A notification from the client: the line for the child, if any.
    /// `notifications/cancelled` names the client's id: it is translated,
    /// and the cancelled request's stream ends without an answer.
    pub fn client_notification(&mut self, mut m: Members, method: &str) -> Option<String> {
        if method == "notifications/cancelled" {
            let params: Value = m
                .get("params")
                .and_then(|r| serde_json::from_str(r.get()).ok())?;
            let target = params.get("requestId").and_then(raw)?;
            let key = canonical(&target);
            let matches: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| canonical(&p.original_id) == key)
                .map(|(id, _)| *id)
                .collect();
            // In a shared process two clients may use the same id: cancel
            // only what is unambiguous.
            let [id] = matches.as_slice() else {
                return None;
            };
            self.finish(*id);
            let mut params = params;
            if let Some(obj) = params.as_object_mut() {
                obj.insert("requestId".into(), Value::from(*id));
            }
            m.insert("params".into(), raw(&params)?);
        }
        Some(encode(&m))
    }

    /// The client's answer to a request of the child: the line for the child.
    pub fn client_response(&mut self, m: &Members) -> String {
        if let Some(id) = m.get("id") {
            let key = canonical(id);
            self.outbound.retain(|(k, _)| *k != key);
        }
        encode(m)
    }

    /// The client opened the session's standalone stream.
    pub fn open_standalone(&mut self, sink: S) -> Actions<S> {
        let mut out = Actions::default();
        self.flush_held(&sink, &mut out);
        self.standalone = Some(sink);
        out
    }

    fn flush_held(&mut self, sink: &S, out: &mut Actions<S>) {
        while let Some(h) = self.held.pop_front() {
            if let Some(id) = &h.request_id {
                self.outbound.push_back((canonical(id), Some(sink.clone())));
            }
            out.deliver.push((sink.clone(), h.text));
        }
        self.trim_outbound();
    }

    fn trim_outbound(&mut self) {
        while self.outbound.len() > MAX_OUTBOUND {
            self.outbound.pop_front();
        }
    }

    /// Remove a finished request.
    fn finish(&mut self, id: u64) -> Option<Pending<S>> {
        let p = self.pending.remove(&id)?;
        if let Some((key, _)) = &p.token {
            self.tokens.remove(key);
        }
        Some(p)
    }

    /// Where a message without a known relation goes.
    fn unrelated(&self) -> Dest<S> {
        let open = |p: &&Pending<S>| streams_to_client(&p.method) && p.sink.is_open();
        if self.shared {
            let live: Vec<&Pending<S>> = self.pending.values().filter(open).collect();
            return match live.as_slice() {
                [only] => Dest::Stream(only.sink.clone()),
                [] => Dest::Refuse("no request of any session is in progress"),
                _ => Dest::Refuse("requests of several sessions are in progress and stdio does not say which one this belongs to"),
            };
        }
        if let Some(p) = self.pending.values().rev().find(open) {
            return Dest::Stream(p.sink.clone());
        }
        if let Some(s) = self.standalone.as_ref().filter(|s| s.is_open()) {
            return Dest::Stream(s.clone());
        }
        Dest::Hold
    }

    /// A message from the child (one line of its stdout).
    pub fn on_child_message(&mut self, text: &str, now: Instant) -> Actions<S> {
        // A batch (allowed before 2025-06-18): each message on its own.
        if text.trim_start().starts_with('[') {
            if let Ok(items) = serde_json::from_str::<Vec<Box<RawValue>>>(text) {
                let mut out = Actions::default();
                for item in items {
                    let one = self.on_child_message(item.get(), now);
                    out.deliver.extend(one.deliver);
                    out.to_child.extend(one.to_child);
                    out.notes.extend(one.notes);
                }
                return out;
            }
        }
        let mut out = Actions::default();
        let Some(mut m) = parse(text) else {
            out.notes.push(format!(
                "the server wrote a line that is not a JSON-RPC message (ignored): {}",
                text.chars().take(200).collect::<String>()
            ));
            return out;
        };
        match kind(&m) {
            Kind::Response => {
                let id = m
                    .get("id")
                    .and_then(|r| serde_json::from_str::<u64>(r.get()).ok());
                let Some(p) = id.and_then(|id| self.finish(id)) else {
                    // Cancelled, or an id we never issued.
                    return out;
                };
                m.insert("id".into(), p.original_id);
                out.deliver.push((p.sink, encode(&m)));
            }
            Kind::Notification(method) if method == "notifications/progress" => {
                let params: Option<Value> = m
                    .get("params")
                    .and_then(|r| serde_json::from_str(r.get()).ok());
                let key = params
                    .as_ref()
                    .and_then(|p| p.get("progressToken"))
                    .map(Value::to_string);
                let Some(p) = key
                    .and_then(|k| self.tokens.get(&k))
                    .and_then(|id| self.pending.get(id))
                else {
                    // Progress for a request that has ended: nobody waits for it.
                    return out;
                };
                let sink = p.sink.clone();
                if let Some((_, Some(original))) = &p.token {
                    let original = original.clone();
                    set_progress_token(&mut m, &original);
                }
                out.deliver.push((sink, encode(&m)));
            }
            Kind::Notification(method) if method == "notifications/cancelled" => {
                let target = m
                    .get("params")
                    .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                    .and_then(|p| p.get("requestId").cloned())
                    .map(|v| v.to_string());
                let known = target.and_then(|k| {
                    let i = self.outbound.iter().position(|(o, _)| *o == k)?;
                    self.outbound.remove(i)
                });
                match known {
                    Some((_, Some(s))) if s.is_open() => out.deliver.push((s, encode(&m))),
                    Some(_) => self.route_unrelated(m, &method, now, &mut out),
                    // A request the client never saw: nothing to tell it.
                    None => {}
                }
            }
            Kind::Notification(method) => self.route_unrelated(m, &method, now, &mut out),
            Kind::Request(method) => self.route_unrelated(m, &method, now, &mut out),
            Kind::Invalid => out.notes.push(format!(
                "the server wrote JSON that is not a JSON-RPC message (ignored): {}",
                text.chars().take(200).collect::<String>()
            )),
        }
        out
    }

    fn route_unrelated(&mut self, m: Members, method: &str, now: Instant, out: &mut Actions<S>) {
        let request_id = if m.contains_key("method") {
            m.get("id").cloned()
        } else {
            None
        };
        let text = encode(&m);
        match self.unrelated() {
            Dest::Stream(s) => {
                if let Some(id) = &request_id {
                    self.outbound.push_back((canonical(id), Some(s.clone())));
                    self.trim_outbound();
                }
                out.deliver.push((s, text));
            }
            Dest::Hold => {
                if request_id.is_none()
                    && self.held.iter().filter(|h| h.request_id.is_none()).count() >= MAX_HELD
                {
                    if let Some(i) = self.held.iter().position(|h| h.request_id.is_none()) {
                        if let Some(old) = self.held.remove(i) {
                            out.notes.push(format!(
                                "dropped a held {} (more than {MAX_HELD} waiting for a stream to the client)",
                                old.method
                            ));
                        }
                    }
                }
                self.held.push_back(Held {
                    at: now,
                    text,
                    request_id,
                    method: method.to_string(),
                });
            }
            Dest::Refuse(why) => match request_id {
                Some(id) => {
                    out.notes
                        .push(format!("refused {method} from the server: {why}"));
                    out.to_child.push(self.refusal(&id, method, why));
                }
                None => out
                    .notes
                    .push(format!("dropped {method} from the server: {why}")),
            },
        }
    }

    fn refusal(&self, id: &RawValue, method: &str, why: &str) -> String {
        error_text(
            id,
            -32603,
            &format!(
                "mcpgw could not deliver {method} to the client of stdio server {}: {why}. With several servers in a gateway session only one can use the standalone (GET) stream, so a server request outside a client request can reach the client only while one of the client's calls to this server is in progress",
                self.name
            ),
        )
    }

    /// Refuse held requests older than [`HOLD`]; the lines for the child.
    pub fn expire(&mut self, now: Instant) -> Actions<S> {
        let mut out = Actions::default();
        let mut keep = VecDeque::new();
        while let Some(h) = self.held.pop_front() {
            match &h.request_id {
                Some(id) if now.saturating_duration_since(h.at) >= HOLD => {
                    out.notes.push(format!(
                        "refused {} from the server: no stream to the client within {}s",
                        h.method,
                        HOLD.as_secs()
                    ));
                    out.to_child.push(self.refusal(
                        id,
                        &h.method,
                        "no request of the session was in progress and it had no open GET stream",
                    ));
                }
                _ => keep.push_back(h),
            }
        }
        self.held = keep;
        out
    }

    /// The child exited: every request in flight is answered with an error
    /// (the streams end); the child's own requests are forgotten.
    pub fn child_exited(&mut self, why: &str) -> Actions<S> {
        let mut out = Actions::default();
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.finish(id) {
                let text = error_text(
                    &p.original_id,
                    -32603,
                    &format!(
                        "stdio server {} {why} before answering {}",
                        self.name, p.method
                    ),
                );
                out.deliver.push((p.sink, text));
            }
        }
        self.outbound.clear();
        self.held.retain(|h| h.request_id.is_none());
        out
    }

    /// Forget a request whose HTTP side gave up (its answer is dropped).
    pub fn abandon(&mut self, id: u64) {
        self.finish(id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A stream that records what was written to it.
    #[derive(Clone, Default)]
    struct Rec(Rc<RefCell<(Vec<String>, bool)>>);

    impl Rec {
        fn texts(&self) -> Vec<String> {
            self.0.borrow().0.clone()
        }
        fn close(&self) {
            self.0.borrow_mut().1 = true;
        }
    }

    impl Sink for Rec {
        fn is_open(&self) -> bool {
            !self.0.borrow().1
        }
    }

    fn apply(out: Actions<Rec>) -> Vec<String> {
        for (s, t) in out.deliver {
            s.0.borrow_mut().0.push(t);
        }
        out.to_child
    }

    fn msg(v: Value) -> (Members, String) {
        let m = parse(&v.to_string()).unwrap();
        let method = v["method"].as_str().unwrap_or_default().to_string();
        (m, method)
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn send(r: &mut Relay<Rec>, v: Value, sink: &Rec) -> (u64, Value) {
        let (m, method) = msg(v);
        let (id, out) = r.request(m, &method, sink.clone());
        let lines = apply(out);
        (id, json(lines.last().unwrap()))
    }

    fn child(r: &mut Relay<Rec>, v: Value) -> Vec<String> {
        apply(r.on_child_message(&v.to_string(), Instant::now()))
    }

    #[test]
    fn ids_are_replaced_and_restored_byte_for_byte() {
        let mut r = Relay::new("s", false);
        let huge = "1".repeat(400);
        for original in [r#""abc""#.to_string(), "7".into(), huge.clone()] {
            let sink = Rec::default();
            let text = format!(
                r#"{{"jsonrpc":"2.0","id":{original},"method":"tools/call","params":{{"name":"x"}}}}"#
            );
            let (m, method) = (parse(&text).unwrap(), "tools/call".to_string());
            let (id, out) = r.request(m, &method, sink.clone());
            let line = json(&apply(out)[0]);
            assert_eq!(line["id"], json(&id.to_string()));
            assert_eq!(line["params"]["name"], "x");
            child(
                &mut r,
                serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}}),
            );
            let got = sink.texts();
            assert_eq!(got.len(), 1);
            assert!(
                got[0].contains(&format!(r#""id":{original}"#)),
                "{}",
                got[0]
            );
        }
        assert!(!r.busy());
    }

    #[test]
    fn progress_follows_its_token_of_either_type() {
        let mut r = Relay::new("s", false);
        let (a, b) = (Rec::default(), Rec::default());
        let (ida, _) = send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"tok"}}}),
            &a,
        );
        let (idb, _) = send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":42}}}),
            &b,
        );
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1}}),
        );
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":42,"progress":2}}),
        );
        assert_eq!(a.texts().len(), 1);
        assert_eq!(json(&a.texts()[0])["params"]["progressToken"], "tok");
        assert_eq!(b.texts().len(), 1);
        assert_eq!(json(&b.texts()[0])["params"]["progressToken"], 42);
        // After the answer the token is free again; late progress is dropped.
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":ida,"result":{}}),
        );
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":9}}),
        );
        assert_eq!(a.texts().len(), 2);
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":idb,"result":{}}),
        );
        assert!(r.tokens.is_empty());
    }

    #[test]
    fn a_token_already_in_flight_is_replaced_and_restored() {
        let mut r = Relay::new("s", true);
        let (a, b) = (Rec::default(), Rec::default());
        let call = |id: u64| serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":1}}});
        let (_, la) = send(&mut r, call(1), &a);
        let (_, lb) = send(&mut r, call(1), &b);
        assert_eq!(la["params"]["_meta"]["progressToken"], 1);
        let mine = lb["params"]["_meta"]["progressToken"].clone();
        assert!(mine.is_string());
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":mine,"progress":1}}),
        );
        assert!(a.texts().is_empty());
        assert_eq!(json(&b.texts()[0])["params"]["progressToken"], 1);
    }

    #[test]
    fn server_requests_ride_the_newest_routed_call_else_the_standalone_stream() {
        let mut r = Relay::new("s", false);
        let (list, call) = (Rec::default(), Rec::default());
        send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}),
            &call,
        );
        // A fanned-out list's answer is merged by the gateway: never ride it.
        send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
            &list,
        );
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{}}),
        );
        assert_eq!(call.texts().len(), 1);
        assert!(list.texts().is_empty());
        // The client's answer goes to the child unchanged.
        let (m, _) = msg(serde_json::json!({"jsonrpc":"2.0","id":0,"result":{"role":"assistant"}}));
        assert_eq!(json(&r.client_response(&m))["id"], 0);

        // With the call's stream gone, the standalone stream gets it.
        call.close();
        let get = Rec::default();
        apply(r.open_standalone(get.clone()));
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}),
        );
        assert_eq!(get.texts().len(), 1);
    }

    #[test]
    fn held_messages_go_out_on_the_next_stream_and_requests_expire() {
        let mut r = Relay::new("everything", false);
        let t0 = Instant::now();
        apply(
            r.on_child_message(
                &serde_json::json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})
                    .to_string(),
                t0,
            ),
        );
        apply(r.on_child_message(
            &serde_json::json!({"jsonrpc":"2.0","id":5,"method":"roots/list"}).to_string(),
            t0,
        ));
        assert!(r.has_held());
        // A list does not take them; a tool call does.
        let list = Rec::default();
        send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            &list,
        );
        assert!(list.texts().is_empty());
        let call = Rec::default();
        send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}),
            &call,
        );
        let got: Vec<Value> = call.texts().iter().map(|t| json(t)).collect();
        assert_eq!(got[0]["method"], "notifications/tools/list_changed");
        assert_eq!(got[1]["method"], "roots/list");
        assert!(!r.has_held());

        // Nothing open: a request is refused after HOLD, with a clear error.
        call.close();
        apply(r.on_child_message(
            &serde_json::json!({"jsonrpc":"2.0","id":6,"method":"roots/list"}).to_string(),
            t0,
        ));
        assert!(apply(r.expire(t0 + Duration::from_millis(10))).is_empty());
        let lines = apply(r.expire(t0 + HOLD));
        let e = json(&lines[0]);
        assert_eq!(e["id"], 6);
        let text = e["error"]["message"].as_str().unwrap();
        assert!(
            text.contains("roots/list") && text.contains("everything"),
            "{text}"
        );
    }

    #[test]
    fn shared_processes_deliver_only_what_is_unambiguous() {
        let mut r = Relay::new("s", true);
        let (a, b) = (Rec::default(), Rec::default());
        send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}),
            &a,
        );
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/message","params":{}}),
        );
        assert_eq!(a.texts().len(), 1);
        send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}),
            &b,
        );
        let lines = child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":9,"method":"sampling/createMessage"}),
        );
        assert_eq!(json(&lines[0])["error"]["code"], -32603);
        assert_eq!(a.texts().len(), 1);
        assert!(b.texts().is_empty());
        // Two clients used id 1: a cancellation of "1" is ambiguous.
        let (m, method) = msg(
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}),
        );
        assert!(r.client_notification(m, &method).is_none());
    }

    #[test]
    fn cancellation_names_the_childs_id_and_ends_the_stream() {
        let mut r = Relay::new("s", false);
        let a = Rec::default();
        let (id, _) = send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"x"}}),
            &a,
        );
        let (m, method) = msg(
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1","reason":"r"}}),
        );
        let line = json(&r.client_notification(m, &method).unwrap());
        assert_eq!(line["params"]["requestId"], id);
        assert_eq!(line["params"]["reason"], "r");
        assert!(!r.busy());
        // A late answer is dropped.
        child(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":id,"result":{}}),
        );
        assert!(a.texts().is_empty());
    }

    #[test]
    fn an_exit_answers_every_request_in_flight() {
        let mut r = Relay::new("time", false);
        let a = Rec::default();
        send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}),
            &a,
        );
        apply(r.child_exited("exited (exit status: 1)"));
        let e = json(&a.texts()[0]);
        assert_eq!(e["id"], 3);
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stdio server time exited"));
        assert!(!r.busy());
    }

    #[test]
    fn a_batch_from_the_child_is_relayed_message_by_message() {
        let mut r = Relay::new("s", false);
        let a = Rec::default();
        let (id, _) = send(
            &mut r,
            serde_json::json!({"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"t","_meta":{"progressToken":5}}}),
            &a,
        );
        let batch = serde_json::json!([
            {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":5,"progress":1}},
            {"jsonrpc":"2.0","id":id,"result":{"content":[]}}
        ]);
        child(&mut r, batch);
        let got: Vec<Value> = a.texts().iter().map(|t| json(t)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["method"], "notifications/progress");
        assert_eq!(got[1]["id"], "x");
    }

    #[test]
    fn garbage_from_the_child_is_noted_not_relayed() {
        let mut r = Relay::<Rec>::new("s", false);
        let out = r.on_child_message("Server started on stdio", Instant::now());
        assert!(out.deliver.is_empty() && out.to_child.is_empty());
        assert_eq!(out.notes.len(), 1);
    }
}
