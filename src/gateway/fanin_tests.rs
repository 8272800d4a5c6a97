//! Merged GET streams through the hooks, on a fake host that streams side
//! calls: what is opened, what the client sees, how it ends.

use super::*;
use crate::gateway::host::{header, Flow};
use crate::gateway::testing::{gateway_with, json_response, FakeHost};
use crate::gateway::tokens::Wrapped;
use crate::gateway::Gateway;
use crate::protocol::sse::{self, Item};
use serde_json::{json, Value};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Three backends: `a` and `b` stateful (they give session ids), `c` stateless.
const THREE: &str =
    r#"[{"name":"a","cluster":"c_a"},{"name":"b","cluster":"c_b"},{"name":"c","cluster":"c_c"}]"#;

fn request(method: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = [
        (":method", method),
        (":path", "/mcp"),
        (":authority", "localhost:1975"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    h.retain(|(k, _)| !(method == "GET" && k == "content-type"));
    h
}

struct Setup {
    gw: Arc<Gateway>,
    host: FakeHost,
    sid: String,
}

/// A streaming host and a session with `a`, `b` (stateful) and `c`; `extra`
/// adds top-level config members.
fn setup(extra: &str) -> Setup {
    let gw = Arc::new(gateway_with(THREE, extra));
    let mut host = FakeHost::default();
    host.streaming = true;
    host.request_headers = request("POST", &[]);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    host.request_body = init.to_string().into_bytes();
    let mut ex = Exchange::new(gw.clone());
    assert_eq!(ex.request_headers(&mut host, false), Flow::Stop);
    let n = host.request_body.len();
    assert_eq!(ex.request_body(&mut host, n, true), Flow::Stop);
    for (id, call) in std::mem::take(&mut host.calls) {
        let req: Value = serde_json::from_slice(&call.body).unwrap();
        let mut r = json_response(
            &json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":call.cluster}}})
                .to_string(),
        );
        if call.cluster != "c_c" {
            r.headers
                .push(("mcp-session-id".into(), format!("{}-session", call.cluster)));
        }
        ex.call_done(&mut host, id, r);
    }
    let r = host.sent.pop().expect("initialized");
    ex.stream_done(&mut host);
    let sid = header(&r.headers, "mcp-session-id").unwrap().to_string();
    Setup { gw, host, sid }
}

impl Setup {
    /// A GET for the session's stream; its exchange.
    fn get(&mut self, last_event_id: Option<&str>) -> (Exchange, Flow) {
        let mut extra = vec![("mcp-session-id", self.sid.as_str())];
        if let Some(id) = last_event_id {
            extra.push(("last-event-id", id));
        }
        self.host.request_headers = request("GET", &extra);
        self.host.streams.clear();
        self.host.closed.clear();
        self.host.streamed = None;
        self.host.streamed_data.clear();
        self.host.streamed_end = false;
        self.host.sent.clear();
        let mut ex = Exchange::new(self.gw.clone());
        let flow = ex.request_headers(&mut self.host, true);
        (ex, flow)
    }

    fn sid_bytes(&self) -> [u8; 16] {
        crate::gateway::session::Session::open(
            &self.gw.cfg.keys,
            &self.sid,
            self.host.now_ms(),
            3_600_000,
        )
        .unwrap()
        .sid
    }

    /// The events the client received so far.
    fn events(&self) -> Vec<sse::Event> {
        sse::parse_all(&self.host.streamed_data, 1 << 20)
            .unwrap()
            .into_iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }
}

fn sse_headers() -> Vec<(String, String)> {
    vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "text/event-stream".into()),
    ]
}

fn status(code: &str) -> Vec<(String, String)> {
    vec![(":status".into(), code.into())]
}

