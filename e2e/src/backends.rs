//! MCP test backends for the end-to-end tests.
//!
//! Two small MCP servers built on the official Rust SDK (`rmcp`), served over
//! Streamable HTTP at `/mcp` on `127.0.0.1`:
//!
//! * [`Kind::Alpha`]: stateful (legacy `Mcp-Session-Id` sessions), answers POSTs
//!   with `text/event-stream`. Tools: `echo`, `add`, `count`, `admin_reset`,
//!   `whoami`, `sleep`, and `announce` / `roots`, which exercise the
//!   session's standalone (GET) stream: a log notification and a
//!   `roots/list` request sent there, and what the client answered.
//! * [`Kind::Beta`]: stateless, answers POSTs with `application/json` (falls back
//!   to SSE when a tool emits notifications before its result). Tools: `echo`,
//!   `multiply`, `count`, `whoami`.
//! * [`Kind::Modern`]: Beta's tools (`echo` answers `modern: ...`), speaking
//!   only 2026-07-28 (no `initialize`).
//!
//! Alpha and Beta, like every rmcp 3.9 server, also answer 2026-07-28 requests.
//!
//! Host and Origin validation are disabled so the gateway may forward any
//! authority (`127.0.0.1:<port>`, `localhost:1975`, `alpha.test`, ...).

use std::{net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use rmcp::{
    handler::server::{
        router::tool::ToolRouter,
        tool::{schema_for_output, InputResponses, RequestState},
        wrapper::Parameters,
    },
    model::{
        CallToolResponse, CallToolResult, ContentBlock, Implementation, InputRequests,
        InputRequiredResult, ProgressNotificationParam, ProtocolVersion, ServerCapabilities,
        ServerConfig, ServerNotification, SubscriptionFilter,
    },
    schemars,
    service::{RequestContext, SubscriptionContext},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::{local::LocalSessionManager, never::NeverSessionManager},
        StreamableHttpServerConfig, StreamableHttpService,
    },
    ErrorData, RoleServer, ServerHandler,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Which test backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Stateful (sessions), SSE answers, server name `alpha`.
    Alpha,
    /// Stateless, JSON answers, server name `beta`.
    Beta,
    /// 2026-07-28 only, server name `modern`.
    Modern,
}

impl Kind {
    /// The `serverInfo.name` this backend reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Alpha => "alpha",
            Kind::Beta => "beta",
            Kind::Modern => "modern",
        }
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "alpha" => Ok(Kind::Alpha),
            "beta" => Ok(Kind::Beta),
            "modern" => Ok(Kind::Modern),
            other => Err(format!(
                "unknown backend kind {other:?} (want alpha|beta|modern)"
            )),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A running test backend. Dropping it stops the server.
