//! Backends that misbehave on purpose, for the fault-injection and
//! hostile-input tests (`tests/faults.rs`, `tests/hostile.rs`).
//!
//! [`FaultyBackend`] is a minimal MCP server written directly on hyper (no
//! SDK: it must be able to answer garbage). It answers `initialize`,
//! notifications, `tools/list`, `tools/call` and `ping` correctly unless a
//! [`Fault`] is set for that method, so `initialize` can succeed and a later
//! `tools/call` fail. It records every request as received (raw header
//! bytes), and can be stopped (connections dropped, port closed) to play a
//! backend that went down.
//!
//! [`RawBackend`] answers every request with fixed bytes on the socket, for
//! answers no HTTP library would write (control characters in headers).

use axum::body::Body;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How a [`FaultyBackend`] answers one method.
#[derive(Clone, Debug)]
pub enum Fault {
    /// A correct answer.
    None,
    /// This HTTP status, `text/plain` body.
    Status(u16),
    /// `200 application/json` with a body that is not JSON.
    Garbage,
    /// `200` with this content type and these body bytes.
    Body(&'static str, Vec<u8>),
    /// The correct answer, after this delay.
    Delay(Duration),
    /// No answer at all; the request stays open until the peer gives up.
    Hang,
    /// `200 text/event-stream`: a progress notification, then the response
    /// event cut off in the middle, then a clean end of stream.
    TruncatedSse,
    /// `200 text/event-stream`: a progress notification, then the connection
    /// is aborted (no end of stream).
    CloseMidStream,
    /// The connection is closed before any response byte.
    Reset,
    /// A correct answer carrying another JSON-RPC id (`999`).
    WrongId,
    /// The correct answer as an event stream whose response has another id.
    WrongIdSse,
    /// The correct answer with an extra response header (raw value bytes).
    Header(&'static str, Vec<u8>),
}

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names and raw value bytes, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The JSON-RPC method, if the body is one.
    pub rpc_method: Option<String>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Default)]
struct State {
    faults: HashMap<String, Fault>,
    received: Vec<Received>,
}