#[test]
fn two_stateful_backends_stream_into_one() {
    let mut s = setup("");
    let (mut ex, flow) = s.get(None);
    assert_eq!(flow, Flow::Stop, "answered by the gateway itself");
    assert_eq!(
        s.host.streams.len(),
        2,
        "the stateless backend has no stream"
    );
    let (a, call_a) = s.host.stream_to("c_a");
    let (b, call_b) = s.host.stream_to("c_b");
    let call_a = call_a.clone();
    assert_eq!(header(&call_a.headers, ":method"), Some("GET"));
    assert_eq!(header(&call_a.headers, "accept"), Some("text/event-stream"));
    assert_eq!(
        header(&call_a.headers, "mcp-session-id"),
        Some("c_a-session")
    );
    assert_eq!(header(&call_a.headers, "last-event-id"), None);
    assert_eq!(call_a.timeout_ms, 0, "as long as the client stays");
    assert_eq!(
        header(&call_b.headers, "mcp-session-id"),
        Some("c_b-session")
    );

    // Nothing for the client until a stream opens.
    ex.stream_headers(&mut s.host, b, &status("405"));
    assert!(s.host.streamed.is_none() && s.host.sent.is_empty());
    assert_eq!(s.host.closed, vec![b]);
    // The other one opens: the answer starts.
    ex.stream_headers(&mut s.host, a, &sse_headers());
    let (code, headers) = s.host.streamed.clone().unwrap();
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));

    // Events as they come, in any chunking; ids become cursors.
    let req = r#"{"jsonrpc":"2.0","id":5,"method":"roots/list"}"#;
    let chunk = format!("id: a-1\ndata: {req}\n\n: keepalive\n\nid: a-2\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":\"hi\"}}}}\n\n");
    let (first, second) = chunk.split_at(17);
    ex.stream_data(&mut s.host, a, first.as_bytes(), false);
    assert!(s.events().is_empty(), "an incomplete event waits");
    ex.stream_data(&mut s.host, a, second.as_bytes(), false);
    let events = s.events();
    assert_eq!(events.len(), 2);
    let sid = s.sid_bytes();
    let c1 = StreamCursor::open(&s.gw.cfg.keys, events[0].id.as_deref().unwrap(), &sid).unwrap();
    assert_eq!(c1.positions, vec![("a".to_string(), "a-1".to_string())]);
    let c2 = StreamCursor::open(&s.gw.cfg.keys, events[1].id.as_deref().unwrap(), &sid).unwrap();
    assert_eq!(c2.positions, vec![("a".to_string(), "a-2".to_string())]);
    // The server's request carries an id that finds its way back to `a`.
    let r: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
    let w = Wrapped::open_request_id(&s.gw.cfg.keys, r["id"].as_str().unwrap(), &sid).unwrap();
    assert_eq!((w.backend.as_str(), w.original.as_str()), ("a", "5"));
    assert!(events[1].data.as_deref().unwrap().contains("\"hi\""));

    // The client leaves: every backend stream still open is closed.
    ex.stream_done(&mut s.host);
    assert_eq!(s.host.closed, vec![b, a]);
    assert!(!s.host.streamed_end);
}

#[test]
fn a_cursor_resumes_every_backend_from_its_own_position() {
    let mut s = setup("");
    let (mut ex, _) = s.get(None);
    let (a, _) = s.host.stream_to("c_a");
    let (b, _) = s.host.stream_to("c_b");
    ex.stream_headers(&mut s.host, a, &sse_headers());
    ex.stream_headers(&mut s.host, b, &sse_headers());
    ex.stream_data(&mut s.host, a, b"id: a-7\ndata: {}\n\n", false);
    ex.stream_data(&mut s.host, b, b"id: b-3\ndata: {}\n\n", false);
    ex.stream_data(&mut s.host, b, b"data: {}\n\n", false);
    let events = s.events();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2].id, None,
        "an event without an id keeps the cursor"
    );
    let last = events[1].id.clone().unwrap();
    // `b` ends its stream: the merged stream ends, `a` is closed.
    ex.stream_end(&mut s.host, b, false);
    assert!(s.host.streamed_end);
    assert_eq!(s.host.closed, vec![a]);
    ex.stream_done(&mut s.host);

    // The client reconnects with the last id it saw.
    let (_ex, _) = s.get(Some(&last));
    assert_eq!(
        header(&s.host.stream_to("c_a").1.headers, "last-event-id"),
        Some("a-7")
    );
    assert_eq!(
        header(&s.host.stream_to("c_b").1.headers, "last-event-id"),
        Some("b-3")
    );
    // A cursor of another session is not a cursor: fresh streams.
    let forged = StreamCursor {
        sid: [0; 16],
        positions: vec![("a".into(), "a-7".into())],
    }
    .seal(&s.gw.cfg.keys, &[1; 24]);
    let (_ex, _) = s.get(Some(&forged));
    assert_eq!(s.host.streams.len(), 2);
    assert_eq!(
        header(&s.host.stream_to("c_a").1.headers, "last-event-id"),
        None
    );
}

