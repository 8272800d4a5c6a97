//! The conformance fixture: an MCP server built on `rmcp` that implements
//! everything the server scenarios of the MCP conformance suite
//! (`@modelcontextprotocol/conformance` 0.1.16, `conformance server`) call and
//! check, modelled on the suite's reference server
//! (`examples/servers/typescript/everything-server.ts`).
//!
//! * tools: `test_simple_text`, `test_image_content`, `test_audio_content`,
//!   `test_embedded_resource`, `test_multiple_content_types`,
//!   `test_tool_with_logging`, `test_tool_with_progress`, `test_error_handling`,
//!   `test_sampling`, `test_elicitation`, `test_elicitation_sep1034_defaults`,
//!   `test_elicitation_sep1330_enums`, `json_schema_2020_12_tool` (SEP-1613,
//!   pending suite) and `test_reconnection` (SEP-1699, pending suite);
//! * resources: `test://static-text`, `test://static-binary`,
//!   `test://watched-resource`, the template `test://template/{id}/data`,
//!   `resources/subscribe` and `resources/unsubscribe`;
//! * prompts: `test_simple_prompt`, `test_prompt_with_arguments`,
//!   `test_prompt_with_embedded_resource`, `test_prompt_with_image`;
//! * `completion/complete`, `logging/setLevel`, `ping`.
//!
//! It is served like [`crate::backends::Kind::Alpha`]: stateful (legacy
//! `Mcp-Session-Id` sessions), SSE answers with priming events and event ids
//! (resumable with `Last-Event-ID`). rmcp gives a tool no handle on its POST
//! stream, so `test_reconnection`'s server-side disconnect is done in front
//! of rmcp: the response stream of a `tools/call` of `test_reconnection` is
//! cut after its priming event, and the tool answers
//! [`RECONNECTION_DELAY`] later, after the client has resumed the stream with
//! `GET` + `Last-Event-ID` (rmcp replays the request's events from its
//! cache). Unlike the test backends it keeps rmcp's
//! default `Host` validation (loopback names only), so the suite's
//! `dns-rebinding-protection` scenario passes against it directly; the gateway
//! must therefore send a loopback `:authority` (`127.0.0.1:<port>`).
//!
//! Logging, sampling and resource subscriptions are deprecated by SEP-2577 in
//! rmcp; the suite still tests them, hence the module-wide
//! `allow(deprecated)`.
#![allow(deprecated)]

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::serve::ListenerExt;
use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
        CreateMessageRequestParams, ElicitRequestParams, ElicitationSchema, GetPromptRequestParams,
        GetPromptResponse, GetPromptResult, Implementation, JsonObject, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, LoggingLevel,
        LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam, Prompt,
        PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate, Role,
        SamplingMessage, ServerCapabilities, ServerConfig, SetLevelRequestParams,
        SubscribeRequestParams, UnsubscribeRequestParams,
    },
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ErrorData, RoleServer, ServerHandler,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// `serverInfo.name` of the fixture.
pub const SERVER_NAME: &str = "mcp-conformance-fixture";

/// A 1x1 red PNG pixel (the reference server's test image).
pub const TEST_IMAGE_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// A minimal WAV file (the reference server's test audio).
pub const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";
const LOGGER: &str = "conformance-fixture";

/// How long `test_reconnection` waits, after its POST stream was cut, before
/// it answers (the client must have resumed the stream by then).
pub const RECONNECTION_DELAY: Duration = Duration::from_millis(500);

/// The `retry` hint of the fixture's priming events: how long a client waits
/// before it resumes a cut stream. Well below [`RECONNECTION_DELAY`].
pub const RESUME_RETRY: Duration = Duration::from_millis(100);

/// Largest request body the stream-cutting layer buffers (rmcp's own limit).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

