//! The benchmark's MCP backend: canned JSON-RPC answers straight on hyper, so
//! what a gateway costs is not hidden behind the backend's own cost.
//!
//! - `initialize`: a result with `tools` capability and a fresh `Mcp-Session-Id`;
//! - `server/discover`: 2026-07-28 and the handshake versions (it answers both
//!   eras, as the SDK servers do); a 2026-07-28 request's result carries
//!   `resultType`;
//! - notifications and client responses: `202 Accepted`;
//! - `tools/list`: a precomputed list (`--tools N`, `--tool-bytes B`; `--big` is
//!   2,000 tools of about 1,000 bytes, about 2 MB);
//! - `tools/call`: a small text result (unknown tool names get a JSON-RPC
//!   error, so a gateway that forgets to un-prefix a name is noticed);
//! - `ping`: `{}`; `DELETE`: 200;
//! - `GET` accepting `text/event-stream`: a standalone SSE stream, a priming
//!   event (an id and empty data) then a `: ping` comment every `--ping-ms`
//!   (default 500), open until the client goes away (the soak's streams);
//!   with `--events`, a `notifications/message` event instead of each ping,
//!   carrying the time it was written (`"sent_us"`, µs since the Unix
//!   epoch) and an event id (the merged-streams scenario measures how late
//!   events arrive); other `GET`s: 405.
//!
//! `--delay-ms D` delays every answer by `D` ms (fan-out scenario). Answers are
//! `application/json`, except a `tools/call` whose arguments carry
//! `"stream_ms": N`: that one answers `text/event-stream`, a
//! `notifications/progress` (or `notifications/message` without a progress
//! token) at once and the result N ms later (at most 60 s), so a client can
//! drop a POST mid-stream. Sessions are not checked nor stored (the backend's
//! memory must not grow).

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Command-line options of the backend.
#[derive(Debug, Clone)]
pub struct Options {
    /// 0: any free port (the chosen one is printed).
    pub port: u16,
    /// `serverInfo.name`, and the prefix of the session ids it hands out.
    pub name: String,
    /// Number of tools in `tools/list` (the first is always `echo`).
    pub tools: usize,
    /// Approximate size of one tool entry, in bytes.
    pub tool_bytes: usize,
    /// Fixed delay before every answer.
    pub delay_ms: u64,
    /// Tokio worker threads (1: a current-thread runtime).
    pub threads: usize,
    /// Interval of the `: ping` comments on `GET` streams.
    pub ping_ms: u64,
    /// Timestamped events instead of the pings.
    pub events: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            name: "bench".into(),
            tools: 8,
            tool_bytes: 300,
            delay_ms: 0,
            threads: 1,
            ping_ms: 500,
            events: false,
        }
    }
}

pub const USAGE: &str = "bench-backend [--port P] [--name N] [--tools N] [--tool-bytes B] [--big] [--delay-ms D] [--threads T] [--ping-ms MS] [--events]

A fast MCP test backend on 127.0.0.1 (canned JSON-RPC answers). Prints
`listening 127.0.0.1:PORT` once it accepts connections.
  --big       2,000 tools of about 1,000 bytes each (a tools/list of about 2 MB)
  --ping-ms   interval of the `: ping` comments on GET (SSE) streams (default 500)
  --events    a timestamped notifications/message event on GET streams instead of each ping";

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--port" => o.port = num(&val(a)?)?,
                "--name" => o.name = val(a)?,
                "--tools" => o.tools = num(&val(a)?)?,
                "--tool-bytes" => o.tool_bytes = num(&val(a)?)?,
                "--delay-ms" => o.delay_ms = num(&val(a)?)?,
                "--threads" => o.threads = num::<usize>(&val(a)?)?.max(1),
                "--ping-ms" => o.ping_ms = num::<u64>(&val(a)?)?.max(1),
                "--events" => o.events = true,
                "--big" => {
                    o.tools = 2000;
                    o.tool_bytes = 1000;
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown option {other:?}\n{USAGE}")),
            }
        }
        if o.tools == 0 {
            return Err("--tools must be at least 1".into());
        }
        Ok(o)
    }

    /// The arguments that reproduce these options.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--port".into(),
            self.port.to_string(),
            "--name".into(),
            self.name.clone(),
            "--tools".into(),
            self.tools.to_string(),
            "--tool-bytes".into(),
            self.tool_bytes.to_string(),
            "--delay-ms".into(),
            self.delay_ms.to_string(),
            "--threads".into(),
            self.threads.to_string(),
            "--ping-ms".into(),
            self.ping_ms.to_string(),
        ];
        if self.events {
            args.push("--events".into());
        }
        args
    }
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