/// A hand-written MCP backend with per-method faults.
pub struct FaultyBackend {
    pub addr: SocketAddr,
    /// The `serverInfo.name` and the tool-text prefix.
    pub name: String,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

/// Options of a [`FaultyBackend`].
#[derive(Clone, Debug)]
pub struct Options {
    pub name: String,
    /// The `Mcp-Session-Id` handed out at `initialize` (`None`: stateless).
    pub session_id: Option<String>,
    /// Answer with `text/event-stream` instead of JSON.
    pub sse: bool,
}

impl Options {
    pub fn named(name: &str) -> Options {
        Options {
            name: name.to_string(),
            session_id: Some(format!("{name}-session")),
            sse: false,
        }
    }
}

impl FaultyBackend {
    /// Start on an ephemeral port of 127.0.0.1.
    pub async fn spawn(opts: Options) -> FaultyBackend {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (st, stop2, opts2) = (state.clone(), stop.clone(), Arc::new(opts.clone()));
        tokio::spawn(async move {
            loop {
                let sock = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let (st, stop3, opts3) = (st.clone(), stop2.clone(), opts2.clone());
                tokio::spawn(serve_connection(sock, st, stop3, opts3));
            }
        });
        FaultyBackend {
            addr,
            name: opts.name,
            state,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Set how `method` (a JSON-RPC method, `"*"` for any) is answered.
    pub fn set(&self, method: &str, fault: Fault) {
        self.lock().faults.insert(method.to_string(), fault);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Requests with this JSON-RPC method.
    pub fn received_rpc(&self, method: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.rpc_method.as_deref() == Some(method))
            .collect()
    }

    /// Go down: the port is closed and open connections are dropped.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve_connection(
    sock: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    opts: Arc<Options>,
) {
    // A handler asks for the connection to be dropped (Reset, CloseMidStream).
    let kill = CancellationToken::new();
    let kill2 = kill.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (state, opts, kill) = (state.clone(), opts.clone(), kill2.clone());
        async move { Ok::<_, Infallible>(handle(req, state, opts, kill).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(sock), service);
    tokio::select! {
        _ = conn => {}
        _ = kill.cancelled() => {}
        _ = stop.cancelled() => {}
    }
}

fn reply(status: u16, ct: &str, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if !ct.is_empty() {
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_str(ct).expect("content type"),
        );
    }
    r
}

fn event(v: &Value) -> String {
    format!("event: message\ndata: {v}\n\n")
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    opts: Arc<Options>,
    kill: CancellationToken,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), 64 << 20)
        .await
        .unwrap_or_default();
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rpc_method = msg["method"].as_str().map(str::to_string);
    let fault = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.received.push(Received {
            method: parts.method.to_string(),
            path: parts.uri.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
            rpc_method: rpc_method.clone(),
        });
        rpc_method
            .as_deref()
            .and_then(|m| st.faults.get(m))
            .or_else(|| st.faults.get("*"))
            .cloned()
            .unwrap_or(Fault::None)
    };
    if parts.method == hyper::Method::DELETE {
        return reply(204, "", Body::empty());
    }
    if parts.method == hyper::Method::GET {
        return reply(405, "text/plain", "no GET stream");
    }
    let id = msg.get("id").cloned();
    let Some(method) = rpc_method else {
        return reply(400, "text/plain", "not JSON-RPC");
    };
    let Some(id) = id else {
        // A notification (or a response to a server request).
        return reply(202, "", Body::empty());
    };
    let result = match method.as_str() {
        "initialize" => json!({
            "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": opts.name, "version": "1"},
        }),
        "tools/list" => json!({"tools": [
            {"name": "echo", "description": "Echo", "inputSchema": {"type": "object"}},
            {"name": "fail", "inputSchema": {"type": "object"}},
        ]}),
        "tools/call" => {
            let text = format!(
                "{}: {}",
                opts.name,
                msg["params"]["arguments"]["text"].as_str().unwrap_or("ok")
            );
            json!({"content": [{"type": "text", "text": text}]})
        }
        "ping" => json!({}),
        _ => {
            let e = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
            return reply(200, "application/json", e.to_string());
        }
    };
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": "p", "progress": 1, "total": 2}});
    let normal = |answer: &Value| {
        let mut r = if opts.sse {
            reply(200, "text/event-stream", event(answer))
        } else {
            reply(200, "application/json", answer.to_string())
        };
        if method == "initialize" {
            if let Some(sid) = &opts.session_id {
                r.headers_mut().insert(
                    "mcp-session-id",
                    hyper::header::HeaderValue::from_str(sid).expect("session id"),
                );
            }
        }
        r
    };
    match fault {
        Fault::None => normal(&answer),
        Fault::Status(s) => reply(s, "text/plain", format!("backend error {s}")),
        Fault::Garbage => reply(200, "application/json", "<html>\u{1}not json at all"),
        Fault::Body(ct, bytes) => reply(200, ct, bytes),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            normal(&answer)
        }
        Fault::Hang => {
            // Until the peer closes the connection (hyper then drops this future).
            tokio::time::sleep(Duration::from_secs(3600)).await;
            normal(&answer)
        }
        Fault::TruncatedSse => {
            let full = event(&answer);
            let body = format!("{}{}", event(&progress), &full[..full.len() / 2]);
            reply(200, "text/event-stream", body)
        }
        Fault::CloseMidStream => {
            let first = Bytes::from(event(&progress));
            let stream = futures::stream::unfold(0u8, move |step| {
                let (first, kill) = (first.clone(), kill.clone());
                async move {
                    match step {
                        0 => Some((Ok::<Bytes, std::io::Error>(first), 1)),
                        _ => {
                            // Let the first event reach the peer, then drop the connection.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            kill.cancel();
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            None
                        }
                    }
                }
            });
            reply(200, "text/event-stream", Body::from_stream(stream))
        }
        Fault::Reset => {
            kill.cancel();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            reply(500, "", Body::empty())
        }
        Fault::WrongId => {
            let mut a = answer.clone();
            a["id"] = json!(999);
            reply(200, "application/json", a.to_string())
        }
        Fault::WrongIdSse => {
            let mut a = answer.clone();
            a["id"] = json!(999);
            reply(200, "text/event-stream", event(&a))
        }
        Fault::Header(name, value) => {
            let mut r = normal(&answer);
            r.headers_mut().append(
                hyper::header::HeaderName::from_static(name),
                hyper::header::HeaderValue::from_bytes(&value).expect("header value"),
            );
            r
        }
    }
}

