//! Soak mode: mcpgw in Envoy under bounded, mixed MCP traffic for a long time
//! (`bench --soak 30m`), watching that nothing grows without bound.
//!
//! Two Envoys run side by side, each with mcpgw in front of the benchmark's
//! own backend(s):
//! - `single`: one backend, so a `GET` with the session id is passed through
//!   to the backend's SSE stream (priming event, then `: ping` comments);
//! - `multi`: two backends (multiplexed, prefixed tool names), where mcpgw
//!   answers `GET` with 405 as documented.
//!
//! A fixed number of workers (half per Envoy) loop over sessions: initialize,
//! `notifications/initialized`, `tools/list`, a few `tools/call` (sometimes a
//! streamed one read to the end), sometimes a `GET` stream dropped after less
//! than 2 s, sometimes a POST dropped mid-stream, now and then a deliberately
//! bad request (malformed JSON, unknown / deleted / expired session, missing
//! session, unknown tool), then `DELETE` (most sessions) or nothing (an
//! abandoned session). Every HTTP request takes a token from one shared
//! limiter (`--rate`), so the machine is not saturated: the point is duration.
//!
//! Every `--sample` interval (one minute by default) the harness reads, per
//! Envoy: `VmRSS` and CPU time (`/proc`), tcmalloc's heap figures, active
//! connections and requests, every `wasm` stat (`/stats`), mcpgw's own
//! counters (`/stats/prometheus`), warnings and errors in Envoy's log, and
//! the client-side counts (errors by kind). The report (`bench/soak.md` by
//! default) gives the per-sample tables, start and end RSS, and a verdict.
//! The run is bounded: traffic stops after DURATION and the process exits at
//! DURATION + 1 minute at the latest; children die with it.

use super::client::{contains, PROTOCOL_VERSION};
use super::procs::{mcpgw_plugin, render, Backend, Envoy, Proxy, SESSION_KEY};
use super::{backend, sys};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub const USAGE: &str = "bench --soak DURATION [--out bench/soak.md] [options]

Soak test: mcpgw in Envoy under bounded mixed MCP traffic for DURATION (30m,
90s, 1h30m), on 127.0.0.1 only; samples Envoy's RSS, stats and log and the
client-side errors every interval and writes a Markdown report with a verdict.
Envoy: $ENVOY_BIN, else <repo>/.venv/bin/envoy. Filter:
target/wasm32-wasip1/release/mcpgw.wasm (./build.sh wasm).

  --out PATH              report file (default bench/soak.md)
  --workers N             concurrent client loops, half per Envoy (default 8)
  --rate N                cap on HTTP requests per second, all workers together (default 100)
  --sample DURATION       sampling interval (default 1m; DURATION/10 for runs under 10 minutes)
  --session-ttl DURATION  mcpgw session.ttl (default 10m: sessions and their revocation
                          records expire, and are recycled, within a 30-minute run)
  --envoy-concurrency N   Envoy worker threads per Envoy (default 2)
  --timeout DURATION      per-request timeout (default 10s)
  --seed N                random seed of the workers (default: from the clock)
  --wasm PATH             another build of the filter
  --note TEXT             a note printed at the top of the report";

/// What a soak run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub out: PathBuf,
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    pub workers: usize,
    pub rate: f64,
    pub sample: Duration,
    pub session_ttl: Duration,
    pub envoy_concurrency: usize,
    pub timeout: Duration,
    pub seed: u64,
    pub note: Option<String>,
}

/// `30m`, `90s`, `1h30m`, `500ms`, or plain seconds (`45`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("not a duration: {s:?} (like 30m, 90s, 1h30m)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(n);
        let v: f64 = num.parse().map_err(|_| bad())?;
        let u = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(u);
        total += v * match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = next;
    }
    Ok(Duration::from_secs_f64(total))
}

/// `1m30s`-style text for a duration (whole seconds).
fn hms(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let root = crate::envoy::workspace_root();
        let mut o = Options {
            duration: Duration::ZERO,
            out: root.join("bench/soak.md"),
            envoy: std::env::var_os("ENVOY_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".venv/bin/envoy")),
            wasm: root.join("target/wasm32-wasip1/release/mcpgw.wasm"),
            workers: 8,
            rate: 100.0,
            sample: Duration::ZERO,
            session_ttl: Duration::from_secs(600),
            envoy_concurrency: 2,
            timeout: Duration::from_secs(10),
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
            note: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--soak" => o.duration = parse_duration(&val()?)?,
                "--out" => o.out = PathBuf::from(val()?),
                "--workers" => o.workers = num::<usize>(&val()?)?.clamp(2, 256),
                "--rate" => {
                    o.rate = num(&val()?)?;
                    if !(o.rate.is_finite() && o.rate >= 1.0) {
                        return Err("--rate must be at least 1".into());
                    }
                }
                "--sample" => o.sample = parse_duration(&val()?)?,
                "--session-ttl" => o.session_ttl = parse_duration(&val()?)?,
                "--envoy-concurrency" => o.envoy_concurrency = num::<usize>(&val()?)?.max(1),
                "--timeout" => o.timeout = parse_duration(&val()?)?,
                "--seed" => o.seed = num(&val()?)?,
                "--wasm" => o.wasm = PathBuf::from(val()?),
                "--note" => o.note = Some(val()?),
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown soak option {other:?}\n\n{USAGE}")),
            }
        }
        if o.duration < Duration::from_secs(10) {
            return Err(format!(
                "--soak needs a duration of at least 10s\n\n{USAGE}"
            ));
        }
        if o.sample.is_zero() {
            o.sample = if o.duration >= Duration::from_secs(600) {
                Duration::from_secs(60)
            } else {
                (o.duration / 10).max(Duration::from_secs(5))
            };
        }
        o.sample = o.sample.max(Duration::from_secs(1));
        if o.session_ttl < Duration::from_secs(60) {
            return Err("--session-ttl must be at least 1m".into());
        }
        if o.timeout < Duration::from_secs(1) {
            return Err("--timeout must be at least 1s".into());
        }
        Ok(o)
    }
}

fn progress(msg: &str) {
    eprintln!("soak: {msg}");
}

// ----- random numbers -------------------------------------------------------------

/// splitmix64: enough randomness for choosing what a worker does next.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        let n = v.len() as u64;
        if n == 0 {
            return None;
        }
        v.get((self.next() % n) as usize)
    }
}

// ----- shared client state ----------------------------------------------------------

/// One token per HTTP request, `rate` per second, shared by all workers.
struct Limiter {
    every: Duration,
    next: Cell<Instant>,
}

impl Limiter {
    async fn acquire(&self) {
        let now = Instant::now();
        let slot = self.next.get().max(now);
        self.next.set(slot + self.every);
        if slot > now {
            tokio::time::sleep_until(slot.into()).await;
        }
    }
}

/// Client-side counts of one gateway (cumulative).
#[derive(Debug, Clone, Default)]
struct Counts {
    requests: u64,
    sessions_started: u64,
    sessions_deleted: u64,
    sessions_abandoned: u64,
    /// Sessions cut short by a failure (counted in `errors` too).
    sessions_failed: u64,
    tool_calls: u64,
    streamed_calls: u64,
    get_streams: u64,
    get_stream_bytes: u64,
    posts_dropped: u64,
    connections_opened: u64,
    /// Answers with `Connection: close`, by (request, status).
    closed_by_server: BTreeMap<(&'static str, u16), u64>,
    /// Deliberately bad requests, by kind: (sent, answered as expected).
    deliberate: BTreeMap<&'static str, (u64, u64)>,
    /// Everything else that went wrong, by kind.
    errors: BTreeMap<&'static str, u64>,
}

impl Counts {
    fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    fn deliberate_total(&self) -> (u64, u64) {
        self.deliberate
            .values()
            .fold((0, 0), |(a, b), (s, e)| (a + s, b + e))
    }
}

/// What the workers of one gateway share with the sampler.
#[derive(Default)]
struct Shared {
    counts: RefCell<Counts>,
    /// First examples of each error kind.
    examples: RefCell<BTreeMap<&'static str, Vec<String>>>,
    open_conns: Cell<i64>,
    open_streams: Cell<i64>,
}

impl Shared {
    fn error(&self, kind: &'static str, what: String) {
        *self.counts.borrow_mut().errors.entry(kind).or_default() += 1;
        let mut ex = self.examples.borrow_mut();
        let v = ex.entry(kind).or_default();
        if v.len() < 5 {
            v.push(what);
        }
    }

    fn deliberate(&self, kind: &'static str, as_expected: bool) {
        let mut c = self.counts.borrow_mut();
        let e = c.deliberate.entry(kind).or_default();
        e.0 += 1;
        if as_expected {
            e.1 += 1;
        }
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.borrow_mut());
    }
}

// ----- HTTP -----------------------------------------------------------------------

/// Why an exchange failed.
#[derive(Debug)]
enum Fail {
    /// Could not connect, or the connection broke (send or read).
    Conn(String),
    Timeout(String),
    /// An answer, but the wrong one.
    Status(String),
    Answer(String),
}

