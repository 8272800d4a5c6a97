//! stdio servers behind the gateway: each server gets a Streamable HTTP
//! endpoint on 127.0.0.1 that relays JSON-RPC between the gateway and a
//! child process speaking MCP on stdin/stdout.
//!
//! The relay is transparent: it does not interpret MCP beyond what routing
//! needs (ids, progress tokens, the method names of routed calls), so any
//! server works the same as when a client runs it itself, whatever SDK it
//! is written with and whatever it adds to the protocol. Where each message
//! goes is decided in [`crate::relay`]; this file owns the HTTP side, the
//! sessions and the processes ([`crate::child`]).
//!
//! One process per session (the default). The gateway opens one session with
//! this endpoint per client session (at `initialize`), so each client gets
//! its own process, as it would running the server itself: no state (roots,
//! log level, subscriptions, in-memory data) leaks between clients, and a
//! server->client request (sampling, elicitation, roots/list) can only
//! belong to the one client of that process. The number of live processes
//! per server is bounded (`maxProcesses` / `--stdio-max-processes`); past it
//! `initialize` gets a JSON-RPC error saying so. Sessions idle for `idle`
//! end (then the gateway's next call gets 404 and the client
//! re-initializes); a DELETE ends one at once.
//!
//! Shared mode: one process serves every session, initialized once; the
//! endpoint is then stateless (no `Mcp-Session-Id`), as the server is meant
//! to be. For servers that keep no per-client state.
//!
//! A process that exits is restarted with backoff (250 ms doubling to 30 s,
//! reset after 30 s of uptime) and re-initialized with the first
//! `initialize` parameters, so the session survives (the server's in-memory
//! state does not). Its stderr goes to mcpgw's log, prefixed with the server
//! name; its memory is logged when it starts, every minute and when it ends.

use crate::child::{self, log, mib, Proc};
use crate::model::StdioCommand;
use crate::relay::{self, Actions, Kind, Members, Relay, Sink};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a server may take to answer `initialize`.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often live processes' memory is logged.
const STATS_EVERY: Duration = Duration::from_secs(60);
const SESSION_HEADER: &str = "mcp-session-id";
/// JSON-RPC error code of "the process limit is reached".
const LIMIT_CODE: i64 = -32000;

/// How one stdio server is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// A session (and its process) ends after this long without traffic.
    pub idle: Duration,
    /// Live processes at most (per-session mode).
    pub max_processes: usize,
    /// One process for every session.
    pub shared: bool,
    /// After SIGTERM, how long before SIGKILL.
    pub grace: Duration,
}

/// A running bridge.
pub struct Bridge {
    pub port: u16,
    server: Arc<Server>,
    task: tokio::task::JoinHandle<()>,
}