/// The name of tool `i` (0 is `echo`).
pub fn tool_name(i: usize) -> String {
    if i == 0 {
        "echo".into()
    } else {
        format!("tool_{i:04}")
    }
}

/// One tool entry of about `bytes` bytes (a realistic shape: title,
/// description, an input schema with several properties, annotations).
fn tool_json(i: usize, bytes: usize) -> String {
    let name = tool_name(i);
    let build = |desc: &str| {
        serde_json::json!({
            "name": name,
            "title": format!("Tool {i}"),
            "description": desc,
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                    "flags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["query"]
            },
            "annotations": {"readOnlyHint": true}
        })
        .to_string()
    };
    let base = build("").len();
    const WORDS: &str =
        "Returns the matching records from the benchmark data set, ordered by relevance; ";
    let want = bytes.saturating_sub(base);
    let desc: String = WORDS.chars().cycle().take(want).collect();
    build(&desc)
}

/// `{"tools":[...]}` with `n` tools of about `bytes` bytes each.
pub fn tools_list_result(n: usize, bytes: usize) -> String {
    let mut s = String::with_capacity(n * (bytes + 1) + 16);
    s.push_str("{\"tools\":[");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&tool_json(i, bytes));
    }
    s.push_str("]}");
    s
}

const CALL_RESULT: &str =
    r#"{"content":[{"type":"text","text":"ok: benchmark answer"}],"isError":false}"#;
const MODERN_CALL_RESULT: &str = r#"{"content":[{"type":"text","text":"ok: benchmark answer"}],"isError":false,"resultType":"complete"}"#;