#[derive(Debug)]
pub struct TestServer {
    /// The bound address (always `127.0.0.1:<port>`).
    pub addr: SocketAddr,
    /// Which backend this is.
    pub kind: Kind,
    ct: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server and waits until the serving task has finished (its
    /// listener is closed and all connections are done).
    pub async fn shutdown(mut self) {
        self.ct.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

/// Starts a backend on an ephemeral port of 127.0.0.1.
///
/// # Panics
/// If binding 127.0.0.1:0 fails.
pub async fn spawn(kind: Kind) -> TestServer {
    #[allow(clippy::expect_used)]
    spawn_on(kind, 0)
        .await
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Starts a backend on `127.0.0.1:port` (`0` picks an ephemeral port).
pub async fn spawn_on(kind: Kind, port: u16) -> std::io::Result<TestServer> {
    spawn_wrapped(kind, port, |r| r).await
}

/// Starts a backend whose router is wrapped by `wrap` first (a layer that
/// checks credentials, say).
pub async fn spawn_wrapped(
    kind: Kind,
    port: u16,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> std::io::Result<TestServer> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await?;
    let addr = listener.local_addr()?;
    let ct = CancellationToken::new();

    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_cancellation_token(ct.child_token());

    let router = match kind {
        Kind::Alpha => {
            let config = config
                .with_legacy_session_mode(true)
                .with_json_response(false);
            let service = StreamableHttpService::new(
                || Ok(Alpha::new()),
                Arc::new(LocalSessionManager::default()),
                config,
            );
            axum::Router::new().route_service("/mcp", service)
        }
        Kind::Beta => {
            let config = config
                .with_legacy_session_mode(false)
                .with_json_response(true);
            let service = StreamableHttpService::new(
                || Ok(Beta::new()),
                Arc::new(NeverSessionManager::default()),
                config,
            );
            axum::Router::new().route_service("/mcp", service)
        }
        Kind::Modern => {
            let config = config
                .with_legacy_session_mode(false)
                .with_json_response(true)
                .with_stateless_protocol_metadata_required(true);
            let service = StreamableHttpService::new(
                || Ok(Beta::modern()),
                Arc::new(NeverSessionManager::default()),
                config,
            );
            axum::Router::new().route_service("/mcp", service)
        }
    };

    let router = wrap(router);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let shutdown = ct.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
            .await;
    });

    Ok(TestServer {
        addr,
        kind,
        ct,
        task: Some(task),
    })
}

// ---------------------------------------------------------------------------
// Tool parameter / output types
// ---------------------------------------------------------------------------

/// `echo` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text to echo back.
    pub text: String,
}

/// `add` / `multiply` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct BinaryArgs {
    /// Left operand.
    pub a: f64,
    /// Right operand.
    pub b: f64,
}

/// `add` structured output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SumOutput {
    /// a + b
    pub sum: f64,
}

/// Largest `n` that `count` accepts.
pub const MAX_COUNT: u32 = 20;
/// Default delay between `count` steps.
pub const DEFAULT_COUNT_DELAY_MS: u64 = 50;

/// `count` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CountArgs {
    /// How many progress steps to emit (at most 20).
    #[schemars(range(min = 0, max = 20))]
    pub n: u32,
    /// Delay between steps in milliseconds (default 50).
    #[serde(default = "default_count_delay_ms")]
    pub delay_ms: u64,
}

fn default_count_delay_ms() -> u64 {
    DEFAULT_COUNT_DELAY_MS
}

/// `sleep` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
}

// ---------------------------------------------------------------------------
// Shared tool bodies
// ---------------------------------------------------------------------------

/// Renders an f64 as a JSON number, as an integer when it is integral.
fn json_number(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        serde_json::Value::from(value as i64)
    } else {
        serde_json::Value::from(value)
    }
}

/// The JSON text `whoami` returns: selected headers of the HTTP request that
/// carried the tool call, and its path (with the query).
fn whoami_text(ctx: &RequestContext<RoleServer>) -> String {
    const HEADERS: [&str; 7] = [
        "authorization",
        "x-api-key",
        "mcp-protocol-version",
        "host",
        "traceparent",
        "tracestate",
        "baggage",
    ];
    let parts = ctx.extensions.get::<http::request::Parts>();
    let mut out = serde_json::Map::new();
    for name in HEADERS {
        let value = parts
            .and_then(|p| p.headers.get(name))
            .map(|v| serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .unwrap_or(serde_json::Value::Null);
        out.insert(name.to_owned(), value);
    }
    // The claims of a token a verifying layer accepted (`sts::verifier`).
    if let Some(c) = parts.and_then(|p| p.extensions.get::<crate::sts::VerifiedClaims>()) {
        out.insert("token_claims".to_owned(), c.0.clone());
    }
    let path = parts
        .and_then(|p| p.uri.path_and_query())
        .map(|p| serde_json::Value::String(p.as_str().to_owned()))
        .unwrap_or(serde_json::Value::Null);
    out.insert("path".to_owned(), path);
    serde_json::Value::Object(out).to_string()
}

async fn count_body(
    args: CountArgs,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    if args.n > MAX_COUNT {
        return Err(ErrorData::invalid_params(
            format!("n must be at most {MAX_COUNT}"),
            None,
        ));
    }
    let delay = Duration::from_millis(args.delay_ms);
    let token = ctx.meta.get_progress_token();
    for i in 1..=args.n {
        if let Some(token) = &token {
            ctx.peer
                .notify_progress(
                    ProgressNotificationParam::new(token.clone(), f64::from(i))
                        .with_total(f64::from(args.n))
                        .with_message(format!("step {i}")),
                )
                .await
                .map_err(|e| ErrorData::internal_error(format!("progress: {e}"), None))?;
        }
        if i < args.n {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = ctx.ct.cancelled() => break,
            }
        }
    }
    Ok(CallToolResult::success(vec![ContentBlock::text(format!(
        "counted to {}",
        args.n
    ))]))
}