/// A running fixture. Dropping it stops the server.
#[derive(Debug)]
pub struct FixtureServer {
    /// The bound address (always `127.0.0.1:<port>`).
    pub addr: SocketAddr,
    ct: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FixtureServer {
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server and waits until the serving task has finished.
    pub async fn shutdown(mut self) {
        self.ct.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

/// Starts the fixture on an ephemeral port of 127.0.0.1.
///
/// # Panics
/// If binding 127.0.0.1:0 fails.
pub async fn spawn() -> FixtureServer {
    #[allow(clippy::expect_used)]
    spawn_on(0)
        .await
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Starts the fixture on `127.0.0.1:port` (`0` picks an ephemeral port).
pub async fn spawn_on(port: u16) -> std::io::Result<FixtureServer> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await?;
    let addr = listener.local_addr()?;
    let ct = CancellationToken::new();

    // rmcp's defaults otherwise: loopback-only Host validation, no Origin
    // validation, SSE keep-alives, priming events with a retry hint.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(false)
        .with_cancellation_token(ct.child_token());
    // Clients wait the priming event's `retry` before resuming a cut stream;
    // it must be well below RECONNECTION_DELAY, because rmcp forgets a
    // request's events once it has answered (a later resume gets nothing).
    let mut session_manager = LocalSessionManager::default();
    session_manager.session_config.sse_retry = Some(RESUME_RETRY);
    let service =
        StreamableHttpService::new(|| Ok(Fixture::new()), Arc::new(session_manager), config);
    let router = axum::Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn(cut_reconnection_stream));

    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let shutdown = ct.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
            .await;
    });

    Ok(FixtureServer {
        addr,
        ct,
        task: Some(task),
    })
}

/// For a `tools/call` of `test_reconnection` answered with SSE, forwards the
/// first event (rmcp's priming event: an id, a `retry` hint, empty data) and
/// then ends the response, as a server closing the stream mid-call would
/// (SEP-1699). Every other request passes through untouched.
async fn cut_reconnection_stream(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures::StreamExt;

    if request.method() != http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let reconnection = serde_json::from_slice::<Value>(&bytes)
        .is_ok_and(|v| v["method"] == "tools/call" && v["params"]["name"] == "test_reconnection");
    let response = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        ))
        .await;
    let is_sse = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !reconnection || !is_sse {
        return response;
    }
    let (parts, body) = response.into_parts();
    // State: the body, the bytes forwarded so far, whether the first event
    // is complete.
    let first_event = futures::stream::unfold(
        (body.into_data_stream(), Vec::<u8>::new(), false),
        |(mut inner, mut seen, done)| async move {
            if done {
                return None;
            }
            let chunk = match inner.next().await? {
                Ok(chunk) => chunk,
                Err(e) => return Some((Err(e), (inner, seen, true))),
            };
            let start = seen.len();
            seen.extend_from_slice(&chunk);
            match seen.windows(2).position(|w| w == b"\n\n") {
                Some(end) => {
                    let keep = (end + 2).saturating_sub(start).min(chunk.len());
                    Some((Ok(chunk.slice(..keep)), (inner, seen, true)))
                }
                None => Some((Ok(chunk), (inner, seen, false))),
            }
        },
    );
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(first_event))
}

// ---------------------------------------------------------------------------
// Tool arguments
// ---------------------------------------------------------------------------

/// `test_sampling` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SamplingArgs {
    /// The prompt to send to the LLM
    pub prompt: String,
}

/// `test_elicitation` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ElicitationArgs {
    /// The message to show the user
    pub message: String,
}

/// The raw JSON Schema 2020-12 input schema of `json_schema_2020_12_tool`
/// (SEP-1613): `$schema`, `$defs` and `additionalProperties` must survive.
pub fn json_schema_2020_12_input() -> Arc<JsonObject> {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string"}
                }
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"}
        },
        "additionalProperties": false
    });
    match schema {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The `requestedSchema` of `test_elicitation`.
fn elicitation_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"}
        },
        "required": ["username", "email"]
    })
}

/// The `requestedSchema` of `test_elicitation_sep1034_defaults`: a default for
/// every primitive type.
fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": true}
        },
        "required": []
    })
}