struct State {
    opts: Options,
    /// `,"result":{"tools":[...]}}`: the tail of a `tools/list` answer.
    list_tail: Vec<u8>,
    sessions: AtomicU64,
    /// `GET` streams opened (for their event ids).
    streams: AtomicU64,
    salt: u64,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InitParams<'a> {
    #[serde(borrow, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamArgs {
    stream_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

/// A response body: whole, or an SSE stream written as it goes.
pub type Body =
    Either<Full<Bytes>, StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>>;

fn sse(frames: BoxStream<'static, Result<Frame<Bytes>, Infallible>>) -> Response<Body> {
    let mut r = Response::new(Either::Right(StreamBody::new(frames)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

/// `tools/call` with `stream_ms`: a notification at once, the result later.
fn streamed_call(id: &RawValue, token: Option<&RawValue>, ms: u64) -> Response<Body> {
    let first = match token {
        Some(t) => format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":1,"total":2}}}}"#,
            t.get()
        ),
        None => r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working"}}"#.to_string(),
    };
    let first = Bytes::from(format!("event: message\ndata: {first}\n\n"));
    let mut last = b"event: message\ndata: ".to_vec();
    last.extend_from_slice(&answer(
        id,
        format!(",\"result\":{CALL_RESULT}}}").as_bytes(),
    ));
    last.extend_from_slice(b"\n\n");
    let last = Bytes::from(last);
    let delay = Duration::from_millis(ms.min(60_000));
    let frames = futures::stream::once(async move { Ok(Frame::data(first)) }).chain(
        futures::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok(Frame::data(last))
        }),
    );
    sse(frames.boxed())
}

/// Microseconds since the Unix epoch (the clock every process on the
/// machine shares).
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A standalone `GET` stream: a priming event, then `: ping` comments (or
/// timestamped events) until the client goes away (the write fails and
/// hyper drops the stream).
fn get_stream(sid: &str, every: Duration, events: bool) -> Response<Body> {
    let priming = Bytes::from(format!("id: {sid}-0\ndata:\n\n"));
    let sid = sid.to_string();
    let pings = futures::stream::unfold(
        (
            tokio::time::interval_at(tokio::time::Instant::now() + every, every),
            1u64,
        ),
        move |(mut t, n)| {
            let sid = sid.clone();
            async move {
                t.tick().await;
                let frame = if events {
                    Bytes::from(format!(
                        "id: {sid}-{n}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":{{\"sent_us\":{}}}}}}}\n\n",
                        unix_us()
                    ))
                } else {
                    Bytes::from_static(b": ping\n\n")
                };
                Some((Ok(Frame::data(frame)), (t, n + 1)))
            }
        },
    );
    sse(
        futures::stream::once(async move { Ok(Frame::data(priming)) })
            .chain(pings)
            .boxed(),
    )
}

/// A 2026-07-28 request carries its protocol version in `_meta`.
fn modern_request(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"io.modelcontextprotocol/protocolVersion\"").is_some()
}

fn answer(id: &RawValue, tail: &[u8]) -> Vec<u8> {
    let id = id.get().as_bytes();
    let mut out = Vec::with_capacity(24 + id.len() + tail.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id);
    out.extend_from_slice(tail);
    out
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::new())));
    *r.status_mut() = status;
    r
}

fn error(id: Option<&RawValue>, code: i64, message: &str) -> Response<Body> {
    let id = id.map_or("null", |i| i.get());
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        serde_json::Value::String(message.into())
    );
    json(StatusCode::OK, body.into_bytes())
}

