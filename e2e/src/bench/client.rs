//! The load generator: MCP clients on plain HTTP/1.1 keep-alive connections
//! (hyper), one MCP session per connection, driven in a closed loop for a
//! fixed time. Only 127.0.0.1 is ever contacted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The protocol version the benchmark clients speak.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// The stateless revision the `modern` clients speak.
pub const MODERN_VERSION: &str = "2026-07-28";

/// Where a client connects: `http://127.0.0.1:<port><path>`.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub path: String,
    /// Speak 2026-07-28: no session, the request metadata in `_meta` and
    /// the `Mcp-Method` / `Mcp-Name` headers on every POST.
    pub modern: bool,
}

impl Target {
    pub fn new(port: u16) -> Target {
        Target {
            port,
            path: "/mcp".into(),
            modern: false,
        }
    }

    /// A 2026-07-28 client of the same endpoint.
    pub fn modern(port: u16) -> Target {
        Target {
            modern: true,
            ..Target::new(port)
        }
    }
}

/// An HTTP answer, whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The JSON-RPC message text: the body, or the `data:` of the first
    /// event of an SSE body that carries a response.
    pub fn message(&self) -> &[u8] {
        let sse = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !sse {
            return &self.body;
        }
        for line in self.body.split(|b| *b == b'\n') {
            if let Some(d) = line.strip_prefix(b"data:") {
                let d = d.strip_prefix(b" ").unwrap_or(d);
                let d = d.strip_suffix(b"\r").unwrap_or(d);
                if contains(d, b"\"result\"") || contains(d, b"\"error\"") {
                    return d;
                }
            }
        }
        &self.body
    }
}

/// Substring search (memchr's two-way search).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
    s.replace('\n', "\\n")
}

/// One keep-alive connection carrying at most one MCP session at a time.
pub struct Conn {
    tx: SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
    pub session: Option<String>,
    next_id: u64,
    modern: bool,
}

impl Conn {
    pub async fn open(t: &Target) -> Result<Conn, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], t.port));
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            tx,
            authority: format!("127.0.0.1:{}", t.port),
            path: t.path.clone(),
            session: None,
            next_id: 1,
            modern: t.modern,
        })
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// POST one JSON-RPC message (with the session id, if there is one).
    pub async fn post(&mut self, body: String) -> Result<Reply, String> {
        self.post_with(body, &[]).await
    }

    /// [`Conn::post`] with more request headers.
    async fn post_with(&mut self, body: String, extra: &[(&str, &str)]) -> Result<Reply, String> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(s) = &self.session {
            b = b
                .header("mcp-session-id", s.as_str())
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.tx.ready().await.map_err(|e| format!("send: {e}"))?;
        let resp = self
            .tx
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("read body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            headers: parts.headers,
            body,
        })
    }

    /// `initialize` (keeping the `Mcp-Session-Id`), then `notifications/initialized`.
    pub async fn initialize(&mut self) -> Result<(), String> {
        self.start_session().await?;
        let r = self
            .post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into())
            .await?;
        if r.status != 202 && r.status != 200 {
            return Err(format!(
                "notifications/initialized: HTTP {} {}",
                r.status,
                snippet(&r.body)
            ));
        }
        Ok(())
    }

    /// `initialize` only (a new session on this connection).
    pub async fn start_session(&mut self) -> Result<(), String> {
        self.session = None;
        let id = self.next_id();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcpgw-bench","version":"1.0.0"}}}}}}"#
        );
        let r = self.post(body).await?;
        if r.status != 200 || !contains(r.message(), b"\"protocolVersion\"") {
            return Err(format!(
                "initialize: HTTP {} {}",
                r.status,
                snippet(&r.body)
            ));
        }
        let sid = r
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| "initialize: no Mcp-Session-Id in the answer".to_string())?;
        self.session = Some(sid.to_string());
        Ok(())
    }

    /// `GET` an event stream (with the session, if there is one): the body,
    /// once the answer is 200 `text/event-stream`. The connection carries
    /// only this stream from then on.
    pub async fn open_event_stream(&mut self) -> Result<Incoming, String> {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(ACCEPT, "text/event-stream");
        if let Some(s) = &self.session {
            b = b
                .header("mcp-session-id", s.as_str())
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        self.tx.ready().await.map_err(|e| format!("send: {e}"))?;
        let resp = self
            .tx
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if resp.status() != 200 || !sse {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(format!(
                "GET: HTTP {status} (event stream: {sse}) {}",
                snippet(&body)
            ));
        }
        Ok(resp.into_body())
    }

    /// `tools/call` of `name`; the answer must be a successful result.
    pub async fn call_tool(&mut self, name: &str) -> Result<usize, String> {
        let id = self.next_id();
        let r = if self.modern {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"text":"hello"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"{MODERN_VERSION}","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
            );
            let headers = [
                ("mcp-protocol-version", MODERN_VERSION),
                ("mcp-method", "tools/call"),
                ("mcp-name", name),
            ];
            self.post_with(body, &headers).await?
        } else {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"text":"hello"}}}}}}"#
            );
            self.post(body).await?
        };
        if r.status != 200 || !contains(r.message(), b"\"isError\":false") {
            return Err(format!(
                "tools/call {name}: HTTP {} {}",
                r.status,
                snippet(&r.body)
            ));
        }
        Ok(r.body.len())
    }

    /// `tools/list`; returns the answer's size in bytes.
    pub async fn list_tools(&mut self) -> Result<usize, String> {
        let id = self.next_id();
        let r = self
            .post(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{}}}}"#
            ))
            .await?;
        // Cheap check (the body may be megabytes): a result that starts as one.
        let head = &r.message()[..r.message().len().min(200)];
        if r.status != 200 || !contains(head, b"\"result\"") {
            return Err(format!(
                "tools/list: HTTP {} {}",
                r.status,
                snippet(&r.body)
            ));
        }
        Ok(r.body.len())
    }

    /// `tools/list`, parsed: the tool names.
    pub async fn tool_names(&mut self) -> Result<(Vec<String>, usize), String> {
        let id = self.next_id();
        let r = self
            .post(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{}}}}"#
            ))
            .await?;
        let v: serde_json::Value = serde_json::from_slice(r.message())
            .map_err(|e| format!("tools/list: {e}: {}", snippet(&r.body)))?;
        let names = v["result"]["tools"]
            .as_array()
            .ok_or_else(|| format!("tools/list: no tools: {}", snippet(&r.body)))?
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        Ok((names, r.body.len()))
    }
}