/// The `requestedSchema` of `test_elicitation_sep1330_enums`: all five enum
/// variants.
fn sep1330_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}
                    ]
                }
            }
        },
        "required": []
    })
}

/// Builds form-mode `elicitation/create` params from a JSON `requestedSchema`.
fn form_elicitation(message: &str, schema: Value) -> Result<ElicitRequestParams, ErrorData> {
    let requested_schema: ElicitationSchema = serde_json::from_value(schema)
        .map_err(|e| ErrorData::internal_error(format!("elicitation schema: {e}"), None))?;
    serde_json::from_value(json!({
        "mode": "form",
        "message": message,
        "requestedSchema": requested_schema,
    }))
    .map_err(|e| ErrorData::internal_error(format!("elicitation params: {e}"), None))
}

/// Sends `elicitation/create` and renders the answer as the tool's text.
async fn elicit(
    ctx: &RequestContext<RoleServer>,
    params: ElicitRequestParams,
    prefix: &str,
) -> Result<CallToolResult, ErrorData> {
    match ctx.peer.create_elicitation(params).await {
        Ok(result) => {
            let action = serde_json::to_value(&result.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let content = result.content.unwrap_or_else(|| json!({}));
            Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "{prefix}: action={action}, content={content}"
            ))]))
        }
        Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
            "Elicitation not supported or error: {e}"
        ))])),
    }
}

