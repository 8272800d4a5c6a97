//! The session's standalone GET stream with several stateful backends.
//!
//! The dynamic module merges the backends' GET streams into one: two alpha
//! backends each push a log notification and a `roots/list` request there
//! (`announce`), both reach the client on the one stream, the client's
//! answers go back to the backend that asked (`roots` tells what it got), a
//! reconnect with `Last-Event-ID` resumes each backend where it was, and the
//! backends' streams end when the client leaves. The proxy-wasm build keeps
//! its documented answer: 405 (it cannot stream side calls). A client that
//! stops reading while a backend floods the stream is cut off at the cap
//! (module only).

use futures::StreamExt;
use mcpgw_core::protocol::sse::{Event, Item, Parser};
use mcpgw_e2e::backends::{self, Kind, TestServer};
use mcpgw_e2e::client::Raw;
use mcpgw_e2e::envoy::{render, Cluster, Engine, Envoy};
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::{json, Value};
use std::time::Duration;

mcpgw_e2e::per_engine!(merged_get_stream);

/// Bound for any single wait on the stream.
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    _one: TestServer,
    _two: TestServer,
    _beta: TestServer,
    envoy: Envoy,
}

/// `one` and `two` (alpha: stateful) and `beta` (stateless) behind Envoy.
async fn setup(engine: Engine) -> Setup {
    let one = backends::spawn(Kind::Alpha).await;
    let two = backends::spawn(Kind::Alpha).await;
    let beta = backends::spawn(Kind::Beta).await;
    let cfg = json!({
        "session": {"key": SESSION_KEY},
        "backends": [
            {"name": "one", "cluster": "one"},
            {"name": "two", "cluster": "two"},
            {"name": "beta", "cluster": "beta"}
        ]
    });
    let clusters = [("one", &one), ("two", &two), ("beta", &beta)].map(|(n, s)| Cluster {
        name: n.into(),
        port: s.port(),
    });
    let yaml = render(engine, &cfg.to_string(), &clusters, &[]);
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy start");
    Setup {
        _one: one,
        _two: two,
        _beta: beta,
        envoy,
    }
}

/// A GET stream being read.
struct Stream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: Parser,
    ready: Vec<Event>,
}

impl Stream {
    async fn open(url: &str, sid: &str, last_event_id: Option<&str>) -> (u16, Option<Stream>) {
        let http = reqwest::Client::new();
        let mut req = http
            .get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("GET answered in time")
            .expect("GET");
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, None);
        }
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let s = Stream {
            body: Box::pin(resp.bytes_stream()),
            parser: Parser::new(1 << 20),
            ready: Vec::new(),
        };
        (status, Some(s))
    }

    /// The next event (bounded wait).
    async fn next(&mut self) -> Event {
        loop {
            if !self.ready.is_empty() {
                return self.ready.remove(0);
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .expect("stream data");
            let mut items = Vec::new();
            self.parser.feed(&chunk, &mut items).expect("valid SSE");
            self.ready.extend(items.into_iter().filter_map(|i| match i {
                Item::Event(e) => Some(e),
                _ => None,
            }));
        }
    }

    /// Events until `n` JSON-RPC messages have arrived (priming events with
    /// empty data are skipped); the messages and the last event id seen.
    async fn messages(&mut self, n: usize) -> (Vec<Value>, Option<String>) {
        let mut out = Vec::new();
        let mut last = None;
        while out.len() < n {
            let e = self.next().await;
            if e.id.as_deref().is_some_and(|i| !i.is_empty()) {
                last = e.id.clone();
            }
            match e.data.as_deref() {
                Some(d) if !d.trim().is_empty() => out.push(serde_json::from_str(d).expect("JSON")),
                _ => {}
            }
        }
        (out, last)
    }
}

fn tool_call(id: u64, name: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}})
}