impl Bridge {
    /// Stop serving and stop every process (in parallel, bounded by the
    /// stop sequence's own timeouts).
    pub async fn stop(self) {
        self.server.ct.cancel();
        self.server.tasks.close();
        let bound = child::STDIN_GRACE + self.server.opts.grace + Duration::from_secs(3);
        let _ = tokio::time::timeout(bound, self.server.tasks.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// Serve `cmd` on `127.0.0.1:<ephemeral>`.
pub async fn start(
    name: &str,
    cmd: StdioCommand,
    opts: Options,
    parent: &CancellationToken,
) -> std::io::Result<Bridge> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let port = listener.local_addr()?.port();
    let server = Arc::new(Server {
        name: name.to_string(),
        cmd,
        slots: Arc::new(Semaphore::new(opts.max_processes.max(1))),
        opts,
        sessions: Mutex::new(HashMap::new()),
        template: Mutex::new(None),
        shared: tokio::sync::Mutex::new(None),
        ct: parent.child_token(),
        tasks: TaskTracker::new(),
    });
    server.tasks.spawn(housekeeping(server.clone()));
    let router = axum::Router::new()
        .route("/mcp", axum::routing::post(post).get(get).delete(delete))
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(server.clone());
    let shutdown = server.ct.clone();
    let task = tokio::spawn(async move {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
            .await;
    });
    Ok(Bridge { port, server, task })
}

struct Server {
    name: String,
    cmd: StdioCommand,
    opts: Options,
    /// Per-session mode: session id -> its process.
    sessions: Mutex<HashMap<String, Arc<Link>>>,
    /// Shared mode: the one process, once started.
    shared: tokio::sync::Mutex<Option<Arc<Link>>>,
    slots: Arc<Semaphore>,
    /// The latest `initialize` result, for sessions admitted at the limit.
    template: Mutex<Option<Box<serde_json::value::RawValue>>>,
    /// Cancelled when the gateway stops.
    ct: CancellationToken,
    tasks: TaskTracker,
}

/// A stream to the HTTP side.
#[derive(Clone)]
struct Tx(mpsc::UnboundedSender<String>);

impl Sink for Tx {
    fn is_open(&self) -> bool {
        !self.0.is_closed()
    }
}

/// What the first `initialize` said (for restarts and shared mode).
struct Init {
    params: Option<Box<serde_json::value::RawValue>>,
    result: Box<serde_json::value::RawValue>,
}

/// One session's process (or the shared one), across restarts.
struct Link {
    name: String,
    /// Short id for the log.
    tag: String,
    /// Admitted at the process limit: no process yet.
    deferred: AtomicBool,
    start_lock: tokio::sync::Mutex<()>,
    relay: Mutex<Relay<Tx>>,
    /// The process's stdin while it runs.
    input: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Initialized and taking requests.
    ready: AtomicBool,
    init: Mutex<Option<Init>>,
    /// A client's `notifications/initialized` was passed on (shared mode
    /// passes only the first).
    initialized: AtomicBool,
    last_active: Mutex<Instant>,
    pid: AtomicU32,
    peak_rss: AtomicU64,
    /// Why the session ended, for the log.
    ended_by: Mutex<&'static str>,
    ct: CancellationToken,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Link {
    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_active
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    fn relay<T>(&self, f: impl FnOnce(&mut Relay<Tx>) -> T) -> Option<T> {
        self.relay.lock().ok().map(|mut r| f(&mut r))
    }

    fn write(&self, line: String) -> bool {
        self.input
            .lock()
            .ok()
            .and_then(|i| i.as_ref().map(|s| s.send(line).is_ok()))
            .unwrap_or(false)
    }

    /// Carry out what the relay decided.
    fn apply(&self, out: Actions<Tx>) {
        for (sink, text) in out.deliver {
            let _ = sink.0.send(text);
        }
        for line in out.to_child {
            self.write(line);
        }
        for note in out.notes {
            log(&self.name, format!("session {}: {note}", self.tag));
        }
    }

    fn sample_rss(&self) -> Option<u64> {
        let rss = child::group_rss(self.pid.load(Ordering::Relaxed))?;
        self.peak_rss.fetch_max(rss, Ordering::Relaxed);
        Some(rss)
    }

    fn end(&self, why: &'static str) {
        if let Ok(mut e) = self.ended_by.lock() {
            *e = why;
        }
        self.ct.cancel();
    }

    /// Initialize a new process of this session with the session's own
    /// `initialize` parameters (after a restart, or a start delayed by the
    /// process limit), then take requests.
    async fn initialize_again(&self) -> Result<(), String> {
        let params = self
            .init
            .lock()
            .ok()
            .and_then(|i| i.as_ref().and_then(|i| i.params.clone()));
        let mut m = own_initialize();
        if let Some(p) = params {
            m.insert("params".into(), p);
        }
        self.handshake(m).await?;
        self.write(INITIALIZED.into());
        self.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Send `initialize` (the client's, or the stored one on a restart) and
    /// wait for the answer. `Ok` is a result, `Err` an error answer or why
    /// there is none.
    async fn handshake(&self, m: Members) -> Result<String, String> {
        let params = m.get("params").cloned();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let Some((id, out)) = self.relay(|r| r.request(m, "initialize", Tx(tx))) else {
            return Err("internal error".into());
        };
        self.apply(out);
        let answer = tokio::time::timeout(INIT_TIMEOUT, async {
            while let Some(text) = rx.recv().await {
                if let Some(m) = relay::parse(&text) {
                    if matches!(relay::kind(&m), Kind::Response) {
                        return Some((text, m));
                    }
                }
            }
            None
        })
        .await;
        let (text, m) = match answer {
            Ok(Some(a)) => a,
            Ok(None) => return Err("the server exited before answering initialize".into()),
            Err(_) => {
                self.relay(|r| r.abandon(id));
                return Err(format!(
                    "the server did not answer initialize within {}s",
                    INIT_TIMEOUT.as_secs()
                ));
            }
        };
        match m.get("result") {
            Some(result) => {
                if let Ok(mut i) = self.init.lock() {
                    if i.is_none() {
                        *i = Some(Init {
                            params,
                            result: result.clone(),
                        });
                    }
                }
                Ok(text)
            }
            None => Err(text),
        }
    }
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // Session ids need not be secret (127.0.0.1, behind the gateway's
        // sealed ids), only unique.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = t.to_le_bytes().iter().copied().cycle().take(n).collect();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

impl Server {
    fn new_link(&self, tag: String, permit: Option<OwnedSemaphorePermit>) -> Arc<Link> {
        Arc::new(Link {
            name: self.name.clone(),
            tag,
            deferred: AtomicBool::new(false),
            start_lock: tokio::sync::Mutex::new(()),
            relay: Mutex::new(Relay::new(&self.name, self.opts.shared)),
            input: Mutex::new(None),
            ready: AtomicBool::new(false),
            init: Mutex::new(None),
            initialized: AtomicBool::new(false),
            last_active: Mutex::new(Instant::now()),
            pid: AtomicU32::new(0),
            peak_rss: AtomicU64::new(0),
            ended_by: Mutex::new("the gateway stopping"),
            ct: self.ct.child_token(),
            permit: Mutex::new(permit),
        })
    }

    /// Start the process of `link` and its relay loop.
    fn launch(self: &Arc<Self>, link: &Arc<Link>) -> Result<(), String> {
        let (proc, lines) = child::spawn(&self.name, &self.cmd)?;
        link.pid.store(proc.pid, Ordering::Relaxed);
        if let Ok(mut i) = link.input.lock() {
            *i = proc.input();
        }
        self.tasks
            .spawn(supervise(self.clone(), link.clone(), proc, lines));
        Ok(())
    }

    fn live(&self) -> usize {
        self.opts
            .max_processes
            .max(1)
            .saturating_sub(self.slots.available_permits())
    }

    fn limit_message(&self) -> String {
        format!(
            "stdio server {}: {} processes are running, the most allowed (\"maxProcesses\" of this server in the servers file, or mcpgw run --stdio-max-processes); each client session has its own process until the session ends (DELETE) or is idle for --stdio-idle-timeout; retry later, or raise the limit, or set \"sharedProcess\": true if the server keeps no per-client state",
            self.name,
            self.opts.max_processes.max(1)
        )
    }

    /// `initialize` in per-session mode: a new session and its process.
    async fn open_session(self: &Arc<Self>, m: Members) -> Response {
        let id = m.get("id").cloned().unwrap_or_default();
        let sid = random_hex(16);
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return self.defer_session(m, sid);
        };
        let link = self.new_link(sid.get(..8).unwrap_or_default().to_string(), Some(permit));
        if let Err(e) = self.launch(&link) {
            log(&self.name, &e);
            link.end("a failed start");
            return json(
                StatusCode::OK,
                relay::error_text(&id, -32603, &format!("stdio server {}: {e}", self.name)),
                None,
            );
        }
        match link.handshake(m).await {
            Ok(text) => {
                link.ready.store(true, Ordering::Relaxed);
                self.log_started(&link);
                let result = link
                    .init
                    .lock()
                    .ok()
                    .and_then(|i| i.as_ref().map(|i| i.result.clone()));
                if let (Some(r), Ok(mut t)) = (result, self.template.lock()) {
                    *t = Some(r);
                }
                if let Ok(mut s) = self.sessions.lock() {
                    s.insert(sid.clone(), link);
                }
                json(StatusCode::OK, text, Some(&sid))
            }
            Err(e) => {
                link.end("a failed initialize");
                let text = if relay::parse(&e).is_some() {
                    e
                } else {
                    relay::error_text(&id, -32603, &format!("stdio server {}: {e}", self.name))
                };
                json(StatusCode::OK, text, None)
            }
        }
    }

    /// At the process limit: the session is admitted with what the server
    /// answered another session's `initialize`, and its process starts when
    /// a slot is free; until then each of its calls gets the limit error.
    /// (Refusing `initialize` would only leave the server out of the
    /// client's gateway session, which the client never sees.) Without an
    /// earlier answer to reuse, `initialize` gets the error.
    fn defer_session(self: &Arc<Self>, m: Members, sid: String) -> Response {
        let id = m.get("id").cloned().unwrap_or_default();
        let template = self.template.lock().ok().and_then(|t| t.clone());
        let Some(result) = template else {
            log(
                &self.name,
                format!("initialize refused: {}", self.limit_message()),
            );
            return json(
                StatusCode::OK,
                relay::error_text(&id, LIMIT_CODE, &self.limit_message()),
                None,
            );
        };
        let link = self.new_link(sid.get(..8).unwrap_or_default().to_string(), None);
        link.deferred.store(true, Ordering::Relaxed);
        if let Ok(mut i) = link.init.lock() {
            *i = Some(Init {
                params: m.get("params").cloned(),
                result: result.clone(),
            });
        }
        log(
            &self.name,
            format!(
                "session {}: admitted without a process ({} processes running, the limit); its calls get an error until one ends",
                link.tag,
                self.opts.max_processes.max(1)
            ),
        );
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(sid.clone(), link);
        }
        json(
            StatusCode::OK,
            format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
                id.get(),
                result.get()
            ),
            Some(&sid),
        )
    }

    /// Give a session admitted at the limit its process, if a slot is free.
    async fn start_deferred(self: &Arc<Self>, link: &Arc<Link>) -> Result<(), String> {
        let _one = link.start_lock.lock().await;
        if !link.deferred.load(Ordering::Relaxed) {
            return Ok(());
        }
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.limit_message())?;
        if let Ok(mut p) = link.permit.lock() {
            *p = Some(permit);
        }
        if let Err(e) = self.launch(link) {
            link.end("a failed start");
            return Err(format!("stdio server {}: {e}", self.name));
        }
        link.deferred.store(false, Ordering::Relaxed);
        match link.initialize_again().await {
            Ok(()) => {
                self.log_started(link);
                Ok(())
            }
            Err(e) => {
                link.end("a failed initialize");
                Err(format!("stdio server {}: {e}", self.name))
            }
        }
    }

    fn log_started(&self, link: &Link) {
        let rss = link.sample_rss().map(mib).unwrap_or_else(|| "n/a".into());
        log(
            &self.name,
            format!(
                "session {}: pid {} started (RSS {rss}; {} of {} processes)",
                link.tag,
                link.pid.load(Ordering::Relaxed),
                self.live(),
                self.opts.max_processes.max(1)
            ),
        );
    }

    /// Shared mode: the one process, started and initialized on first use
    /// (with `m` if that use is an `initialize`, else with mcpgw's own).
    async fn shared_link(
        self: &Arc<Self>,
        m: Option<&Members>,
    ) -> Result<(Arc<Link>, Option<String>), String> {
        let mut slot = self.shared.lock().await;
        if let Some(link) = slot.as_ref().filter(|l| !l.ct.is_cancelled()) {
            return Ok((link.clone(), None));
        }
        let link = self.new_link("shared".into(), None);
        self.launch(&link)?;
        let (init, ours) = match m {
            Some(m) => (m.clone(), false),
            None => (own_initialize(), true),
        };
        match link.handshake(init).await {
            Ok(text) => {
                if ours {
                    link.write(INITIALIZED.into());
                    link.initialized.store(true, Ordering::Relaxed);
                }
                link.ready.store(true, Ordering::Relaxed);
                let rss = link.sample_rss().map(mib).unwrap_or_else(|| "n/a".into());
                log(
                    &self.name,
                    format!(
                        "pid {} started, shared by every session (RSS {rss})",
                        link.pid.load(Ordering::Relaxed)
                    ),
                );
                *slot = Some(link.clone());
                Ok((link, Some(text)))
            }
            Err(e) => {
                link.end("a failed initialize");
                Err(relay::parse(&e)
                    .and_then(|m| m.get("error").map(|e| e.get().to_string()))
                    .unwrap_or(e))
            }
        }
    }

    fn session(&self, headers: &HeaderMap) -> Result<Arc<Link>, Box<Response>> {
        let Some(sid) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
            return Err(Box::new(json(
                StatusCode::BAD_REQUEST,
                relay::error_null(-32600, "Bad Request: Mcp-Session-Id is required"),
                None,
            )));
        };
        let link = self.sessions.lock().ok().and_then(|s| s.get(sid).cloned());
        match link {
            Some(l) => {
                l.touch();
                Ok(l)
            }
            None => Err(Box::new(json(
                StatusCode::NOT_FOUND,
                relay::error_null(-32001, "Session not found"),
                None,
            ))),
        }
    }

    async fn link_for(self: &Arc<Self>, headers: &HeaderMap) -> Result<Arc<Link>, Box<Response>> {
        if !self.opts.shared {
            return self.session(headers);
        }
        match self.shared_link(None).await {
            Ok((l, _)) => {
                l.touch();
                Ok(l)
            }
            Err(e) => Err(Box::new(json(
                StatusCode::OK,
                relay::error_null(-32603, &format!("stdio server {}: {e}", self.name)),
                None,
            ))),
        }
    }
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The `initialize` mcpgw sends itself (a shared process first used by a
/// request that is not one, e.g. after mcpgw restarted).
fn own_initialize() -> Members {
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"mcpgw","version":"{}"}}}}}}"#,
        env!("CARGO_PKG_VERSION")
    );
    relay::parse(&text).unwrap_or_default()
}