impl State {
    fn known_tool(&self, name: &str) -> bool {
        if name == "echo" {
            return true;
        }
        name.strip_prefix("tool_")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= 1 && n < self.opts.tools)
    }

    fn post(&self, body: &[u8]) -> Response<Body> {
        let Ok(p) = serde_json::from_slice::<Probe<'_>>(body) else {
            return error(None, -32700, "Parse error");
        };
        let (Some(id), Some(method)) = (p.id, p.method.as_deref()) else {
            // A notification or a client's response.
            return empty(StatusCode::ACCEPTED);
        };
        match method {
            "initialize" => {
                let requested = p
                    .params
                    .and_then(|x| serde_json::from_str::<InitParams<'_>>(x.get()).ok())
                    .and_then(|x| x.protocol_version.map(Cow::into_owned));
                let version = requested
                    .as_deref()
                    .filter(|v| ["2025-03-26", "2025-06-18", "2025-11-25"].contains(v))
                    .unwrap_or("2025-06-18");
                let tail = format!(
                    r#","result":{{"protocolVersion":"{version}","capabilities":{{"tools":{{"listChanged":false}}}},"serverInfo":{{"name":"{}","version":"1.0.0"}}}}}}"#,
                    self.opts.name
                );
                let n = self.sessions.fetch_add(1, Ordering::Relaxed);
                let sid = format!("{}-{:016x}-{n:x}", self.opts.name, self.salt);
                let mut r = json(StatusCode::OK, answer(id, tail.as_bytes()));
                if let Ok(v) = HeaderValue::from_str(&sid) {
                    r.headers_mut().insert("mcp-session-id", v);
                }
                r
            }
            "server/discover" => {
                let tail = format!(
                    r#","result":{{"resultType":"complete","supportedVersions":["2026-07-28","2025-11-25","2025-06-18","2025-03-26"],"capabilities":{{"tools":{{}}}},"_meta":{{"io.modelcontextprotocol/serverInfo":{{"name":"{}","version":"1.0.0"}}}},"ttlMs":60000,"cacheScope":"public"}}}}"#,
                    self.opts.name
                );
                json(StatusCode::OK, answer(id, tail.as_bytes()))
            }
            "tools/list" => json(StatusCode::OK, answer(id, &self.list_tail)),
            "tools/call" => {
                let call = p
                    .params
                    .and_then(|x| serde_json::from_str::<CallParams<'_>>(x.get()).ok());
                let name = call
                    .as_ref()
                    .and_then(|x| x.name.as_deref())
                    .unwrap_or_default();
                if !self.known_tool(name) {
                    return error(Some(id), -32602, &format!("Unknown tool: {name}"));
                }
                let stream_ms = call
                    .as_ref()
                    .and_then(|c| c.arguments)
                    .filter(|a| a.get().contains("\"stream_ms\""))
                    .and_then(|a| serde_json::from_str::<StreamArgs>(a.get()).ok())
                    .and_then(|a| a.stream_ms);
                if let Some(ms) = stream_ms {
                    let token = call
                        .as_ref()
                        .and_then(|c| c.meta)
                        .and_then(|m| serde_json::from_str::<Meta<'_>>(m.get()).ok())
                        .and_then(|m| m.progress_token);
                    return streamed_call(id, token, ms);
                }
                let tail = if modern_request(body) {
                    format!(",\"result\":{MODERN_CALL_RESULT}}}")
                } else {
                    format!(",\"result\":{CALL_RESULT}}}")
                };
                json(StatusCode::OK, answer(id, tail.as_bytes()))
            }
            "ping" => json(StatusCode::OK, answer(id, br#","result":{}}"#)),
            _ => error(Some(id), -32601, &format!("Method not found: {method}")),
        }
    }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if st.opts.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(st.opts.delay_ms)).await;
    }
    let method = req.method().clone();
    Ok(match method {
        Method::POST => match req.into_body().collect().await {
            Ok(b) => st.post(&b.to_bytes()),
            Err(_) => empty(StatusCode::BAD_REQUEST),
        },
        Method::DELETE => empty(StatusCode::OK),
        Method::GET
            if req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/event-stream")) =>
        {
            let n = st.streams.fetch_add(1, Ordering::Relaxed);
            let sid = format!("{}-{:016x}-s{n:x}", st.opts.name, st.salt);
            get_stream(&sid, Duration::from_millis(st.opts.ping_ms), st.opts.events)
        }
        _ => {
            let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    })
}

/// Serve until killed. Prints `listening 127.0.0.1:PORT` on stdout first.
pub fn run(opts: Options) -> std::io::Result<()> {
    let rt = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(serve(opts))
}

async fn serve(opts: Options) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
    let addr = listener.local_addr()?;
    let list = tools_list_result(opts.tools, opts.tool_bytes);
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    let st = Arc::new(State {
        list_tail: format!(",\"result\":{list}}}").into_bytes(),
        opts,
        sessions: AtomicU64::new(0),
        streams: AtomicU64::new(0),
        salt,
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // Out of descriptors or similar: back off briefly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let st = Arc::clone(&st);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(Arc::clone(&st), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Entry point of the `bench-backend` binary (and `bench __backend`).
pub fn main_with_args(args: &[String]) -> i32 {
    match Options::parse(args) {
        Ok(o) => match run(o) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("bench-backend: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_list_is_about_two_megabytes() {
        let s = tools_list_result(2000, 1000);
        assert!((1_900_000..2_100_000).contains(&s.len()), "{}", s.len());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        assert_eq!(v["tools"].as_array().map(Vec::len), Some(2000));
        assert_eq!(v["tools"][0]["name"], "echo");
        assert_eq!(v["tools"][1999]["name"], "tool_1999");
    }
}