async fn sleep_body(ms: u64, ct: &CancellationToken) -> String {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        _ = ct.cancelled() => {}
    }
    "slept".to_owned()
}

// ---------------------------------------------------------------------------
// Alpha
// ---------------------------------------------------------------------------

/// The stateful `alpha` backend (one per session).
#[derive(Debug, Clone)]
pub struct Alpha {
    tool_router: ToolRouter<Self>,
    /// What the client answered to the `roots/list` sent by `announce`.
    roots: Arc<std::sync::Mutex<Option<String>>>,
}

/// `announce` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AnnounceArgs {
    /// The text of the log message.
    pub text: String,
}

impl Default for Alpha {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl Alpha {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            roots: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    #[tool(
        description = "Right after answering, send a log message with the text and a roots/list request on the session's standalone stream (not this call's); `roots` tells what the client answered"
    )]
    async fn announce(
        &self,
        Parameters(args): Parameters<AnnounceArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        let peer = ctx.peer.clone();
        let slot = Arc::clone(&self.roots);
        tokio::spawn(async move {
            // After this call's answer: the messages belong to no request.
            tokio::time::sleep(Duration::from_millis(100)).await;
            #[allow(deprecated)]
            let note = rmcp::model::LoggingMessageNotificationParam::new(
                rmcp::model::LoggingLevel::Info,
                serde_json::Value::String(args.text),
            )
            .with_logger("alpha");
            #[allow(deprecated)]
            let _ = peer.notify_logging_message(note).await;
            // Deprecated by SEP-2577 (2026-07-28), still part of 2025-11-25.
            #[allow(deprecated)]
            let roots = peer.list_roots().await;
            let answer = match roots {
                Ok(r) => serde_json::to_string(&r).unwrap_or_default(),
                Err(e) => format!("error: {e}"),
            };
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(answer);
            }
        });
        "announcing".to_owned()
    }

    #[tool(
        description = "What the client answered to the roots/list request `announce` sent (`none` while there is no answer)"
    )]
    async fn roots(&self) -> String {
        self.roots
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| "none".to_owned())
    }

    #[tool(
        description = "Echo the text back, prefixed with 'alpha: '",
        title = "Echo",
        annotations(read_only_hint = true)
    )]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        format!("alpha: {}", args.text)
    }

    #[tool(
        description = "Add two numbers",
        output_schema = schema_for_output::<SumOutput>()
    )]
    async fn add(&self, Parameters(args): Parameters<BinaryArgs>) -> CallToolResult {
        let sum = args.a + args.b;
        let mut result = CallToolResult::success(vec![ContentBlock::text(sum.to_string())]);
        result.structured_content = Some(serde_json::json!({ "sum": json_number(sum) }));
        result
    }

    #[tool(
        description = "Count to n, sending a progress notification per step (n <= 20, delay_ms default 50)"
    )]
    async fn count(
        &self,
        Parameters(args): Parameters<CountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        count_body(args, &ctx).await
    }

    #[tool(description = "Reset the backend (administrative)")]
    async fn admin_reset(&self) -> String {
        "reset".to_owned()
    }

    #[tool(
        description = "Return selected HTTP request headers received by the backend, as a JSON object"
    )]
    async fn whoami(&self, ctx: RequestContext<RoleServer>) -> String {
        whoami_text(&ctx)
    }

    #[tool(description = "Sleep for ms milliseconds (stops early when cancelled)")]
    async fn sleep(
        &self,
        Parameters(args): Parameters<SleepArgs>,
        ct: CancellationToken,
    ) -> String {
        sleep_body(args.ms, &ct).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Alpha {
    fn get_info(&self) -> ServerConfig {
        #[allow(deprecated)]
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("alpha", env!("CARGO_PKG_VERSION")))
            .with_instructions("Alpha has echo and counting tools.")
    }

    // Logging is deprecated by SEP-2577 but Alpha still advertises it.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Beta
// ---------------------------------------------------------------------------

/// The stateless `beta` backend, or (`modern`) the same tools as `modern`,
/// which speaks only 2026-07-28.
#[derive(Debug, Clone)]
pub struct Beta {
    tool_router: ToolRouter<Self>,
    modern: bool,
}

impl Default for Beta {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl Beta {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            modern: false,
        }
    }

    /// The 2026-07-28-only `modern` backend.
    pub fn modern() -> Self {
        Self {
            modern: true,
            ..Self::new()
        }
    }

    fn name(&self) -> &'static str {
        if self.modern {
            Kind::Modern.name()
        } else {
            Kind::Beta.name()
        }
    }

    #[tool(description = "Echo the text back, prefixed with the server's name")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        format!("{}: {}", self.name(), args.text)
    }

    #[tool(description = "Multiply two numbers")]
    async fn multiply(&self, Parameters(args): Parameters<BinaryArgs>) -> String {
        (args.a * args.b).to_string()
    }

    #[tool(
        description = "Count to n, sending a progress notification per step (n <= 20, delay_ms default 50)"
    )]
    async fn count(
        &self,
        Parameters(args): Parameters<CountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        count_body(args, &ctx).await
    }

    #[tool(
        description = "Return selected HTTP request headers received by the backend, as a JSON object"
    )]
    async fn whoami(&self, ctx: RequestContext<RoleServer>) -> String {
        whoami_text(&ctx)
    }

    /// A 2026-07-28 multi-round-trip call: the first round asks the user
    /// (elicitation) and hands out its own `requestState`; the retry that
    /// brings both back orders the item. It asks whatever the client
    /// declared (a misbehaving server, for the gateway's cross-era tests).
    #[tool(description = "Order an item once the user confirms (2026-07-28 input_required)")]
    async fn confirm(
        &self,
        Parameters(args): Parameters<ItemArgs>,
        InputResponses(responses): InputResponses,
        RequestState(state): RequestState,
    ) -> CallToolResponse {
        let mine = format!("{}-state:{}", self.name(), args.item);
        if responses.is_some_and(|r| r.contains_key("ok")) && state.as_deref() == Some(&mine) {
            return CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(
                format!("ordered {}", args.item),
            )]));
        }
        let ask = serde_json::json!({"ok": {"method": "elicitation/create", "params": {
            "mode": "form",
            "message": format!("Order {}?", args.item),
            "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
        }}});
        let requests: Option<InputRequests> = serde_json::from_value(ask).ok();
        CallToolResponse::InputRequired(InputRequiredResult::new(requests, Some(mine)))
    }
}

/// `confirm` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ItemArgs {
    /// What to order.
    pub item: String,
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Beta {
    fn get_info(&self) -> ServerConfig {
        let caps = if self.modern {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build()
        } else {
            ServerCapabilities::builder().enable_tools().build()
        };
        let info = ServerConfig::new(caps)
            .with_server_info(Implementation::new(self.name(), env!("CARGO_PKG_VERSION")));
        if self.modern {
            info.with_instructions("Modern speaks only 2026-07-28.")
        } else {
            info
        }
    }

    /// Modern serves `subscriptions/listen` (tools list changes).
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.modern.then(|| requested.clone())
    }

    /// One tools list change shortly after the acknowledgement, then quiet
    /// until the client leaves.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let change = ServerNotification::ToolListChangedNotification(Default::default());
                let _ = context.sink().send(change).await;
            }
            _ = context.cancelled() => return Ok(()),
        }
        context.cancelled().await;
        Ok(())
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        if self.modern {
            std::borrow::Cow::Borrowed(&[ProtocolVersion::V_2026_07_28])
        } else {
            std::borrow::Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }
}