fn json(status: StatusCode, text: String, session: Option<&str>) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
    r
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// An SSE response carrying what arrives on `rx`, until it closes.
fn sse(rx: mpsc::UnboundedReceiver<String>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let text = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {text}\n\n"))),
            rx,
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}

async fn post(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(m) = std::str::from_utf8(&body).ok().and_then(relay::parse) else {
        return json(
            StatusCode::BAD_REQUEST,
            relay::error_null(
                -32700,
                "Parse error: one JSON-RPC message (an object) per POST",
            ),
            None,
        );
    };
    match relay::kind(&m) {
        Kind::Request(method) if method == "initialize" => {
            if !server.opts.shared {
                return server.open_session(m).await;
            }
            let id = m.get("id").cloned().unwrap_or_default();
            match server.shared_link(Some(&m)).await {
                Ok((_, Some(text))) => json(StatusCode::OK, text, None),
                Ok((link, None)) => {
                    let result = link
                        .init
                        .lock()
                        .ok()
                        .and_then(|i| i.as_ref().map(|i| i.result.get().to_string()))
                        .unwrap_or_else(|| "{}".into());
                    json(
                        StatusCode::OK,
                        format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get()),
                        None,
                    )
                }
                Err(e) => json(
                    StatusCode::OK,
                    relay::error_text(&id, -32603, &format!("stdio server {}: {e}", server.name)),
                    None,
                ),
            }
        }
        Kind::Request(method) => {
            let link = match server.link_for(&headers).await {
                Ok(l) => l,
                Err(r) => return *r,
            };
            if link.deferred.load(Ordering::Relaxed) {
                if let Err(e) = server.start_deferred(&link).await {
                    let id = m.get("id").cloned().unwrap_or_default();
                    return json(StatusCode::OK, relay::error_text(&id, LIMIT_CODE, &e), None);
                }
            }
            if !link.ready.load(Ordering::Relaxed) {
                let id = m.get("id").cloned().unwrap_or_default();
                return json(
                    StatusCode::OK,
                    relay::error_text(
                        &id,
                        -32603,
                        &format!(
                            "stdio server {} exited and is restarting; retry shortly",
                            server.name
                        ),
                    ),
                    None,
                );
            }
            let (tx, rx) = mpsc::unbounded_channel();
            if let Some((_, out)) = link.relay(|r| r.request(m, &method, Tx(tx))) {
                link.apply(out);
            }
            sse(rx)
        }
        Kind::Notification(method) => {
            let link = match server.link_for(&headers).await {
                Ok(l) => l,
                Err(r) => return *r,
            };
            if method == "notifications/initialized"
                && link.initialized.swap(true, Ordering::Relaxed)
                && server.opts.shared
            {
                // The shared process was initialized once; later sessions'
                // notices are not news to it.
                return empty(StatusCode::ACCEPTED);
            }
            if let Some(line) = link.relay(|r| r.client_notification(m, &method)).flatten() {
                link.write(line);
            }
            empty(StatusCode::ACCEPTED)
        }
        Kind::Response => {
            let link = match server.link_for(&headers).await {
                Ok(l) => l,
                Err(r) => return *r,
            };
            if let Some(line) = link.relay(|r| r.client_response(&m)) {
                link.write(line);
            }
            empty(StatusCode::ACCEPTED)
        }
        Kind::Invalid => json(
            StatusCode::BAD_REQUEST,
            relay::error_null(-32600, "Invalid Request"),
            None,
        ),
    }
}