impl Fail {
    fn kind(&self) -> &'static str {
        match self {
            Fail::Conn(_) => "connection",
            Fail::Timeout(_) => "timeout",
            Fail::Status(_) => "unexpected_status",
            Fail::Answer(_) => "bad_answer",
        }
    }

    fn text(&self) -> &str {
        match self {
            Fail::Conn(s) | Fail::Timeout(s) | Fail::Status(s) | Fail::Answer(s) => s,
        }
    }
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(200)]).replace('\n', "\\n")
}

/// An HTTP answer, whole.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn is_sse(&self) -> bool {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    }

    /// The JSON-RPC response: the body, or the SSE event carrying it.
    fn message(&self) -> &[u8] {
        if !self.is_sse() {
            return &self.body;
        }
        for line in self.body.split(|b| *b == b'\n') {
            if let Some(d) = line.strip_prefix(b"data:") {
                if contains(d, b"\"result\"") || contains(d, b"\"error\"") {
                    return d;
                }
            }
        }
        &self.body
    }

    fn describe(&self) -> String {
        format!("HTTP {} {}", self.status, snippet(&self.body))
    }
}

/// One client connection (HTTP/1.1 keep-alive), closed when dropped.
struct Http {
    tx: SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
    shared: Rc<Shared>,
    authority: String,
    /// The server answered `Connection: close`: open a new one for the next request.
    closing: bool,
}

impl Drop for Http {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.open_conns.set(self.shared.open_conns.get() - 1);
    }
}

impl Http {
    async fn open(port: u16, shared: &Rc<Shared>) -> Result<Http, Fail> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| Fail::Timeout(format!("connect {addr}: timed out")))?
                .map_err(|e| Fail::Conn(format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Fail::Conn(format!("handshake {addr}: {e}")))?;
        let task = tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        shared.open_conns.set(shared.open_conns.get() + 1);
        shared.count(|c| c.connections_opened += 1);
        Ok(Http {
            tx,
            task,
            shared: Rc::clone(shared),
            authority: format!("127.0.0.1:{port}"),
            closing: false,
        })
    }

    /// Can take another request (as far as the client can tell).
    fn usable(&self) -> bool {
        !self.closing && !self.tx.is_closed()
    }

    /// Send a request; the answer's body is left to the caller.
    async fn send(
        &mut self,
        what: &'static str,
        method: Method,
        session: Option<&str>,
        accept: &str,
        body: Option<String>,
    ) -> Result<Response<Incoming>, Fail> {
        let mut b = Request::builder()
            .method(method)
            .uri("/mcp")
            .header(HOST, self.authority.as_str())
            .header(ACCEPT, accept);
        if body.is_some() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        if let Some(s) = session {
            b = b
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Fail::Conn(e.to_string()))?;
        self.tx
            .ready()
            .await
            .map_err(|e| Fail::Conn(format!("{what}: connection not ready: {e}")))?;
        let resp = self
            .tx
            .send_request(req)
            .await
            .map_err(|e| Fail::Conn(format!("{what}: send: {e}")))?;
        let close = resp
            .headers()
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        if close {
            self.closing = true;
            let status = resp.status().as_u16();
            let mut c = self.shared.counts.borrow_mut();
            *c.closed_by_server.entry((what, status)).or_default() += 1;
        }
        Ok(resp)
    }

    /// A whole exchange, within `timeout`.
    async fn exchange(
        &mut self,
        what: &'static str,
        method: Method,
        session: Option<&str>,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Reply, Fail> {
        let fut = async {
            let resp = self
                .send(
                    what,
                    method,
                    session,
                    "application/json, text/event-stream",
                    body,
                )
                .await?;
            let status = resp.status().as_u16();
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| Fail::Conn(format!("{what}: read body: {e}")))?
                .to_bytes();
            Ok(Reply {
                status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Fail::Timeout(format!("{what}: no answer within {timeout:?}")))?
    }
}

/// Read the next data frame of a streaming body (skipping trailers).
async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, Fail> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(Fail::Conn(format!("read stream: {e}"))),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    return Ok(Some(d));
                }
            }
        }
    }
}

// ----- the workers ------------------------------------------------------------------

/// One gateway under test, as the workers see it.
struct Gateway {
    label: &'static str,
    port: u16,
    /// Tools to call (client-visible names).
    tools: Vec<String>,
    /// `GET` streams pass through (one backend); otherwise mcpgw answers 405.
    streams: bool,
    shared: Rc<Shared>,
}

struct Ctx {
    gw: Rc<Gateway>,
    limiter: Rc<Limiter>,
    stop: Rc<Cell<bool>>,
    timeout: Duration,
    ttl: Duration,
}