fn text(a: &mcpgw_e2e::client::Answer) -> String {
    let m = a.messages();
    m.iter()
        .find(|m| m.get("result").is_some())
        .and_then(|m| m["result"]["content"][0]["text"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The log message and the roots/list request `backend` announced, among `msgs`.
fn announced<'a>(msgs: &'a [Value], text: &str) -> &'a Value {
    msgs.iter()
        .find(|m| m["method"] == "notifications/message" && m["params"]["data"] == text)
        .unwrap_or_else(|| panic!("no log message {text:?} in {msgs:#?}"))
}

async fn merged_get_stream(engine: Engine) {
    let s = setup(engine).await;
    let raw = Raw::new(&s.envoy.url());
    let sid = raw.session().await;
    let (status, stream) = Stream::open(&s.envoy.url(), &sid, None).await;
    if engine == Engine::Wasm {
        assert_eq!(
            status, 405,
            "two stateful backends: the wasm build cannot merge"
        );
        return;
    }
    assert_eq!(status, 200);
    let mut stream = stream.expect("stream");

    // Each backend pushes a notification and a request on its own GET
    // stream; both reach the client on the merged one. The client answers
    // each request with its own root.
    let mut cursor = None;
    for (i, (backend, word)) in [("one", "from one"), ("two", "from two")]
        .into_iter()
        .enumerate()
    {
        let tool = format!("{backend}__announce");
        let a = raw
            .post(
                Some(&sid),
                &tool_call(10 + i as u64, &tool, json!({"text": word})),
            )
            .await;
        assert_eq!(text(&a), "announcing", "{}", a.body);
        let (msgs, last) = stream.messages(2).await;
        announced(&msgs, word);
        let request = msgs
            .iter()
            .find(|m| m["method"] == "roots/list")
            .unwrap_or_else(|| panic!("no roots/list in {msgs:#?}"));
        let id = request["id"].as_str().expect("a sealed string id");
        assert!(id.starts_with("mcpgw."), "{id}");
        let answer = json!({"jsonrpc":"2.0","id":id,"result":{"roots":[{"uri":format!("file:///{backend}"),"name":"r"}]}});
        assert_eq!(raw.post(Some(&sid), &answer).await.status, 202);
        cursor = last.or(cursor);
    }
    let cursor = cursor.expect("the events carry ids");
    assert!(
        cursor.len() > 40,
        "a sealed cursor, not a backend's own id: {cursor}"
    );
    // Each answer reached the backend that asked.
    for (i, backend) in ["one", "two"].into_iter().enumerate() {
        let tool = format!("{backend}__roots");
        let mut got = String::new();
        for _ in 0..50 {
            got = text(
                &raw.post(Some(&sid), &tool_call(20 + i as u64, &tool, json!({})))
                    .await,
            );
            if got != "none" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let v: Value = serde_json::from_str(&got).unwrap_or_else(|_| panic!("roots: {got}"));
        assert_eq!(v["roots"][0]["uri"], format!("file:///{backend}"), "{got}");
    }

    // The client leaves; one backend announces again meanwhile; the client
    // comes back with its last id and gets what it missed from that backend.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = raw
        .post(
            Some(&sid),
            &tool_call(30, "one__announce", json!({"text": "while away"})),
        )
        .await;
    assert_eq!(text(&a), "announcing");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, stream) = Stream::open(&s.envoy.url(), &sid, Some(&cursor)).await;
    assert_eq!(status, 200);
    let mut stream = stream.expect("stream");
    // Everything that comes until the stream is quiet (bounded).
    let mut msgs = Vec::new();
    while msgs.len() < 10 {
        match tokio::time::timeout(Duration::from_millis(700), stream.messages(1)).await {
            Ok((m, _)) => msgs.extend(m),
            Err(_) => break,
        }
    }
    announced(&msgs, "while away");
    // Each backend is resumed from its own position: what came before it
    // never comes again. Alpha (rmcp 3.9) resumes *at* the id it is given
    // rather than after it, so each backend may repeat the one event the
    // cursor names, as it does to a client connected directly.
    let logs = |word: &str| {
        msgs.iter()
            .filter(|m| m["method"] == "notifications/message" && m["params"]["data"] == word)
            .count()
    };
    assert!(logs("from one") <= 1 && logs("from two") <= 1, "{msgs:#?}");
    assert!(
        msgs.len() <= 4,
        "more than the new events and one at each backend's cursor: {msgs:#?}"
    );
    drop(stream);

    // Every backend stream of the merged ones was closed with the client's.
    let stats = s.envoy.admin_get("/stats").unwrap_or_default();
    for cluster in ["one", "two"] {
        let active = stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cluster.{cluster}.upstream_rq_active: ")))
            .map(|v| v.trim().to_string());
        let mut last = active.clone();
        for _ in 0..50 {
            if last.as_deref() == Some("0") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = s
                .envoy
                .admin_get("/stats")
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cluster.{cluster}.upstream_rq_active: ")))
                .map(|v| v.trim().to_string());
        }
        assert_eq!(last.as_deref(), Some("0"), "{cluster}: streams still open");
    }
    s.envoy.assert_log_clean();
}

/// A stateful backend whose GET stream sends 1 KB events as fast as the
/// connection takes them (at most 256 MB), counting what it sent.
async fn spawn_flood() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use axum::body::Body;
    use axum::http::{HeaderMap, Method, StatusCode};
    use axum::response::Response;
    use std::sync::atomic::{AtomicU64, Ordering};
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let handler = move |method: Method, _headers: HeaderMap, body: String| {
        let counter = counter.clone();
        async move {
            if method == Method::GET {
                let event = format!(
                    "data: {}\n\n",
                    json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x".repeat(960)}})
                );
                let stream = futures::stream::iter(0..262_144u32).map(move |_| {
                    counter.fetch_add(event.len() as u64, Ordering::Relaxed);
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from(event.clone()))
                });
                return Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap_or_default();
            }
            let msg: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if msg["method"] == "initialize" {
                let r = json!({"jsonrpc":"2.0","id":msg["id"],"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"flood","version":"1"}}});
                return Response::builder()
                    .header("content-type", "application/json")
                    .header("mcp-session-id", "flood-session")
                    .body(Body::from(r.to_string()))
                    .unwrap_or_default();
            }
            Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(Body::empty())
                .unwrap_or_default()
        }
    };
    let app = axum::Router::new().route("/mcp", axum::routing::any(handler));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, sent)
}