#[test]
fn when_no_stream_opens_the_client_gets_one_error() {
    // A backend whose session ended wins: the client must initialize again.
    let mut s = setup("");
    let (mut ex, _) = s.get(None);
    let (a, _) = s.host.stream_to("c_a");
    let (b, _) = s.host.stream_to("c_b");
    ex.stream_headers(&mut s.host, a, &status("405"));
    ex.stream_headers(&mut s.host, b, &status("404"));
    let [r] = s.host.sent.clone().try_into().expect("one answer");
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("backend b ended its session"));
    assert!(s.host.streamed.is_none());

    // No server offers a stream.
    let (mut ex, _) = s.get(None);
    let (a, _) = s.host.stream_to("c_a");
    let (b, _) = s.host.stream_to("c_b");
    ex.stream_headers(&mut s.host, a, &status("405"));
    ex.stream_headers(&mut s.host, b, &status("405"));
    let [r] = s.host.sent.clone().try_into().expect("one answer");
    assert_eq!(r.status, 405);

    // Failures of other kinds: 502, and counted.
    let (mut ex, _) = s.get(None);
    let (a, _) = s.host.stream_to("c_a");
    let (b, _) = s.host.stream_to("c_b");
    ex.stream_end(&mut s.host, a, true);
    ex.stream_headers(&mut s.host, b, &status("500"));
    let [r] = s.host.sent.clone().try_into().expect("one answer");
    assert_eq!(r.status, 502);
    assert!(s
        .host
        .logged("backend a: its event stream failed: no answer"));
}

#[test]
fn a_slow_client_is_held_then_cut_at_the_cap() {
    let mut s = setup(r#","max_response_bytes":4096"#);
    let (mut ex, _) = s.get(None);
    let (a, _) = s.host.stream_to("c_a");
    let (b, _) = s.host.stream_to("c_b");
    ex.stream_headers(&mut s.host, a, &sse_headers());
    ex.stream_headers(&mut s.host, b, &sse_headers());
    ex.stream_data(&mut s.host, a, b"id: 1\ndata: {}\n\n", false);
    let sent = s.host.streamed_data.len();
    s.host.blocked = true;
    ex.stream_data(&mut s.host, a, b"id: 2\ndata: {}\n\n", false);
    assert_eq!(s.host.streamed_data.len(), sent, "held while blocked");
    s.host.blocked = false;
    ex.downstream_ready(&mut s.host);
    assert_eq!(s.events().len(), 2, "delivered once the client reads");

    s.host.blocked = true;
    let big = format!("data: {}\n\n", "x".repeat(1000));
    for _ in 0..4 {
        ex.stream_data(&mut s.host, b, big.as_bytes(), false);
    }
    assert!(!s.host.streamed_end);
    ex.stream_data(&mut s.host, b, big.as_bytes(), false);
    assert!(s.host.streamed_end, "ended past the cap");
    assert_eq!(s.events().len(), 2, "what was held is dropped, not sent");
    assert_eq!(s.host.closed, vec![a, b]);
    assert!(s.host.logged("does not read its event stream"));
    // Late events of closed streams change nothing.
    ex.stream_data(&mut s.host, a, b"id: 3\ndata: {}\n\n", false);
    assert_eq!(s.events().len(), 2);
}

#[test]
fn a_broken_backend_stream_ends_the_merged_one() {
    let mut s = setup(r#","max_response_bytes":64"#);
    let (mut ex, _) = s.get(None);
    let (a, _) = s.host.stream_to("c_a");
    let (b, _) = s.host.stream_to("c_b");
    ex.stream_headers(&mut s.host, a, &sse_headers());
    ex.stream_data(
        &mut s.host,
        a,
        format!("data: {}", "y".repeat(200)).as_bytes(),
        false,
    );
    assert!(s.host.streamed_end);
    assert!(s.host.logged("backend a: broken event stream"));
    assert_eq!(s.host.closed, vec![b]);
}

#[test]
fn without_streaming_side_calls_two_stateful_backends_get_405() {
    let mut s = setup("");
    s.host.streaming = false;
    let (_ex, flow) = s.get(None);
    assert_eq!(flow, Flow::Stop);
    let [r] = s.host.sent.clone().try_into().expect("one answer");
    assert_eq!(r.status, 405, "the proxy-wasm build's documented answer");
    assert!(s.host.streams.is_empty());
}