fn rpc(id: u64, method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

fn call_params(tool: &str, extra_args: &str, meta: &str) -> String {
    format!(r#"{{"name":"{tool}","arguments":{{"text":"hello"{extra_args}}}{meta}}}"#)
}

const INIT_PARAMS: &str = r#"{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcpgw-soak","version":"1.0.0"}}"#;

/// A worker: sessions, one after the other, until told to stop.
async fn worker(ctx: Rc<Ctx>, seed: u64) {
    let mut rng = Rng(seed);
    let mut conn: Option<Http> = None;
    // A session kept (never used again) to present after it expired.
    let mut old: Option<(String, Instant)> = None;
    let mut next_id = 1u64;
    while !ctx.stop.get() {
        let ok = session(&ctx, &mut rng, &mut conn, &mut old, &mut next_id).await;
        if !ok {
            // Something failed: a fresh connection and a short pause.
            conn = None;
            ctx.gw.shared.count(|c| c.sessions_failed += 1);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Check an answer: the status, and that the JSON-RPC message has `needle`.
fn expect(r: &Reply, what: &str, statuses: &[u16], needle: Option<&[u8]>) -> Result<(), Fail> {
    if !statuses.contains(&r.status) {
        return Err(Fail::Status(format!("{what}: {}", r.describe())));
    }
    if let Some(n) = needle {
        if !contains(r.message(), n) {
            return Err(Fail::Answer(format!("{what}: {}", r.describe())));
        }
    }
    Ok(())
}

/// The keep-alive connection, opened again when the server closed it.
async fn usable<'a>(conn: &'a mut Option<Http>, ctx: &Ctx) -> Result<&'a mut Http, Fail> {
    if !conn.as_ref().is_some_and(Http::usable) {
        *conn = None;
        ctx.limiter.acquire().await;
        *conn = Some(Http::open(ctx.gw.port, &ctx.gw.shared).await?);
    }
    conn.as_mut()
        .ok_or_else(|| Fail::Conn("no connection".into()))
}

/// One session; false when it was cut short by a failure (already counted).
async fn session(
    ctx: &Rc<Ctx>,
    rng: &mut Rng,
    conn: &mut Option<Http>,
    old: &mut Option<(String, Instant)>,
    next_id: &mut u64,
) -> bool {
    let gw = &ctx.gw;
    let sh = &gw.shared;
    let mut id = || {
        *next_id += 1;
        *next_id
    };
    let fail = |f: Fail| {
        sh.error(f.kind(), f.text().to_string());
        false
    };
    macro_rules! check {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(f) => return fail(f),
            }
        };
    }
    // One request on the keep-alive connection.
    macro_rules! req {
        ($what:expr, $method:expr, $sid:expr, $body:expr) => {{
            let c = check!(usable(conn, ctx).await);
            ctx.limiter.acquire().await;
            sh.count(|c| c.requests += 1);
            c.exchange($what, $method, $sid, $body, ctx.timeout).await
        }};
    }
    // Now and then a new connection, so connections churn too.
    if rng.chance(0.05) {
        *conn = None;
    }

    // initialize -> notifications/initialized -> tools/list
    let r = check!(req!(
        "initialize",
        Method::POST,
        None,
        Some(rpc(id(), "initialize", INIT_PARAMS))
    ));
    check!(expect(
        &r,
        "initialize",
        &[200],
        Some(b"\"protocolVersion\"")
    ));
    let Some(sid) = r
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return fail(Fail::Answer("initialize: no Mcp-Session-Id".into()));
    };
    sh.count(|c| c.sessions_started += 1);
    let sid = sid.as_str();
    let r = req!(
        "notifications/initialized",
        Method::POST,
        Some(sid),
        Some(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string())
    );
    check!(r.and_then(|r| expect(&r, "notifications/initialized", &[202], None)));
    let r = req!(
        "tools/list",
        Method::POST,
        Some(sid),
        Some(rpc(id(), "tools/list", "{}"))
    );
    check!(r.and_then(|r| {
        expect(&r, "tools/list", &[200], Some(b"\"tools\""))?;
        for t in &gw.tools {
            if !contains(r.message(), format!("\"name\":\"{t}\"").as_bytes()) {
                return Err(Fail::Answer(format!(
                    "tools/list: no {t}: {}",
                    r.describe()
                )));
            }
        }
        Ok(())
    }));

    // A GET stream, held for a moment and dropped, beside the calls below.
    let mut stream_task = None;
    if rng.chance(0.3) {
        if gw.streams {
            let hold = Duration::from_millis(rng.range(100, 1900));
            let ctx2 = Rc::clone(ctx);
            let sid2 = sid.to_string();
            stream_task = Some(tokio::task::spawn_local(async move {
                if let Err(f) = get_stream(&ctx2, &sid2, hold).await {
                    ctx2.gw.shared.error(f.kind(), f.text().to_string());
                }
            }));
        } else {
            // Multiplexed: mcpgw answers 405 (documented).
            let r = check!(req!("GET", Method::GET, Some(sid), None));
            sh.deliberate("get_multiplexed_405", r.status == 405);
        }
    }

    // A few tools/call; sometimes a streamed answer read to its end.
    for _ in 0..rng.range(1, 4) {
        let tool = rng.pick(&gw.tools).cloned().unwrap_or_default();
        let streamed = rng.chance(0.1);
        let extra = if streamed {
            format!(r#","stream_ms":{}"#, rng.range(20, 300))
        } else {
            String::new()
        };
        let r = req!(
            "tools/call",
            Method::POST,
            Some(sid),
            Some(rpc(id(), "tools/call", &call_params(&tool, &extra, "")))
        );
        check!(r.and_then(|r| {
            expect(&r, "tools/call", &[200], Some(b"\"isError\":false"))?;
            if streamed && !r.is_sse() {
                return Err(Fail::Answer(format!(
                    "streamed tools/call: not SSE: {}",
                    r.describe()
                )));
            }
            Ok(())
        }));
        sh.count(|c| {
            c.tool_calls += 1;
            c.streamed_calls += u64::from(streamed);
        });
    }

    // A POST dropped mid-stream: the first event read, then the connection closed.
    if rng.chance(0.15) {
        let tool = rng.pick(&gw.tools).cloned().unwrap_or_default();
        let body = rpc(
            id(),
            "tools/call",
            &call_params(
                &tool,
                r#","stream_ms":5000"#,
                r#","_meta":{"progressToken":"soak"}"#,
            ),
        );
        let linger = Duration::from_millis(rng.range(0, 300));
        check!(post_dropped(ctx, sid, body, linger).await);
    }

    // Now and then a deliberately bad request.
    if rng.chance(0.08) {
        let c = check!(usable(conn, ctx).await);
        check!(bad_request(ctx, rng, c, sid, old, id()).await);
    }

    // DELETE most sessions; abandon the others.
    if rng.chance(0.8) {
        let r = req!("DELETE", Method::DELETE, Some(sid), None);
        check!(r.and_then(|r| expect(&r, "DELETE", &[200, 202, 204], None)));
        sh.count(|c| c.sessions_deleted += 1);
        if rng.chance(0.1) {
            // The deleted session again: 404.
            let r = check!(req!(
                "tools/call (deleted session)",
                Method::POST,
                Some(sid),
                Some(rpc(id(), "tools/call", &call_params(&tool0(gw), "", "")))
            ));
            sh.deliberate("deleted_session", r.status == 404);
        }
    } else {
        sh.count(|c| c.sessions_abandoned += 1);
        if old.is_none() {
            *old = Some((sid.to_string(), Instant::now()));
        }
    }
    if let Some(t) = stream_task {
        let _ = t.await;
    }
    true
}

fn tool0(gw: &Gateway) -> String {
    gw.tools.first().cloned().unwrap_or_default()
}

/// `GET` with the session: 200 `text/event-stream`, the priming event,
/// then whatever comes for `hold`; then the connection is dropped.
async fn get_stream(ctx: &Ctx, sid: &str, hold: Duration) -> Result<(), Fail> {
    let sh = &ctx.gw.shared;
    ctx.limiter.acquire().await;
    let mut c = Http::open(ctx.gw.port, sh).await?;
    sh.count(|c| c.requests += 1);
    let resp = tokio::time::timeout(
        ctx.timeout,
        c.send(
            "GET stream",
            Method::GET,
            Some(sid),
            "text/event-stream",
            None,
        ),
    )
    .await
    .map_err(|_| Fail::Timeout("GET: no headers in time".into()))??;
    let status = resp.status().as_u16();
    let sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = resp.into_body();
    if status != 200 || !sse {
        let rest = tokio::time::timeout(Duration::from_secs(2), body.collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(Fail::Status(format!(
            "GET: HTTP {status} (SSE: {sse}) {}",
            snippet(&rest)
        )));
    }
    sh.open_streams.set(sh.open_streams.get() + 1);
    let r = async {
        // The priming event first.
        let first = tokio::time::timeout(ctx.timeout, next_chunk(&mut body))
            .await
            .map_err(|_| Fail::Timeout("GET: no priming event in time".into()))??;
        let mut seen = first.unwrap_or_default().to_vec();
        let mut bytes = seen.len() as u64;
        if !(contains(&seen, b"id:") || contains(&seen, b"data:")) {
            return Err(Fail::Answer(format!(
                "GET: first chunk is no event: {}",
                snippet(&seen)
            )));
        }
        let until = tokio::time::Instant::now() + hold;
        loop {
            match tokio::time::timeout_at(until, next_chunk(&mut body)).await {
                Err(_) => break,
                Ok(Ok(Some(d))) => {
                    bytes += d.len() as u64;
                    if seen.len() < 4096 {
                        seen.extend_from_slice(&d);
                    }
                }
                Ok(Ok(None)) => {
                    return Err(Fail::Answer(format!(
                        "GET: the stream ended after {bytes} bytes: {}",
                        snippet(&seen)
                    )))
                }
                Ok(Err(f)) => return Err(f),
            }
        }
        sh.count(|c| {
            c.get_streams += 1;
            c.get_stream_bytes += bytes;
        });
        Ok(())
    }
    .await;
    sh.open_streams.set(sh.open_streams.get() - 1);
    drop(body);
    drop(c);
    r
}

/// A streamed `tools/call` on its own connection, dropped after its first
/// event (and `linger`).
async fn post_dropped(ctx: &Ctx, sid: &str, body: String, linger: Duration) -> Result<(), Fail> {
    let sh = &ctx.gw.shared;
    ctx.limiter.acquire().await;
    let mut c = Http::open(ctx.gw.port, sh).await?;
    sh.count(|c| c.requests += 1);
    let r = tokio::time::timeout(ctx.timeout, async {
        let resp = c
            .send(
                "tools/call (dropped)",
                Method::POST,
                Some(sid),
                "application/json, text/event-stream",
                Some(body),
            )
            .await?;
        let status = resp.status().as_u16();
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body = resp.into_body();
        if status != 200 || !sse {
            let rest = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(Fail::Status(format!(
                "streamed tools/call: HTTP {status} (SSE: {sse}) {}",
                snippet(&rest)
            )));
        }
        let first = next_chunk(&mut body).await?.unwrap_or_default();
        if !contains(&first, b"notifications/") {
            return Err(Fail::Answer(format!(
                "streamed tools/call: first event is no notification: {}",
                snippet(&first)
            )));
        }
        Ok(body)
    })
    .await
    .map_err(|_| Fail::Timeout("streamed tools/call: no first event in time".into()))?;
    let body = r?;
    tokio::time::sleep(linger).await;
    drop(body);
    drop(c);
    sh.count(|c| c.posts_dropped += 1);
    Ok(())
}

/// One deliberately bad request; only a failure to get any answer is an error
/// here (a wrong answer is counted as "not as expected").
async fn bad_request(
    ctx: &Ctx,
    rng: &mut Rng,
    c: &mut Http,
    sid: &str,
    old: &mut Option<(String, Instant)>,
    id: u64,
) -> Result<(), Fail> {
    let gw = &ctx.gw;
    let expired = old
        .as_ref()
        .filter(|(_, at)| at.elapsed() > ctx.ttl + Duration::from_secs(5))
        .map(|(s, _)| s.clone());
    let call = rpc(id, "tools/call", &call_params(&tool0(gw), "", ""));
    let bogus = format!("soak-{:016x}{:016x}", rng.next(), rng.next());
    let (kind, session, body, want): (&'static str, Option<String>, String, &[u16]) =
        match rng.range(0, 4) {
            0 => (
                "malformed_json",
                Some(sid.to_string()),
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"#.into(),
                &[400],
            ),
            1 => ("unknown_session", Some(bogus), call, &[404]),
            2 => ("missing_session", None, call, &[400]),
            3 => (
                "unknown_tool",
                Some(sid.to_string()),
                rpc(id, "tools/call", &call_params("no_such_tool", "", "")),
                &[200],
            ),
            _ => match expired {
                Some(s) => {
                    *old = None;
                    ("expired_session", Some(s), call, &[404])
                }
                None => ("unknown_session", Some(bogus), call, &[404]),
            },
        };
    ctx.limiter.acquire().await;
    gw.shared.count(|c| c.requests += 1);
    let r = c
        .exchange(
            kind,
            Method::POST,
            session.as_deref(),
            Some(body),
            ctx.timeout,
        )
        .await?;
    let ok =
        want.contains(&r.status) && (kind != "unknown_tool" || contains(r.message(), b"\"error\""));
    if !ok {
        let mut ex = gw.shared.examples.borrow_mut();
        let v = ex.entry("deliberate_unexpected").or_default();
        if v.len() < 5 {
            v.push(format!("{kind}: {}", r.describe()));
        }
    }
    gw.shared.deliberate(kind, ok);
    Ok(())
}

// ----- sampling -------------------------------------------------------------------

/// The process exists and is not a zombie (an exited, unreaped child).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

/// GET on an Envoy admin port, off the runtime's thread.
async fn admin(port: u16, path: &str) -> Option<String> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || crate::envoy::admin_get(port, &path))
        .await
        .ok()
        .flatten()
}

/// Envoy's `/stats` text: `name: value` for counters and gauges.
fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(": ")?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// mcpgw's counters from `/stats/prometheus`: `name{labels}` -> value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("mcpgw_") && !l.contains("_bucket{"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The value of label `name` in `metric{a="x",b="y"}`.
fn label<'a>(metric: &'a str, name: &str) -> Option<&'a str> {
    let inner = metric.split_once('{')?.1.strip_suffix('}')?;
    inner.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