/// A backend that answers every request with the same raw bytes, then closes.
pub struct RawBackend {
    pub addr: SocketAddr,
    /// Every request head + body received, raw.
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: CancellationToken,
}

impl RawBackend {
    pub async fn spawn(response: Vec<u8>) -> RawBackend {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (rec, stop2) = (received.clone(), stop.clone());
        let response = Arc::new(response);
        tokio::spawn(async move {
            loop {
                let mut sock = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let (rec, response) = (rec.clone(), response.clone());
                tokio::spawn(async move {
                    let req = read_request(&mut sock).await;
                    rec.lock().unwrap_or_else(|e| e.into_inner()).push(req);
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        RawBackend {
            addr,
            received,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Read one HTTP/1.1 request (head, then a `content-length` body), bounded.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return buf,
        }
    }
}

/// A loopback port with nothing listening, held for as long as this lives:
/// bound but never listened on, so a connection to it is refused and no
/// other server started meanwhile (tests run in parallel) can take it.
pub struct ClosedPort {
    _socket: socket2::Socket,
    pub port: u16,
}

pub fn closed_port() -> ClosedPort {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&any.into()).expect("bind a loopback port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("the bound port");
    ClosedPort {
        _socket: socket,
        port,
    }
}

// ----- what Envoy shows -------------------------------------------------------------

/// mcpgw's series on `/stats/prometheus`: `"name{labels sorted}" -> value`.
///
/// Series are named as the proxy-wasm build's (`mcpgw_...`); the dynamic
/// module's carry Envoy's `envoy_` prefix, dropped here.
pub fn mcpgw_stats(envoy: &crate::envoy::Envoy) -> HashMap<String, f64> {
    let text = envoy.admin_get("/stats/prometheus").unwrap_or_default();
    text.lines()
        // The dynamic module's metrics sit under Envoy's namespace for them.
        .map(|l| {
            l.strip_prefix(mcpgw_module::names::PROMETHEUS_PREFIX)
                .filter(|m| m.starts_with("mcpgw_"))
                .unwrap_or(l)
        })
        .filter(|l| l.starts_with("mcpgw_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((normalize_series(k), v.parse().ok()?))
        })
        .collect()
}

/// `name{b="1",a="2"}` -> `name{a="2",b="1"}`.
pub fn normalize_series(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return format!("{series}{{}}");
    };
    let mut labels: Vec<&str> = rest
        .trim_end_matches('}')
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

/// A counter's current value (0 when it does not exist yet).
pub fn counter(envoy: &crate::envoy::Envoy, series: &str) -> f64 {
    mcpgw_stats(envoy)
        .get(&normalize_series(series))
        .copied()
        .unwrap_or(0.0)
}

/// Wait (bounded, 5 s) until a counter reaches `at_least`; returns its value.
pub async fn wait_counter(envoy: &crate::envoy::Envoy, series: &str, at_least: f64) -> f64 {
    let mut v = 0.0;
    for _ in 0..50 {
        v = counter(envoy, series);
        if v >= at_least {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v
}

/// Wait (bounded, 5 s) until a filter log line contains every needle; returns it.
pub async fn wait_log(envoy: &crate::envoy::Envoy, needles: &[&str]) -> Option<String> {
    for _ in 0..50 {
        if let Some(l) = envoy
            .filter_log()
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Fail if the filter ever trapped, panicked or was reloaded: Envoy's log,
/// and Envoy's own wasm stats (`wasm.<vm>.vm_reload*`: with
/// `failure_policy: FAIL_RELOAD` every failed VM is counted there).
pub fn assert_vm_healthy(envoy: &crate::envoy::Envoy) {
    let log = envoy.log();
    for bad in crate::envoy::FILTER_TROUBLE
        .iter()
        .chain(&["Uncaught", "RuntimeError"])
    {
        assert!(
            !log.contains(bad),
            "filter trouble ({bad}):\n{}",
            envoy.log_tail(80)
        );
    }
    let stats = envoy.admin_get("/stats").unwrap_or_default();
    for line in stats.lines() {
        let Some((name, value)) = line.rsplit_once(": ") else {
            continue;
        };
        let bad =
            name.starts_with("wasm.") && (name.contains(".vm_reload") || name.ends_with(".failed"));
        let n: f64 = value.trim().parse().unwrap_or(0.0);
        assert!(!(bad && n > 0.0), "wasm stat {name} = {n}");
    }
}