/// A client that opens the merged stream and stops reading: what Envoy holds
/// for it grows to its buffer's high watermark, what the module holds to
/// `max_response_bytes`, then the stream ends and the backends' are closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_cut_off() {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let (flood, sent) = spawn_flood().await;
    let alpha = backends::spawn(Kind::Alpha).await;
    let cfg = json!({
        "session": {"key": SESSION_KEY},
        "max_response_bytes": 262144,
        "backends": [
            {"name": "flood", "cluster": "flood"},
            {"name": "alpha", "cluster": "alpha"}
        ]
    });
    let clusters = [("flood", flood), ("alpha", alpha.port())].map(|(n, port)| Cluster {
        name: n.into(),
        port,
    });
    let yaml = render(Engine::Module, &cfg.to_string(), &clusters, &[]);
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy start");
    let sid = Raw::new(&envoy.url()).session().await;
    // A raw connection that sends the GET and never reads.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", envoy.port)).expect("connect");
    let _ = conn.set_read_timeout(Some(Duration::from_millis(1)));
    write!(
        conn,
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {sid}\r\nMcp-Protocol-Version: 2025-11-25\r\n\r\n"
    )
    .expect("send the GET");
    let logged = mcpgw_e2e::faulty::wait_log(&envoy, &["does not read its event stream"]).await;
    assert!(logged.is_some(), "{}", envoy.filter_log().join("\n"));
    // The backend's stream was closed: it stops sending long before its 256 MB.
    let mut before = sent.load(Ordering::Relaxed);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == before {
            break;
        }
        before = now;
    }
    assert!(
        before < 64 << 20,
        "the flooding backend sent {before} bytes; its stream should have been closed"
    );
    drop(conn);
    envoy.assert_log_clean();
}