fn base(metric: &str) -> &str {
    metric.split('{').next().unwrap_or(metric)
}

/// Envoy's log, read as it grows: lines by level, and first examples.
#[derive(Default, Clone)]
struct LogScan {
    offset: u64,
    levels: BTreeMap<String, u64>,
    examples: Vec<String>,
}

impl LogScan {
    fn update(&mut self, path: &std::path::Path) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        // Only whole lines.
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        self.offset += end as u64;
        for line in String::from_utf8_lossy(&buf[..end]).lines() {
            // [time][pid][level][logger] [source] message
            let mut parts = line.splitn(4, ']');
            let level = parts
                .nth(2)
                .map(|l| l.trim_start_matches('[').to_string())
                .unwrap_or_else(|| "other".into());
            *self.levels.entry(level).or_default() += 1;
            if self.examples.len() < 12 {
                let msg = line.chars().take(300).collect::<String>();
                self.examples.push(msg);
            }
        }
    }

    fn count(&self, levels: &[&str]) -> u64 {
        levels
            .iter()
            .map(|l| self.levels.get(*l).copied().unwrap_or(0))
            .sum()
    }
}

/// One reading of one gateway.
#[derive(Clone, Default)]
struct GwSample {
    rss_kib: Option<u64>,
    cpu_us: Option<u64>,
    stats: BTreeMap<String, u64>,
    mcpgw: BTreeMap<String, f64>,
    log: LogScan,
    client: Counts,
    client_conns: i64,
    client_streams: i64,
    backend_rss_kib: Vec<Option<u64>>,
}

impl GwSample {
    fn stat(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
    }

    /// Sum of `cluster.<backend>.<suffix>` over the gateway's backends.
    fn cluster_sum(&self, suffix: &str) -> u64 {
        self.stats
            .iter()
            .filter(|(k, _)| k.starts_with("cluster.") && k.ends_with(suffix))
            .map(|(_, v)| *v)
            .sum()
    }

    fn metric_sum(&self, name: &str, filter: impl Fn(&str) -> bool) -> f64 {
        self.mcpgw
            .iter()
            .filter(|(k, _)| base(k) == name && filter(k))
            .map(|(_, v)| *v)
            .sum()
    }

    fn sessions_created(&self) -> u64 {
        self.metric_sum("mcpgw_sessions_created_total", |_| true) as u64
    }

    fn requests(&self) -> u64 {
        self.metric_sum("mcpgw_requests_total", |_| true) as u64
    }