/// What each request of a closed-loop run does.
#[derive(Debug, Clone)]
pub enum Op {
    /// `tools/call` of this tool name, per connection (cycled).
    CallTool(Vec<String>),
    /// `tools/list`.
    ListTools,
}

/// How a closed-loop run goes.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub conns: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Start an MCP session on every connection first (gateways, and also
    /// direct/plain so every variant does the same work).
    pub session: bool,
}

/// The outcome of a closed-loop run (only requests that completed inside
/// the measured window count).
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Latencies in microseconds, sorted.
    pub lat_us: Vec<u32>,
    /// Bytes of the answers completed in the window.
    pub bytes: u64,
    /// CPU time (µs) each watched process spent in the window.
    pub cpu_us: Vec<Option<u64>>,
}

impl RunResult {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.completed as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.lat_us[idx.min(self.lat_us.len() - 1)]) / 1000.0
    }

    /// CPU µs per completed request of the watched processes `which`.
    pub fn cpu_per_req(&self, which: &[usize]) -> Option<f64> {
        if self.completed == 0 {
            return None;
        }
        let mut sum = 0u64;
        for i in which {
            sum += (*self.cpu_us.get(*i)?)?;
        }
        Some(sum as f64 / self.completed as f64)
    }
}

#[derive(Default)]
struct ConnStats {
    completed: u64,
    errors: u64,
    first_error: Option<String>,
    lat: Vec<u32>,
    bytes: u64,
}