/// The text of a sampling answer (`content` is one block or an array).
fn sampling_text(content: &Value) -> Option<String> {
    match content {
        Value::Array(items) => items.iter().find_map(sampling_text),
        Value::Object(map) => map.get("text").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn level_rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// `test://template/{id}/data` -> `id`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/// The conformance fixture handler (one per session).
#[derive(Debug, Clone)]
pub struct Fixture {
    tool_router: ToolRouter<Self>,
    /// Minimum level of `notifications/message` (set by `logging/setLevel`).
    log_level: Arc<Mutex<LoggingLevel>>,
    /// URIs subscribed with `resources/subscribe`.
    subscriptions: Arc<Mutex<HashSet<String>>>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// The URIs currently subscribed in this session.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .subscriptions
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    async fn log(&self, ctx: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
        let min = self
            .log_level
            .lock()
            .map(|l| *l)
            .unwrap_or(LoggingLevel::Debug);
        if level_rank(level) < level_rank(min) {
            return;
        }
        let _ = ctx
            .peer
            .notify_logging_message(
                LoggingMessageNotificationParam::new(level, Value::String(message.to_owned()))
                    .with_logger(LOGGER),
            )
            .await;
    }
}

#[tool_router]
impl Fixture {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            log_level: Arc::new(Mutex::new(LoggingLevel::Debug)),
            subscriptions: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    #[tool(description = "Tests simple text content response")]
    async fn test_simple_text(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(
            "This is a simple text response for testing.",
        )])
    }

    #[tool(description = "Tests image content response")]
    async fn test_image_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::image(TEST_IMAGE_BASE64, "image/png")])
    }

    #[tool(description = "Tests audio content response")]
    async fn test_audio_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::audio(TEST_AUDIO_BASE64, "audio/wav")])
    }

    #[tool(description = "Tests embedded resource content response")]
    async fn test_embedded_resource(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::resource(ResourceContents::text(
            "This is an embedded resource content.",
            "test://embedded-resource",
        ))])
    }

    #[tool(description = "Tests response with multiple content types (text, image, resource)")]
    async fn test_multiple_content_types(&self) -> CallToolResult {
        CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
            ContentBlock::resource(
                ResourceContents::text(
                    json!({"test": "data", "value": 123}).to_string(),
                    "test://mixed-content-resource",
                )
                .with_mime_type("application/json"),
            ),
        ])
    }

    #[tool(description = "Tests tool that emits log messages during execution")]
    async fn test_tool_with_logging(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        self.log(&ctx, LoggingLevel::Info, "Tool execution started")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log(&ctx, LoggingLevel::Info, "Tool processing data")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log(&ctx, LoggingLevel::Info, "Tool execution completed")
            .await;
        CallToolResult::success(vec![ContentBlock::text(
            "Tool with logging executed successfully",
        )])
    }

    #[tool(description = "Tests tool that reports progress notifications")]
    async fn test_tool_with_progress(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = ctx.meta.get_progress_token();
        for (i, progress) in [0u32, 50, 100].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(token) = &token {
                ctx.peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(progress))
                            .with_total(100.0)
                            .with_message(format!("Completed step {progress} of 100")),
                    )
                    .await
                    .map_err(|e| ErrorData::internal_error(format!("progress: {e}"), None))?;
            }
        }
        let text = token
            .and_then(|t| serde_json::to_value(&t).ok())
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .unwrap_or_else(|| "no progress token".to_owned());
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(description = "Tests error response handling")]
    async fn test_error_handling(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )])
    }

    #[tool(description = "Tests server-initiated sampling (LLM completion request)")]
    async fn test_sampling(
        &self,
        Parameters(args): Parameters<SamplingArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let params =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(args.prompt)], 100);
        match ctx.peer.create_message(params).await {
            Ok(result) => {
                let text = serde_json::to_value(&result.message.content)
                    .ok()
                    .as_ref()
                    .and_then(sampling_text)
                    .unwrap_or_else(|| "No response".to_owned());
                CallToolResult::success(vec![ContentBlock::text(format!("LLM response: {text}"))])
            }
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                "Sampling not supported or error: {e}"
            ))]),
        }
    }

    #[tool(description = "Tests server-initiated elicitation (user input request)")]
    async fn test_elicitation(
        &self,
        Parameters(args): Parameters<ElicitationArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = form_elicitation(&args.message, elicitation_schema())?;
        elicit(&ctx, params, "User response").await
    }

    #[tool(description = "Tests elicitation with default values per SEP-1034")]
    async fn test_elicitation_sep1034_defaults(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = form_elicitation(
            "Please review and update the form fields with defaults",
            sep1034_schema(),
        )?;
        elicit(&ctx, params, "Elicitation completed").await
    }

    #[tool(description = "Tests elicitation with enum schema improvements per SEP-1330")]
    async fn test_elicitation_sep1330_enums(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = form_elicitation(
            "Please select options from the enum fields",
            sep1330_schema(),
        )?;
        elicit(&ctx, params, "Elicitation completed").await
    }

    #[tool(
        description = "Tests SSE stream disconnection and client reconnection (SEP-1699). The server closes the stream mid-call and sends the result after the client reconnects."
    )]
    async fn test_reconnection(&self) -> CallToolResult {
        // The POST stream was cut after its priming event (see
        // `cut_reconnection_stream`); answer once the client has resumed it.
        tokio::time::sleep(RECONNECTION_DELAY).await;
        CallToolResult::success(vec![ContentBlock::text(
            "Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.",
        )])
    }

    #[tool(
        description = "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
        input_schema = json_schema_2020_12_input()
    )]
    async fn json_schema_2020_12_tool(
        &self,
        Parameters(args): Parameters<JsonObject>,
    ) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(format!(
            "JSON Schema 2020-12 tool called with: {}",
            Value::Object(args)
        ))])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Conformance fixture: implements every tool, resource and prompt the MCP conformance suite checks.",
            )
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut level) = self.log_level.lock() {
            *level = request.level;
        }
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates: &[&str] = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Prompt(p), "arg1" | "arg2") if p.name == "test_prompt_with_arguments" => {
                &["paris", "park", "party", "testValue1", "testValue2"]
            }
            (Reference::Prompt(p), "resourceUri")
                if p.name == "test_prompt_with_embedded_resource" =>
            {
                &[STATIC_TEXT_URI, STATIC_BINARY_URI, WATCHED_URI]
            }
            (Reference::Resource(_), "id") => &["1", "123", "42"],
            _ => &[],
        };
        let prefix = request.argument.value.as_str();
        let values = candidates
            .iter()
            .filter(|c| c.starts_with(prefix))
            .map(|c| (*c).to_owned())
            .collect();
        let info = CompletionInfo::with_all_values(values)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(vec![
            Prompt::new(
                "test_simple_prompt",
                Some("A simple prompt without arguments"),
                None,
            )
            .with_title("Simple Test Prompt"),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt with required arguments"),
                Some(vec![
                    PromptArgument::new("arg1")
                        .with_description("First test argument")
                        .with_required(true),
                    PromptArgument::new("arg2")
                        .with_description("Second test argument")
                        .with_required(true),
                ]),
            )
            .with_title("Prompt With Arguments"),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that includes an embedded resource"),
                Some(vec![PromptArgument::new("resourceUri")
                    .with_description("URI of the resource to embed")
                    .with_required(true)]),
            )
            .with_title("Prompt With Embedded Resource"),
            Prompt::new(
                "test_prompt_with_image",
                Some("A prompt that includes image content"),
                None,
            )
            .with_title("Prompt With Image"),
        ]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let arg = |name: &str| -> Result<String, ErrorData> {
            match args.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Ok(other.to_string()),
                None => Err(ErrorData::invalid_params(
                    format!("missing required argument {name:?}"),
                    None,
                )),
            }
        };
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let (arg1, arg2) = (arg("arg1")?, arg("arg2")?);
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = arg("resourceUri")?;
                vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(ResourceContents::text(
                            "Embedded resource content for testing.",
                            uri,
                        )),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(
                    Role::User,
                    ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
                ),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown prompt {other:?}"),
                    None,
                ))
            }
        };
        Ok(GetPromptResult::new(messages).into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new(STATIC_TEXT_URI, "static-text")
                .with_title("Static Text Resource")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new(STATIC_BINARY_URI, "static-binary")
                .with_title("Static Binary Resource")
                .with_description("A static binary resource (image) for testing")
                .with_mime_type("image/png"),
            Resource::new(WATCHED_URI, "watched-resource")
                .with_title("Watched Resource")
                .with_description("A resource clients may subscribe to")
                .with_mime_type("text/plain"),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(TEMPLATE_URI, "template")
                .with_title("Resource Template")
                .with_description("A resource template with parameter substitution")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            STATIC_TEXT_URI => {
                ResourceContents::text("This is the content of the static text resource.", uri)
            }
            STATIC_BINARY_URI => {
                ResourceContents::blob(TEST_IMAGE_BASE64, uri).with_mime_type("image/png")
            }
            WATCHED_URI => ResourceContents::text("Watched resource content", uri),
            _ => match template_id(uri) {
                Some(id) => ResourceContents::text(
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")})
                        .to_string(),
                    uri,
                )
                .with_mime_type("application/json"),
                None => {
                    return Err(ErrorData::resource_not_found(
                        format!("unknown resource {uri:?}"),
                        Some(json!({"uri": uri})),
                    ))
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.insert(request.uri);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.remove(&request.uri);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The elicitation schemas survive rmcp's typed `ElicitationSchema`
    /// unchanged (defaults, `oneOf`/`anyOf`, `enumNames`, ...).
    #[test]
    fn elicitation_schemas_round_trip() {
        for schema in [elicitation_schema(), sep1034_schema(), sep1330_schema()] {
            let params = form_elicitation("m", schema.clone()).expect("params");
            let wire = serde_json::to_value(&params).expect("serialize");
            assert_eq!(wire["requestedSchema"], schema, "{wire:#}");
            assert_eq!(wire["message"], "m");
        }
    }

    #[test]
    fn template_ids() {
        assert_eq!(template_id("test://template/123/data"), Some("123"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/1/2/data"), None);
        assert_eq!(template_id("test://static-text"), None);
    }
}