    /// `mcpgw_errors_total` by kind.
    fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (k, v) in &self.mcpgw {
            if base(k) == "mcpgw_errors_total" && *v > 0.0 {
                let kind = label(k, "kind").unwrap_or("?").to_string();
                *m.entry(kind).or_default() += *v as u64;
            }
        }
        m
    }

    /// Envoy stats about the wasm VM (not mcpgw's own metrics).
    fn wasm_stats(&self) -> BTreeMap<String, u64> {
        self.stats
            .iter()
            .filter(|(k, _)| k.contains("wasm") && !k.starts_with("wasmcustom"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Wasm stats that say a VM failed or was replaced.
    fn wasm_failures(&self) -> Vec<(String, u64)> {
        self.wasm_stats()
            .into_iter()
            .filter(|(k, v)| {
                *v > 0
                    && ["fail", "crash", "restart", "reload", "panic", "abort"]
                        .iter()
                        .any(|w| k.contains(w))
            })
            .collect()
    }

    fn heap_allocated(&self) -> Option<u64> {
        self.stats.get("server.memory_allocated").copied()
    }
}

struct Sample {
    label: String,
    /// Since the traffic started (zero for the idle reading before it).
    at: Duration,
    gws: Vec<GwSample>,
    load: f64,
}

/// A running gateway: its Envoy, backends and workers' shared state.
struct Running {
    gw: Rc<Gateway>,
    envoy: Envoy,
    backends: Vec<Backend>,
    log: RefCell<LogScan>,
    description: String,
}

async fn read_gateway(r: &Running) -> GwSample {
    let stats = admin(r.envoy.admin_port, "/stats")
        .await
        .map(|t| parse_stats(&t))
        .unwrap_or_default();
    let mcpgw = admin(r.envoy.admin_port, "/stats/prometheus")
        .await
        .map(|t| parse_prometheus(&t))
        .unwrap_or_default();
    let log = {
        let mut l = r.log.borrow_mut();
        l.update(&r.envoy.log_path());
        l.clone()
    };
    let sh = &r.gw.shared;
    GwSample {
        rss_kib: sys::rss_kib(r.envoy.pid()),
        cpu_us: sys::cpu_us(r.envoy.pid()),
        stats,
        mcpgw,
        log,
        client: sh.counts.borrow().clone(),
        client_conns: sh.open_conns.get(),
        client_streams: sh.open_streams.get(),
        backend_rss_kib: r.backends.iter().map(|b| sys::rss_kib(b.pid())).collect(),
    }
}

async fn take_sample(label: String, at: Duration, gws: &[Running]) -> Sample {
    let mut out = Vec::new();
    for g in gws {
        out.push(read_gateway(g).await);
    }
    Sample {
        label,
        at,
        gws: out,
        load: sys::loadavg(),
    }
}

// ----- the run --------------------------------------------------------------------

fn start_gateway(
    o: &Options,
    exe: &std::path::Path,
    label: &'static str,
    names: &[&str],
) -> Result<Running, String> {
    let mut backends = Vec::new();
    for n in names {
        let opts = backend::Options {
            name: (*n).into(),
            ..Default::default()
        };
        backends.push(Backend::start(exe, &opts)?);
    }
    let refs: Vec<&Backend> = backends.iter().collect();
    let ttl = format!("{}s", o.session_ttl.as_secs());
    let plugin = mcpgw_plugin(
        &refs,
        &serde_json::json!({}),
        &serde_json::json!({"session": {"key": SESSION_KEY, "ttl": ttl}}),
    );
    // mcpgw's metric labels become Prometheus labels with the stats tags.
    let yaml = format!(
        "{}{}",
        mcpgw_core::gateway::stats::envoy_stats_config_yaml(),
        render(
            &Proxy::Mcpgw {
                engine: crate::envoy::Engine::Wasm,
                plugin,
            },
            &refs,
            &o.wasm,
        )
    );
    let envoy = Envoy::start(&o.envoy, label, &yaml, o.envoy_concurrency)?;
    progress(&format!(
        "started Envoy {label}: pid {}, port {}, admin {}, backends {}",
        envoy.pid(),
        envoy.port,
        envoy.admin_port,
        backends
            .iter()
            .map(|b| format!("{} (pid {}, port {})", b.name, b.pid(), b.port))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let multi = names.len() > 1;
    let tools: Vec<String> = if multi {
        names
            .iter()
            .flat_map(|n| [format!("{n}__echo"), format!("{n}__tool_0003")])
            .collect()
    } else {
        vec!["echo".into(), "tool_0003".into()]
    };
    let description = if multi {
        format!(
            "{} backends ({}), multiplexed: tools prefixed, `GET` answered 405 by mcpgw",
            names.len(),
            names.join(", ")
        )
    } else {
        format!(
            "1 backend ({}): `GET` streams passed through to the backend's SSE stream",
            names.join(", ")
        )
    };
    Ok(Running {
        gw: Rc::new(Gateway {
            label,
            port: envoy.port,
            tools,
            streams: !multi,
            shared: Rc::new(Shared::default()),
        }),
        envoy,
        backends,
        log: RefCell::new(LogScan::default()),
        description,
    })
}

/// One session by hand before the soak, so a broken setup fails fast.
async fn preflight(g: &Running, timeout: Duration) -> Result<(), String> {
    let label = g.gw.label;
    let scratch = Rc::new(Shared::default());
    let err = |f: Fail| format!("preflight {label}: {}", f.text());
    let mut c = Http::open(g.gw.port, &scratch).await.map_err(err)?;
    let r = c
        .exchange(
            "initialize",
            Method::POST,
            None,
            Some(rpc(1, "initialize", INIT_PARAMS)),
            timeout,
        )
        .await
        .map_err(err)?;
    expect(&r, "initialize", &[200], Some(b"protocolVersion")).map_err(err)?;
    let sid = r
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| format!("preflight {label}: no session id"))?;
    let r = c
        .exchange(
            "tools/list",
            Method::POST,
            Some(&sid),
            Some(rpc(2, "tools/list", "{}")),
            timeout,
        )
        .await
        .map_err(err)?;
    for t in &g.gw.tools {
        if !contains(r.message(), format!("\"name\":\"{t}\"").as_bytes()) {
            return Err(format!(
                "preflight {label}: tools/list has no {t}: {}",
                r.describe()
            ));
        }
    }
    let resp = tokio::time::timeout(
        timeout,
        c.send("GET", Method::GET, Some(&sid), "text/event-stream", None),
    )
    .await
    .map_err(|_| format!("preflight {label}: GET timed out"))?
    .map_err(err)?;
    let status = resp.status().as_u16();
    drop(resp);
    drop(c);
    let want = if g.gw.streams { 200 } else { 405 };
    if status != want {
        return Err(format!(
            "preflight {label}: GET answered {status}, expected {want}"
        ));
    }
    let mut c = Http::open(g.gw.port, &scratch).await.map_err(err)?;
    let r = c
        .exchange("DELETE", Method::DELETE, Some(&sid), None, timeout)
        .await
        .map_err(err)?;
    expect(&r, "DELETE", &[200, 202, 204], None).map_err(err)?;
    Ok(())
}

/// Run the soak and write the report. Must run inside a `LocalSet`.
pub async fn run(o: Options) -> Result<(), String> {
    let started = Instant::now();
    let hard_deadline = started + o.duration + Duration::from_secs(60);
    {
        // The hard bound: whatever happens, the process (and with it every
        // child, PR_SET_PDEATHSIG) is gone one minute after the duration.
        let limit = o.duration + Duration::from_secs(60);
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("soak: hard deadline ({}) reached; exiting", hms(limit));
            std::process::exit(3);
        });
    }
    if !o.envoy.exists() {
        return Err(format!(
            "no Envoy at {} (set ENVOY_BIN or run ./build.sh envoy)",
            o.envoy.display()
        ));
    }
    if !o.wasm.exists() {
        return Err(format!(
            "{} is missing (run ./build.sh wasm)",
            o.wasm.display()
        ));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let info = sys::MachineInfo::collect(&o.envoy, &[&o.wasm]);
    progress(&format!(
        "{} cores ({}), Envoy {}, load average {:.2}; {} of traffic, {} workers, at most {} requests/s, samples every {}",
        info.cores,
        info.cpu_model,
        info.envoy_version,
        info.load_start,
        hms(o.duration),
        o.workers,
        o.rate,
        hms(o.sample)
    ));
    let gws = vec![
        start_gateway(&o, &exe, "single", &["s0"])?,
        start_gateway(&o, &exe, "multi", &["m0", "m1"])?,
    ];
    for g in &gws {
        preflight(g, o.timeout).await?;
    }
    progress("preflight passed (initialize, tools/list, GET, DELETE on each gateway)");
    let idle = take_sample("idle".into(), Duration::ZERO, &gws).await;

    // Traffic.
    let stop = Rc::new(Cell::new(false));
    let limiter = Rc::new(Limiter {
        every: Duration::from_secs_f64(1.0 / o.rate),
        next: Cell::new(Instant::now()),
    });
    let t0 = Instant::now();
    // Leave 40 s of the hard bound for stopping and writing the report.
    let end = (t0 + o.duration).min(hard_deadline - Duration::from_secs(40));
    let mut tasks = Vec::new();
    for w in 0..o.workers {
        let Some(g) = gws.get(w % gws.len()) else {
            continue;
        };
        let ctx = Rc::new(Ctx {
            gw: Rc::clone(&g.gw),
            limiter: Rc::clone(&limiter),
            stop: Rc::clone(&stop),
            timeout: o.timeout,
            ttl: o.session_ttl,
        });
        let seed = o.seed ^ (w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
        tasks.push(tokio::task::spawn_local(worker(ctx, seed)));
    }
    let mut samples = vec![idle];
    let mut stopped_early = None;
    let mut k = 1u32;
    loop {
        let next = (t0 + o.sample * k).min(end);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = tokio::signal::ctrl_c() => {
                stopped_early = Some("interrupted (Ctrl-C)".to_string());
            }
        }
        let at = t0.elapsed();
        let label = if stopped_early.is_some() || next >= end {
            "end".to_string()
        } else {
            hms(o.sample * k)
        };
        let s = take_sample(label, at, &gws).await;
        let line = gws
            .iter()
            .zip(&s.gws)
            .map(|(g, x)| {
                format!(
                    "{} RSS {:.1} MiB, {} sessions, {} client errors",
                    g.gw.label,
                    x.rss_kib.unwrap_or(0) as f64 / 1024.0,
                    x.sessions_created(),
                    x.client.error_total()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        progress(&format!("{} {line}", hms(at)));
        samples.push(s);
        if stopped_early.is_some() || next >= end {
            break;
        }
        for g in &gws {
            if !alive(g.envoy.pid()) {
                stopped_early = Some(format!("Envoy {} exited", g.gw.label));
            }
        }
        if stopped_early.is_some() {
            break;
        }
        k += 1;
    }
    let traffic = t0.elapsed();
    // A second Ctrl-C does not wait for the report.
    tokio::task::spawn_local(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("soak: interrupted again; exiting");
            std::process::exit(130);
        }
    });

    // Stop: workers finish their current step (bounded by the timeouts).
    stop.set(true);
    let stop_by = Instant::now() + o.timeout + Duration::from_secs(5);
    for t in &mut tasks {
        if tokio::time::timeout_at(stop_by.into(), &mut *t)
            .await
            .is_err()
        {
            t.abort();
        }
    }
    drop(tasks);
    // Let Envoy close what the clients closed, then read once more.
    let drain_by = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut busy = false;
        for g in &gws {
            let s = admin(g.envoy.admin_port, "/stats?filter=rq_active$")
                .await
                .map(|t| parse_stats(&t))
                .unwrap_or_default();
            // Not the admin listener's own request.
            busy |= s
                .iter()
                .any(|(k, v)| *v > 0 && (k.starts_with("http.mcp.") || k.starts_with("cluster.")));
        }
        if !busy || Instant::now() >= drain_by {
            break;
        }
    }
    let drained = take_sample("after stop".into(), t0.elapsed(), &gws).await;
    samples.push(drained);

    let report = SoakReport {
        o: &o,
        info,
        gws: &gws,
        samples: &samples,
        traffic,
        stopped_early,
        load_end: sys::loadavg(),
    };
    let text = report.markdown();
    println!("{text}");
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&o.out, &text).map_err(|e| format!("{}: {e}", o.out.display()))?;
    progress(&format!(
        "wrote {} ({} in all)",
        o.out.display(),
        hms(started.elapsed())
    ));
    Ok(())
}

// ----- the report -----------------------------------------------------------------

struct SoakReport<'a> {
    o: &'a Options,
    info: sys::MachineInfo,
    gws: &'a [Running],
    samples: &'a [Sample],
    traffic: Duration,
    stopped_early: Option<String>,
    load_end: f64,
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn mib_b(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0))
}

fn signed_mib(kib: i64) -> String {
    format!("{:+.1} MiB", kib as f64 / 1024.0)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**MISSED**"
    }
}

/// `a=1, b=2` of the map entries that changed between two readings.
fn deltas<K: Ord + std::fmt::Display>(a: &BTreeMap<K, u64>, b: &BTreeMap<K, u64>) -> String {
    let v: Vec<String> = b
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(a.get(k).copied().unwrap_or(0));
            (d > 0).then(|| format!("{k} {d}"))
        })
        .collect();
    if v.is_empty() {
        "0".into()
    } else {
        v.join(", ")
    }
}