/// The session's standalone stream.
async fn get(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if server.opts.shared {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let link = match server.session(&headers) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    if let Some(out) = link.relay(|r| r.open_standalone(Tx(tx))) {
        link.apply(out);
    }
    sse(rx)
}

async fn delete(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if server.opts.shared {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let link = match server.session(&headers) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if let Ok(mut s) = server.sessions.lock() {
        s.retain(|_, l| !Arc::ptr_eq(l, &link));
    }
    link.end("DELETE");
    empty(StatusCode::OK)
}

enum Ended {
    /// The session ended or the gateway is stopping.
    Stopped,
    /// The process exited by itself.
    Exited(String),
}

/// Relay the process's output until it exits or the session ends.
async fn serve(link: &Link, proc: &mut Proc, lines: &mut mpsc::UnboundedReceiver<String>) -> Ended {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = link.ct.cancelled() => return Ended::Stopped,
            line = lines.recv() => match line {
                Some(text) => {
                    if let Some(out) = link.relay(|r| r.on_child_message(&text, Instant::now())) {
                        link.apply(out);
                    }
                    link.touch();
                }
                None => {
                    // stdout closed: the process is ending.
                    return tokio::select! {
                        _ = link.ct.cancelled() => Ended::Stopped,
                        s = proc.wait() => Ended::Exited(s),
                    };
                }
            },
            _ = tick.tick() => {
                if link.relay(|r| r.has_held()).unwrap_or(false) {
                    if let Some(out) = link.relay(|r| r.expire(Instant::now())) {
                        link.apply(out);
                    }
                }
            }
        }
    }
}