/// Open `spec.conns` connections (with sessions if asked), run `op` on each
/// in a closed loop through warm-up and the measured window, and sample the
/// CPU time of `watch` (process ids) at the window's edges. Must run inside a
/// `LocalSet` (the connections are driven by local tasks).
pub async fn closed_loop(target: &Target, op: &Op, spec: Spec, watch: &[u32]) -> RunResult {
    let mut conns = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        let c = async {
            let mut c = Conn::open(target).await?;
            // 2026-07-28 has no sessions.
            if spec.session && !target.modern {
                c.initialize().await?;
            }
            Ok::<Conn, String>(c)
        };
        match tokio::time::timeout(Duration::from_secs(10), c).await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => return failed(e),
            Err(_) => return failed("connection setup timed out".into()),
        }
    }
    let t0 = Instant::now();
    let start = t0 + spec.warmup;
    let end = start + spec.measure;
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let op = op.clone();
        let timeout = spec.timeout;
        tasks.push(tokio::task::spawn_local(async move {
            let mut st = ConnStats::default();
            let tool = match &op {
                Op::CallTool(names) => names.get(i % names.len().max(1)).cloned(),
                Op::ListTools => None,
            };
            loop {
                let a = Instant::now();
                if a >= end {
                    break;
                }
                let fut = async {
                    match &tool {
                        Some(t) => conn.call_tool(t).await,
                        None => conn.list_tools().await,
                    }
                };
                let r = match tokio::time::timeout(timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {timeout:?}")),
                };
                let b = Instant::now();
                match r {
                    Ok(n) => {
                        if a >= start && b <= end {
                            st.completed += 1;
                            st.bytes += n as u64;
                            st.lat.push(
                                u32::try_from(b.duration_since(a).as_micros()).unwrap_or(u32::MAX),
                            );
                        }
                    }
                    Err(e) => {
                        st.errors += 1;
                        st.first_error.get_or_insert(e);
                        // The connection may be unusable now: stop this client.
                        break;
                    }
                }
            }
            st
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu0: Vec<Option<u64>> = watch.iter().map(|p| super::sys::cpu_us(*p)).collect();
    tokio::time::sleep_until(end.into()).await;
    let cpu1: Vec<Option<u64>> = watch.iter().map(|p| super::sys::cpu_us(*p)).collect();
    let mut out = RunResult {
        seconds: spec.measure.as_secs_f64(),
        cpu_us: cpu0
            .iter()
            .zip(&cpu1)
            .map(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
            .collect(),
        ..Default::default()
    };
    for t in tasks {
        if let Ok(st) = t.await {
            out.completed += st.completed;
            out.errors += st.errors;
            out.bytes += st.bytes;
            out.lat_us.extend_from_slice(&st.lat);
            if out.first_error.is_none() {
                out.first_error = st.first_error;
            }
        }
    }
    out.lat_us.sort_unstable();
    out
}

fn failed(e: String) -> RunResult {
    RunResult {
        errors: 1,
        first_error: Some(e),
        ..Default::default()
    }
}

/// Progress of the sessions scenario.
#[derive(Debug, Clone, Default)]
pub struct SessionsResult {
    pub done: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
}

/// `count` fresh sessions, each `initialize` + one `tools/call` of `tool`,
/// over `conns` keep-alive connections; stops early at `deadline`.
pub async fn sessions(
    target: &Target,
    tool: &str,
    count: u64,
    conns: usize,
    deadline: Instant,
) -> SessionsResult {
    let t0 = Instant::now();
    let next = Rc::new(std::cell::Cell::new(0u64));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let next = Rc::clone(&next);
        let target = target.clone();
        let tool = tool.to_string();
        tasks.push(tokio::task::spawn_local(async move {
            let mut r = SessionsResult::default();
            let mut conn: Option<Conn> = None;
            loop {
                let n = next.get();
                if n >= count || Instant::now() >= deadline {
                    break;
                }
                next.set(n + 1);
                let one = async {
                    if conn.is_none() {
                        conn = Some(Conn::open(&target).await?);
                    }
                    let c = conn.as_mut().ok_or("no connection")?;
                    c.start_session().await?;
                    c.call_tool(&tool).await?;
                    Ok::<(), String>(())
                };
                match tokio::time::timeout(Duration::from_secs(10), one).await {
                    Ok(Ok(())) => r.done += 1,
                    Ok(Err(e)) => {
                        r.errors += 1;
                        r.first_error.get_or_insert(e);
                        conn = None;
                    }
                    Err(_) => {
                        r.errors += 1;
                        r.first_error.get_or_insert("timed out".into());
                        conn = None;
                    }
                }
                if r.errors > 100 {
                    break;
                }
            }
            r
        }));
    }
    let mut out = SessionsResult::default();
    for t in tasks {
        if let Ok(r) = t.await {
            out.done += r.done;
            out.errors += r.errors;
            if out.first_error.is_none() {
                out.first_error = r.first_error;
            }
        }
    }
    out.seconds = t0.elapsed().as_secs_f64();
    out
}

/// What the readers of long-lived event streams saw (shared by all the
/// streams of one run).
#[derive(Debug, Default)]
pub struct EventSink {
    /// Record arrivals (the measured window).
    pub recording: bool,
    /// Events carrying `"sent_us"` seen while recording.
    pub events: u64,
    /// How late each of them arrived (µs from the backend writing it to
    /// the client reading it).
    pub lat_us: Vec<u32>,
    /// Streams that ended or broke before the reader was stopped.
    pub ended: u64,
    pub first_error: Option<String>,
}

/// Read an event stream to its end, recording into `sink` how late each
/// timestamped event (`"sent_us":N`, see the backend's `--events`) arrived.
/// Runs until the stream ends or the task is aborted.
pub async fn read_events(mut body: Incoming, sink: Rc<RefCell<EventSink>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                let now = super::backend::unix_us();
                // Complete events end with a blank line.
                let mut done = 0;
                while let Some(end) = memchr::memmem::find(&buf[done..], b"\n\n") {
                    let event = &buf[done..done + end];
                    if let Some(sent) = sent_us(event) {
                        let mut s = sink.borrow_mut();
                        if s.recording {
                            s.events += 1;
                            let lat = now.saturating_sub(sent);
                            s.lat_us.push(u32::try_from(lat).unwrap_or(u32::MAX));
                        }
                    }
                    done += end + 2;
                }
                buf.drain(..done);
            }
            Some(Err(e)) => {
                let mut s = sink.borrow_mut();
                s.ended += 1;
                s.first_error
                    .get_or_insert(format!("event stream broke: {e}"));
                return;
            }
            None => {
                let mut s = sink.borrow_mut();
                s.ended += 1;
                s.first_error.get_or_insert("event stream ended".into());
                return;
            }
        }
    }
}

/// The `"sent_us":N` of an event, if it has one.
fn sent_us(event: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(event, b"\"sent_us\":")? + 10;
    let digits = event.get(at..)?;
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(digits.get(..n)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sent_us_is_read_from_an_event() {
        let e = br#"id: x
data: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"sent_us":1712345678901234}}}"#;
        assert_eq!(super::sent_us(e), Some(1_712_345_678_901_234));
        assert_eq!(super::sent_us(b"data: {}"), None);
    }
}