/// Least-squares slope of (seconds, KiB), in KiB per minute.
fn slope_kib_per_min(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

/// The RSS verdict of one gateway.
struct Growth {
    mid: usize,
    end: usize,
    delta_kib: i64,
    sessions: u64,
    slope: Option<f64>,
    limit_kib: i64,
    grows: bool,
}

impl SoakReport<'_> {
    /// Samples taken under traffic (not the idle one, not the one after stopping).
    fn traffic_samples(&self) -> Vec<usize> {
        let n = self.samples.len();
        (1..n.saturating_sub(1)).collect()
    }

    /// Growth of `kib` (a reading in KiB) over the second half of the run;
    /// `limit(start)` is the growth (KiB) that counts as growing.
    fn growth(
        &self,
        g: usize,
        kib: fn(&GwSample) -> Option<u64>,
        limit: fn(i64) -> i64,
    ) -> Option<Growth> {
        let idx = self.traffic_samples();
        let last = *idx.last()?;
        let end_at = self.samples.get(last)?.at;
        // The first sample at or after the middle of the run.
        let mid = *idx
            .iter()
            .find(|i| self.samples.get(**i).is_some_and(|s| s.at >= end_at / 2))?;
        let a = self.samples.get(mid)?.gws.get(g)?;
        let b = self.samples.get(last)?.gws.get(g)?;
        let (ra, rb) = (kib(a)? as i64, kib(b)? as i64);
        let delta_kib = rb - ra;
        let points: Vec<(f64, f64)> = idx
            .iter()
            .filter(|i| **i >= mid)
            .filter_map(|i| {
                let s = self.samples.get(*i)?;
                Some((s.at.as_secs_f64(), kib(s.gws.get(g)?)? as f64))
            })
            .collect();
        Some(Growth {
            mid,
            end: last,
            delta_kib,
            sessions: b.sessions_created().saturating_sub(a.sessions_created()),
            slope: slope_kib_per_min(&points),
            limit_kib: limit(ra),
            grows: delta_kib > limit(ra),
        })
    }

    fn first(&self) -> Option<&Sample> {
        self.samples.get(1)
    }

    fn last_traffic(&self) -> Option<&Sample> {
        self.samples.get(self.samples.len().checked_sub(2)?)
    }

    fn after_stop(&self) -> Option<&Sample> {
        self.samples.last()
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let i = &self.info;
        let o = self.o;
        let _ = writeln!(s, "# mcpgw soak test\n");
        let mut warnings = Vec::new();
        if let Some(n) = &o.note {
            warnings.push(n.clone());
        }
        if let Some(e) = &self.stopped_early {
            warnings.push(format!(
                "Stopped early: {e}, after {} of {}.",
                hms(self.traffic),
                hms(o.duration)
            ));
        }
        if o.duration < Duration::from_secs(30 * 60) {
            warnings.push(format!(
                "A short run ({}): it checks the harness and shows early trends; the acceptance soak is 30 minutes (`--soak 30m`).",
                hms(o.duration)
            ));
        }
        let busy = i.load_start > 0.5 * i.cores as f64 || self.load_end > 0.5 * i.cores as f64;
        if busy {
            warnings.push(format!(
                "The machine was busy: load average {:.2} at the start and {:.2} at the end on {} cores. Latency and CPU figures are noisy; memory and error counts are not affected by load, except that timeouts become more likely.",
                i.load_start, self.load_end, i.cores
            ));
        }
        if !warnings.is_empty() {
            let _ = writeln!(s, "> **PRELIMINARY**\n>");
            for w in &warnings {
                let _ = writeln!(s, "> - {w}");
            }
            let _ = writeln!(s);
        }
        self.verdict(&mut s);
        self.machine(&mut s);
        self.rss_section(&mut s);
        for (g, r) in self.gws.iter().enumerate() {
            self.table(&mut s, g, r);
        }
        self.client_section(&mut s);
        self.mcpgw_section(&mut s);
        self.wasm_section(&mut s);
        self.log_section(&mut s);
        self.method(&mut s);
        s
    }

    fn verdict(&self, s: &mut String) {
        let _ = writeln!(s, "## Verdict\n");
        let _ = writeln!(s, "| Check | Measured | Result |\n|---|---|---|");
        // (what, reading in KiB, the growth that fails: KiB from the start value, rule text)
        type Check = (&'static str, fn(&GwSample) -> Option<u64>, fn(i64) -> i64);
        let checks: [Check; 2] = [
            // The memory scenario's rule: more than 4 MiB + 2 % over the second half.
            ("Envoy RSS", |x| x.rss_kib, |start| 4096 + start / 50),
            // tcmalloc's figure is exact: a tighter rule, 2 MiB + 5 %.
            (
                "Envoy heap (tcmalloc allocated)",
                |x| x.heap_allocated().map(|b| b / 1024),
                |start| 2048 + start / 20,
            ),
        ];
        for (what, kib, limit) in checks {
            for (g, r) in self.gws.iter().enumerate() {
                let label = r.gw.label;
                match self.growth(g, kib, limit) {
                    Some(gr) => {
                        let per = if gr.sessions > 0 {
                            format!(
                                "{:+.0} bytes/session over {} sessions",
                                gr.delta_kib as f64 * 1024.0 / gr.sessions as f64,
                                gr.sessions
                            )
                        } else {
                            "no sessions".into()
                        };
                        let slope = gr
                            .slope
                            .map_or(String::new(), |k| format!("; trend {k:+.0} KiB/min"));
                        let (ma, mb) = (
                            self.samples
                                .get(gr.mid)
                                .map_or("?".into(), |x| x.label.clone()),
                            self.samples
                                .get(gr.end)
                                .map_or("?".into(), |x| x.label.clone()),
                        );
                        let _ = writeln!(
                            s,
                            "| {what} (`{label}`) does not grow over the second half ({ma} → {mb}; limit {:+.1} MiB) | {} ({per}{slope}) | {} |",
                            gr.limit_kib as f64 / 1024.0,
                            signed_mib(gr.delta_kib),
                            met(!gr.grows)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            s,
                            "| {what} (`{label}`) does not grow over the second half | not enough samples | **MISSED** |"
                        );
                    }
                }
            }
        }
        let last = self.after_stop();
        let errors: u64 = last.map_or(0, |l| l.gws.iter().map(|g| g.client.error_total()).sum());
        let kinds: BTreeMap<&str, u64> = last.map_or_else(BTreeMap::new, |l| {
            let mut m = BTreeMap::new();
            for g in &l.gws {
                for (k, v) in &g.client.errors {
                    *m.entry(*k).or_default() += v;
                }
            }
            m
        });
        let _ = writeln!(
            s,
            "| No client-observed errors besides the deliberate bad requests | {} | {} |",
            if errors == 0 {
                "none".to_string()
            } else {
                format!("{errors}: {}", deltas(&BTreeMap::new(), &kinds))
            },
            met(errors == 0)
        );
        let (sent, expected) = last.map_or((0, 0), |l| {
            l.gws.iter().fold((0, 0), |(a, b), g| {
                let (x, y) = g.client.deliberate_total();
                (a + x, b + y)
            })
        });
        let _ = writeln!(
            s,
            "| Deliberate bad requests answered as documented | {expected} of {sent} | {} |",
            met(sent == expected)
        );
        let mut vm = Vec::new();
        if let (Some(first), Some(last)) = (self.samples.first(), last) {
            for (g, r) in self.gws.iter().enumerate() {
                let (Some(a), Some(b)) = (first.gws.get(g), last.gws.get(g)) else {
                    continue;
                };
                for (k, v) in b.wasm_failures() {
                    vm.push(format!("{}: {k} = {v}", r.gw.label));
                }
                // A VM created after start-up is a replaced (failed) VM.
                for (k, v) in b.wasm_stats() {
                    if k.ends_with(".created") && v > a.wasm_stats().get(&k).copied().unwrap_or(0) {
                        vm.push(format!("{}: {k} rose to {v}", r.gw.label));
                    }
                }
                let crit = b.log.count(&["critical"]);
                if crit > 0 {
                    vm.push(format!("{}: {crit} critical log line(s)", r.gw.label));
                }
                if !alive(r.envoy.pid()) {
                    vm.push(format!("{}: Envoy exited", r.gw.label));
                }
            }
        }
        let _ = writeln!(
            s,
            "| The wasm VM never failed (no failure/reload stats, no new VM, no critical log line, Envoy alive) | {} | {} |",
            if vm.is_empty() {
                "never".to_string()
            } else {
                vm.join("; ")
            },
            met(vm.is_empty())
        );
        let mut stuck = Vec::new();
        if let Some(l) = last {
            for (g, r) in self.gws.iter().zip(&l.gws) {
                let d = r.stat("http.mcp.downstream_rq_active");
                let u = r.cluster_sum(".upstream_rq_active");
                if d + u > 0 {
                    stuck.push(format!(
                        "{}: {d} downstream, {u} upstream requests active",
                        g.gw.label
                    ));
                }
            }
        }
        let _ = writeln!(
            s,
            "| Nothing left open once the clients stopped (Envoy's active requests, downstream and upstream) | {} | {} |",
            if stuck.is_empty() {
                "0 active".to_string()
            } else {
                stuck.join("; ")
            },
            met(stuck.is_empty())
        );
        let _ = writeln!(s);
    }

    fn machine(&self, s: &mut String) {
        let i = &self.info;
        let o = self.o;
        let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
        super::report::machine_rows(
            s,
            i,
            &format!("`--concurrency {}` each", o.envoy_concurrency),
            self.load_end,
        );
        let _ = writeln!(
            s,
            "| Run | {} of traffic (asked: {}), {} workers, at most {} requests/s in all, samples every {}, session TTL {}, per-request timeout {}, seed {} |",
            hms(self.traffic),
            hms(o.duration),
            o.workers,
            o.rate,
            hms(o.sample),
            hms(o.session_ttl),
            hms(o.timeout),
            o.seed
        );
        for r in self.gws {
            let _ = writeln!(s, "| Gateway `{}` | {} |", r.gw.label, r.description);
        }
        let _ = writeln!(
            s,
            "| Command | `cargo run --release -p mcpgw-e2e --bin bench -- {}` |\n",
            args.join(" ")
        );
    }

    fn rss_section(&self, s: &mut String) {
        let _ = writeln!(s, "## Start and end\n");
        let _ = writeln!(
            s,
            "RSS is `VmRSS` of the Envoy process; heap is Envoy's `server.memory_allocated` (tcmalloc: bytes in use, V8's heap included as far as it allocates through malloc).\n"
        );
        let _ = writeln!(
            s,
            "| Gateway | RSS idle (before traffic) MiB | RSS first sample MiB | RSS end MiB | RSS after stop MiB | End − first | Heap first → end MiB | Sessions created | Client errors first → end | Deliberate bad requests first → end | mcpgw_errors_total first → end |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (g, r) in self.gws.iter().enumerate() {
            fn pick(x: Option<&Sample>, g: usize) -> Option<&GwSample> {
                x.and_then(|x| x.gws.get(g))
            }
            let idle = pick(self.samples.first(), g);
            let first = pick(self.first(), g);
            let end = pick(self.last_traffic(), g);
            let after = pick(self.after_stop(), g);
            let d = match (first.and_then(|x| x.rss_kib), end.and_then(|x| x.rss_kib)) {
                (Some(a), Some(b)) => signed_mib(b as i64 - a as i64),
                _ => "-".into(),
            };
            let errs =
                |x: Option<&GwSample>| x.map_or("-".into(), |x| x.client.error_total().to_string());
            let delib = |x: Option<&GwSample>| {
                x.map_or("-".into(), |x| x.client.deliberate_total().0.to_string())
            };
            let gw_errs = |x: Option<&GwSample>| {
                x.map_or("-".into(), |x| {
                    x.errors_by_kind().values().sum::<u64>().to_string()
                })
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {d} | {} → {} | {} | {} → {} | {} → {} | {} → {} |",
                r.gw.label,
                mib(idle.and_then(|x| x.rss_kib)),
                mib(first.and_then(|x| x.rss_kib)),
                mib(end.and_then(|x| x.rss_kib)),
                mib(after.and_then(|x| x.rss_kib)),
                mib_b(first.and_then(|x| x.heap_allocated())),
                mib_b(end.and_then(|x| x.heap_allocated())),
                end.map_or(0, |x| x.sessions_created()),
                errs(first),
                errs(after),
                delib(first),
                delib(after),
                gw_errs(first),
                gw_errs(after),
            );
        }
        let _ = writeln!(s);
        // Backends, to show the load did not grow them either.
        let _ = writeln!(s, "Backends' RSS (MiB), first sample → end: ");
        let mut parts = Vec::new();
        for (g, r) in self.gws.iter().enumerate() {
            for (k, b) in r.backends.iter().enumerate() {
                let at = |x: Option<&Sample>| {
                    x.and_then(|x| x.gws.get(g))
                        .and_then(|x| x.backend_rss_kib.get(k).copied().flatten())
                };
                parts.push(format!(
                    "{} {} → {}",
                    b.name,
                    mib(at(self.first())),
                    mib(at(self.last_traffic()))
                ));
            }
        }
        let _ = writeln!(s, "{}.\n", parts.join(", "));
    }

    fn table(&self, s: &mut String, g: usize, r: &Running) {
        let _ = writeln!(s, "## Samples: `{}` ({})\n", r.gw.label, r.description);
        let _ = writeln!(
            s,
            "Counts are per interval (since the previous row) unless marked Σ (since the start). Requests/s are the client's HTTP requests; connections and streams are those open at the moment of the sample. Envoy CPU per request divides all of Envoy's CPU time in the interval (idle work and the harness's own `/stats` reads included) by mcpgw's requests, so at this low rate it is dominated by fixed costs: watch its trend, not its level.\n"
        );
        let _ = writeln!(
            s,
            "| t | RSS MiB | Heap MiB | Envoy CPU % | Envoy CPU µs/req | Sessions Σ (mcpgw) | Requests/s | Conns (client / Envoy down / up) | GET streams open | mcpgw errors by kind | Client errors | Deliberate sent | Log warn/err | Load |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|---:|---|---:|"
        );
        let mut prev: Option<(&Sample, &GwSample)> = None;
        for x in self.samples {
            let Some(c) = x.gws.get(g) else { continue };
            let (cpu, per_req, rps, errs, cerr, delib, logs) = match prev {
                Some((ps, p)) => {
                    let secs = x.at.saturating_sub(ps.at).as_secs_f64().max(1e-9);
                    let cpu = match (p.cpu_us, c.cpu_us) {
                        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                        _ => None,
                    };
                    let reqs = c.client.requests.saturating_sub(p.client.requests);
                    let gw_reqs = c.requests().saturating_sub(p.requests());
                    let per_req = cpu.and_then(|u| {
                        (gw_reqs > 0).then(|| format!("{:.0}", u as f64 / gw_reqs as f64))
                    });
                    let (d0, _) = p.client.deliberate_total();
                    let (d1, _) = c.client.deliberate_total();
                    let cerr: BTreeMap<&str, u64> = c.client.errors.clone();
                    (
                        cpu.map_or("-".into(), |u| format!("{:.1}", u as f64 / 1e4 / secs)),
                        per_req.unwrap_or_else(|| "-".into()),
                        format!("{:.1}", reqs as f64 / secs),
                        deltas(&p.errors_by_kind(), &c.errors_by_kind()),
                        deltas(&p.client.errors, &cerr),
                        (d1 - d0).to_string(),
                        format!(
                            "{}/{}",
                            c.log.count(&["warning"]) - p.log.count(&["warning"]),
                            c.log.count(&["error", "critical"])
                                - p.log.count(&["error", "critical"])
                        ),
                    )
                }
                None => (
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {cpu} | {per_req} | {} | {rps} | {} / {} / {} | {} | {errs} | {cerr} | {delib} | {logs} | {:.1} |",
                x.label,
                mib(c.rss_kib),
                mib_b(c.heap_allocated()),
                c.sessions_created(),
                c.client_conns,
                c.stat("http.mcp.downstream_cx_active"),
                c.cluster_sum(".upstream_cx_active"),
                c.client_streams,
                x.load,
            );
            prev = Some((x, c));
        }
        let _ = writeln!(s);
    }

    fn client_section(&self, s: &mut String) {
        let _ = writeln!(s, "## Client side, whole run\n");
        let Some(last) = self.after_stop() else {
            return;
        };
        let _ = writeln!(s, "| | {} |", {
            self.gws
                .iter()
                .map(|g| format!("`{}`", g.gw.label))
                .collect::<Vec<_>>()
                .join(" | ")
        });
        let _ = writeln!(s, "|---|{}", "---:|".repeat(self.gws.len()));
        type Row = (&'static str, fn(&Counts) -> u64);
        let rows: [Row; 11] = [
            ("HTTP requests", |c| c.requests),
            ("connections opened", |c| c.connections_opened),
            ("sessions started", |c| c.sessions_started),
            ("sessions deleted (`DELETE`)", |c| c.sessions_deleted),
            ("sessions abandoned", |c| c.sessions_abandoned),
            ("sessions cut short by an error", |c| c.sessions_failed),
            ("tools/call (completed)", |c| c.tool_calls),
            ("of which streamed (SSE, read to the end)", |c| {
                c.streamed_calls
            }),
            ("GET streams opened and dropped (< 2 s)", |c| c.get_streams),
            ("POSTs dropped mid-stream", |c| c.posts_dropped),
            ("bytes read on GET streams", |c| c.get_stream_bytes),
        ];
        for (name, f) in rows {
            let _ = writeln!(
                s,
                "| {name} | {} |",
                last.gws
                    .iter()
                    .map(|g| f(&g.client).to_string())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let mut kinds: Vec<&str> = Vec::new();
        for g in &last.gws {
            for k in g.client.deliberate.keys() {
                if !kinds.contains(k) {
                    kinds.push(k);
                }
            }
        }
        for k in kinds {
            let _ = writeln!(
                s,
                "| deliberate: {k} (sent / as expected) | {} |",
                last.gws
                    .iter()
                    .map(|g| {
                        let (a, b) = g.client.deliberate.get(k).copied().unwrap_or((0, 0));
                        format!("{a} / {b}")
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let mut closes: Vec<(&str, u16)> = Vec::new();
        for g in &last.gws {
            for k in g.client.closed_by_server.keys() {
                if !closes.contains(k) {
                    closes.push(*k);
                }
            }
        }
        closes.sort();
        for k in closes {
            let _ = writeln!(
                s,
                "| `Connection: close` from Envoy: {} → {} | {} |",
                k.0,
                k.1,
                last.gws
                    .iter()
                    .map(|g| g
                        .client
                        .closed_by_server
                        .get(&k)
                        .copied()
                        .unwrap_or(0)
                        .to_string())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let mut ekinds: Vec<&str> = Vec::new();
        for g in &last.gws {
            for k in g.client.errors.keys() {
                if !ekinds.contains(k) {
                    ekinds.push(k);
                }
            }
        }
        for k in &ekinds {
            let _ = writeln!(
                s,
                "| **error: {k}** | {} |",
                last.gws
                    .iter()
                    .map(|g| g.client.errors.get(k).copied().unwrap_or(0).to_string())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let _ = writeln!(s);
        let mut any = false;
        for r in self.gws {
            for (k, v) in r.gw.shared.examples.borrow().iter() {
                if !any {
                    let _ = writeln!(s, "Examples:\n");
                    any = true;
                }
                for e in v {
                    let _ = writeln!(s, "- `{}` {k}: {}", r.gw.label, e.replace('`', "'"));
                }
            }
        }
        if any {
            let _ = writeln!(s);
        }
    }

    fn mcpgw_section(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## mcpgw's counters (`/stats/prometheus`), first sample → end\n"
        );
        let (Some(first), Some(last)) = (self.samples.first(), self.after_stop()) else {
            return;
        };
        let _ = writeln!(
            s,
            "| Gateway | Metric | Before traffic | End | Δ |\n|---|---|---:|---:|---:|"
        );
        for (g, r) in self.gws.iter().enumerate() {
            let (Some(a), Some(b)) = (first.gws.get(g), last.gws.get(g)) else {
                continue;
            };
            for (k, v) in &b.mcpgw {
                let name = base(k);
                if name == "mcpgw_tool_calls_total" || name.starts_with("mcpgw_fanout_duration") {
                    continue;
                }
                let v0 = a.mcpgw.get(k).copied().unwrap_or(0.0);
                if *v == 0.0 && v0 == 0.0 {
                    continue;
                }
                let _ = writeln!(s, "| {} | `{k}` | {v0} | {v} | {} |", r.gw.label, v - v0);
            }
        }
        let _ = writeln!(s);
    }

    fn wasm_section(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## Envoy's wasm stats (`/stats`, names containing `wasm`)\n"
        );
        let (Some(first), Some(last)) = (self.samples.first(), self.after_stop()) else {
            return;
        };
        let _ = writeln!(
            s,
            "| Gateway | Stat | Before traffic | End |\n|---|---|---:|---:|"
        );
        for (g, r) in self.gws.iter().enumerate() {
            let (Some(a), Some(b)) = (first.gws.get(g), last.gws.get(g)) else {
                continue;
            };
            let wa = a.wasm_stats();
            for (k, v) in b.wasm_stats() {
                let _ = writeln!(
                    s,
                    "| {} | `{k}` | {} | {v} |",
                    r.gw.label,
                    wa.get(&k).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(s);
    }

    fn log_section(&self, s: &mut String) {
        let _ = writeln!(s, "## Envoy's log (level `warn` and above)\n");
        let Some(last) = self.after_stop() else {
            return;
        };
        for (r, g) in self.gws.iter().zip(&last.gws) {
            let levels = if g.log.levels.is_empty() {
                "no lines".to_string()
            } else {
                g.log
                    .levels
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(s, "- `{}`: {levels}", r.gw.label);
            for e in &g.log.examples {
                let _ = writeln!(s, "  - `{}`", e.replace('`', "'"));
            }
        }
        let _ = writeln!(s);
    }

    fn method(&self, s: &mut String) {
        let o = self.o;
        let _ = writeln!(s, "## Method\n");
        let _ = writeln!(s, "- Everything runs on 127.0.0.1: the benchmark backend (`bench-backend`, canned answers; `GET` streams send a priming event and a `: ping` comment every 500 ms; a `tools/call` with `stream_ms` answers SSE: a notification at once, the result later), two Envoys with mcpgw (`single`: one backend, `multi`: two), and {} client workers (half per Envoy) on HTTP/1.1 keep-alive connections, sharing one limiter of {} HTTP requests/s.", o.workers, o.rate);
        let _ = writeln!(s, "- Each worker loops over sessions: `initialize`, `notifications/initialized`, `tools/list` (checked for the expected tools), 1-4 `tools/call` (10 % of them streamed and read to the end); with 30 % a `GET` (on `single` a stream on its own connection, held 0.1-1.9 s beside the calls and dropped; on `multi` the documented 405); with 15 % a streamed `tools/call` on its own connection dropped right after its first event; with 8 % one deliberately bad request (malformed JSON → 400, unknown session → 404, missing session → 400, unknown tool → JSON-RPC error, a session older than the TTL → 404); then `DELETE` (80 %; 10 % of those reuse the deleted id → 404) or the session is abandoned. 5 % of sessions start on a new connection.");
        let _ = writeln!(s, "- Client errors are everything other than the expected answer: `unexpected_status`, `bad_answer` (e.g. a tool result that is not one), `timeout` ({} per request), `connection` (connect, send or read failed). A session with an error ends there (on a new connection). Deliberate bad requests count separately, and as errors only if they got no answer at all.", hms(o.timeout));
        let _ = writeln!(s, "- mcpgw's `mcpgw_errors_total` includes the deliberate requests and the `multi` `GET`s (kind `bad_request`), so it is expected to grow; the client-side error count is the one that must stay at 0.");
        let _ = writeln!(s, "- RSS verdict: over the second half of the run (the first sample at or after half-time to the last sample under traffic), growth above 4 MiB + 2 % is a failure (the rule of the benchmark's memory scenario); bytes per session divide it by the sessions mcpgw created in that half, and the trend is a least-squares slope over those samples. The session TTL ({}) makes abandoned sessions expire and the revocation records of deleted sessions (8 bytes each, in Envoy shared data, recycled per TTL) turn over during a 30-minute run, so the steady state is what is measured.", hms(o.session_ttl));
        let _ = writeln!(s, "- Wasm VM failure: any Envoy stat whose name contains `wasm` and one of fail/crash/restart/reload/panic/abort being non-zero, a `...created` wasm stat rising after start-up (a replaced VM: the filter runs with `failure_policy: FAIL_RELOAD`), a `critical` line in Envoy's log, or Envoy exiting.");
        let _ = writeln!(s, "- The run is bounded: traffic stops after the duration (or on Ctrl-C, which still writes the report), workers get the request timeout + 5 s to finish, Envoy up to 10 s to close what the clients closed; the process exits at the duration + 1 minute whatever happens, and every child process dies with it.");
    }
}

/// `a` as one shell word.
fn shell_quote(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=,:@+".contains(c);
    if !a.is_empty() && a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(hms(Duration::from_secs(1800)), "30m");
        assert_eq!(hms(Duration::from_secs(90)), "1m30s");
        assert_eq!(hms(Duration::from_secs(18)), "18s");
    }

    #[test]
    fn prometheus_and_labels() {
        let text = "# TYPE mcpgw_errors_total counter\nmcpgw_errors_total{kind=\"unknown_session\"} 3\nmcpgw_requests_total{method=\"tools/call\",outcome=\"ok\"} 10\nenvoy_x 1\nmcpgw_fanout_duration_ms_bucket{method=\"initialize\",le=\"1\"} 4\n";
        let m = parse_prometheus(text);
        assert_eq!(m.len(), 2);
        let k = "mcpgw_requests_total{method=\"tools/call\",outcome=\"ok\"}";
        assert_eq!(m.get(k), Some(&10.0));
        assert_eq!(label(k, "outcome"), Some("ok"));
        assert_eq!(label(k, "method"), Some("tools/call"));
        assert_eq!(base(k), "mcpgw_requests_total");
        let st = parse_stats(
            "http.mcp.downstream_cx_active: 4\ncluster.s0.upstream_rq_time: P0(nan,1)\n",
        );
        assert_eq!(st.get("http.mcp.downstream_cx_active"), Some(&4));
        assert_eq!(st.len(), 1);
    }

    #[test]
    fn options() {
        let args: Vec<String> = ["--soak", "3m", "--note", "busy"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = Options::parse(&args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.duration, Duration::from_secs(180));
        assert_eq!(o.sample, Duration::from_secs(18));
        assert_eq!(o.note.as_deref(), Some("busy"));
        let args: Vec<String> = ["--soak", "30m"].iter().map(|s| s.to_string()).collect();
        let o = Options::parse(&args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.sample, Duration::from_secs(60));
        assert!(Options::parse(&["--soak".to_string(), "2s".to_string()]).is_err());
    }

    #[test]
    fn slope() {
        let pts = [(0.0, 100.0), (60.0, 110.0), (120.0, 120.0)];
        let k = slope_kib_per_min(&pts).unwrap_or(f64::NAN);
        assert!((k - 10.0).abs() < 1e-9, "{k}");
    }
}