/// Run one session's process: relay, restart it when it exits, stop it
/// when the session ends.
async fn supervise(
    server: Arc<Server>,
    link: Arc<Link>,
    mut proc: Proc,
    mut lines: mpsc::UnboundedReceiver<String>,
) {
    let name = server.name.clone();
    let mut failures: u32 = 0;
    loop {
        match serve(&link, &mut proc, &mut lines).await {
            Ended::Stopped => break,
            Ended::Exited(status) => {
                link.ready.store(false, Ordering::Relaxed);
                if let Ok(mut i) = link.input.lock() {
                    *i = None;
                }
                let why = format!("exited ({status})");
                if let Some(out) = link.relay(|r| r.child_exited(&why)) {
                    link.apply(out);
                }
                if proc.started.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                let delay = Duration::from_millis(250u64.saturating_mul(1u64 << failures.min(7)))
                    .min(Duration::from_secs(30));
                failures = failures.saturating_add(1);
                log(
                    &name,
                    format!(
                        "session {}: pid {} {why}; restarting in {} ms",
                        link.tag,
                        proc.pid,
                        delay.as_millis()
                    ),
                );
                tokio::select! {
                    _ = link.ct.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                match child::spawn(&name, &server.cmd) {
                    Ok((p, l)) => {
                        proc = p;
                        lines = l;
                        link.pid.store(proc.pid, Ordering::Relaxed);
                        if let Ok(mut i) = link.input.lock() {
                            *i = proc.input();
                        }
                        server.tasks.spawn(reinitialize(link.clone()));
                    }
                    Err(e) => {
                        log(&name, format!("restart failed: {e}"));
                        link.end("a failed restart");
                        break;
                    }
                }
            }
        }
    }
    if let Ok(mut i) = link.input.lock() {
        *i = None;
    }
    link.ready.store(false, Ordering::Relaxed);
    if let Ok(mut s) = server.sessions.lock() {
        s.retain(|_, l| !Arc::ptr_eq(l, &link));
    }
    link.sample_rss();
    let how = proc.stop(server.opts.grace).await;
    let why = link.ended_by.lock().map(|w| *w).unwrap_or("");
    log(
        &name,
        format!(
            "session {} ended by {why}: pid {} {how}; ran {}, peak RSS {}",
            link.tag,
            proc.pid,
            duration_text(proc.started.elapsed()),
            mib(link.peak_rss.load(Ordering::Relaxed))
        ),
    );
    // Only now is the process gone: its slot is free.
    if let Ok(mut p) = link.permit.lock() {
        p.take();
    }
}

/// Initialize a restarted process as the session's client did.
async fn reinitialize(link: Arc<Link>) {
    match link.initialize_again().await {
        Ok(()) => log(&link.name, "restarted and re-initialized"),
        Err(e) => log(&link.name, format!("re-initialize failed: {e}")),
    }
}

/// End idle sessions; log the processes' memory every minute.
async fn housekeeping(server: Arc<Server>) {
    let idle = server.opts.idle;
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stats = Instant::now();
    loop {
        tokio::select! {
            _ = server.ct.cancelled() => return,
            _ = tick.tick() => {}
        }
        let links: Vec<Arc<Link>> = server
            .sessions
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for l in &links {
            let quiet = l
                .relay(|r| !r.busy() && !r.has_standalone())
                .unwrap_or(true);
            if quiet && l.idle_for() >= idle {
                if let Ok(mut s) = server.sessions.lock() {
                    s.retain(|_, x| !Arc::ptr_eq(x, l));
                }
                l.end("being idle");
            }
        }
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            let mut all = links;
            if let Some(l) = server.shared.lock().await.as_ref() {
                all.push(l.clone());
            }
            let mut parts = Vec::new();
            let mut total = 0u64;
            for l in all.iter().filter(|l| !l.ct.is_cancelled()) {
                if let Some(rss) = l.sample_rss() {
                    total = total.saturating_add(rss);
                    parts.push(format!(
                        "pid {} {}",
                        l.pid.load(Ordering::Relaxed),
                        mib(rss)
                    ));
                }
            }
            if !parts.is_empty() {
                log(
                    &server.name,
                    format!(
                        "{} process(es), RSS {} in all: {}",
                        parts.len(),
                        mib(total),
                        parts.join(", ")
                    ),
                );
            }
        }
    }
}
