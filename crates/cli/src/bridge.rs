//! stdio servers behind the gateway: each server gets a Streamable HTTP
//! endpoint on 127.0.0.1 (rmcp's streamable-HTTP server) that forwards every
//! message to a child process speaking MCP on stdin/stdout (rmcp's
//! child-process transport), and the child's own messages back.
//!
//! One child per HTTP session. The gateway opens one session with this
//! endpoint per client session (at `initialize`), so each client gets its own
//! process, as it would running the server itself: no state (roots, log
//! level, subscriptions, in-memory data) leaks between clients, and a
//! server->client request (sampling, elicitation, roots/list) can only belong
//! to the one client of that process. The cost is a process per session; idle
//! sessions end after `idle` (then the gateway's next call gets 404 and the
//! client re-initializes), a DELETE ends one at once.
//!
//! A child that exits is restarted with backoff (250 ms doubling to 30 s,
//! reset after 30 s of uptime) and re-initialized with the client's original
//! `initialize` parameters, so the session survives (the server's in-memory
//! state does not). Its stderr goes to mcpgw's log, prefixed with the server name.

use crate::model::StdioCommand;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelledNotificationParam,
    ClientConfig as ClientInfo, ClientNotification, ClientRequest, ClientResult,
    CompleteRequestParams, CompleteResult, CustomNotification, CustomRequest, CustomResult,
    ErrorData, GetMeta, GetPromptRequestParams, GetPromptResponse, InitializeRequestParams,
    InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotification, ProgressNotificationParam,
    ReadResourceRequestParams, ReadResourceResponse, RequestId, RootsListChangedNotification,
    ServerConfig, ServerNotification, ServerRequest, ServerResult, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::{
    NotificationContext, OriginatingRequestId, Peer, PeerRequestOptions, RequestContext,
    RunningService, Service, ServiceExt,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::TokioChildProcess;
use rmcp::ServerHandler;
use rmcp::{RoleClient, RoleServer};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

/// A running bridge.
pub struct Bridge {
    pub port: u16,
    ct: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Bridge {
    pub async fn stop(self) {
        self.ct.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn log(name: &str, msg: impl std::fmt::Display) {
    eprintln!("mcpgw: [{name}] {msg}");
}

/// Serve `cmd` on `127.0.0.1:<ephemeral>`.
pub async fn start(
    name: &str,
    cmd: StdioCommand,
    idle: Duration,
    parent: &CancellationToken,
) -> std::io::Result<Bridge> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let port = listener.local_addr()?.port();
    let ct = parent.child_token();
    let shared = Arc::new(Shared {
        name: name.to_string(),
        cmd,
        ct: ct.clone(),
    });
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(idle);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(false)
        .with_cancellation_token(ct.child_token());
    let factory_shared = shared.clone();
    let service = StreamableHttpService::new(
        move || Ok(Session::new(factory_shared.clone())),
        Arc::new(sessions),
        config,
    );
    let router = axum::Router::new().route_service("/mcp", service);
    let shutdown = ct.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
            .await;
    });
    Ok(Bridge { port, ct, task })
}

struct Shared {
    name: String,
    cmd: StdioCommand,
    /// Cancelled when the gateway stops: every session's child is stopped.
    ct: CancellationToken,
}

type Child = RunningService<RoleClient, ChildSide>;

/// The HTTP side of one session.
struct Session {
    shared: Arc<Shared>,
    link: Arc<Link>,
    child: Arc<tokio::sync::RwLock<Option<Child>>>,
    /// The child's initialize result (capabilities) once known.
    server_info: OnceLock<InitializeResult>,
    /// Cancelled when this session ends (dropped) or the gateway stops.
    ct: CancellationToken,
}

/// What the child side needs to reach back to the HTTP side.
#[derive(Default)]
struct Link {
    http_peer: OnceLock<Peer<RoleServer>>,
    client_info: OnceLock<ClientInfo>,
    /// HTTP-side ids of requests being served, newest last: a server->client
    /// request from the child rides the stream of the newest one.
    in_flight: Mutex<Vec<RequestId>>,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Session {
        let ct = shared.ct.child_token();
        Session {
            shared,
            link: Arc::new(Link::default()),
            child: Arc::new(tokio::sync::RwLock::new(None)),
            server_info: OnceLock::new(),
            ct,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

/// Start the child and run the MCP handshake with the client's parameters.
async fn spawn_child(shared: &Shared, link: &Arc<Link>, info: ClientInfo) -> Result<Child, String> {
    let mut cmd = tokio::process::Command::new(&shared.cmd.command);
    cmd.args(&shared.cmd.args)
        .envs(&shared.cmd.env)
        .kill_on_drop(true);
    if let Some(cwd) = &shared.cmd.cwd {
        cmd.current_dir(cwd);
    }
    #[cfg(unix)]
    cmd.process_group(0);
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start `{}`: {e} (check \"command\" and \"cwd\" in the servers file)",
                shared.cmd.command
            )
        })?;
    if let Some(stderr) = stderr {
        let name = shared.name.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log(&name, line);
            }
        });
    }
    let side = ChildSide {
        link: link.clone(),
        info,
    };
    tokio::time::timeout(Duration::from_secs(60), side.serve(transport))
        .await
        .map_err(|_| "did not answer initialize within 60s".to_string())?
        .map_err(|e| format!("initialize failed: {e}"))
}

/// Restart the child with backoff whenever it exits, until the session ends.
async fn supervise(
    shared: Arc<Shared>,
    link: Arc<Link>,
    child: Arc<tokio::sync::RwLock<Option<Child>>>,
    ct: CancellationToken,
) {
    let mut failures: u32 = 0;
    let mut started = Instant::now();
    loop {
        tokio::select! {
            _ = ct.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let closed = child
            .read()
            .await
            .as_ref()
            .is_none_or(|c| c.is_transport_closed() || c.is_closed());
        if !closed {
            continue;
        }
        if started.elapsed() > Duration::from_secs(30) {
            failures = 0;
        }
        let delay = Duration::from_millis(250u64.saturating_mul(1u64 << failures.min(7)))
            .min(Duration::from_secs(30));
        failures = failures.saturating_add(1);
        log(
            &shared.name,
            format!(
                "the server process exited; restarting in {} ms",
                delay.as_millis()
            ),
        );
        tokio::select! {
            _ = ct.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        let Some(info) = link.client_info.get().cloned() else {
            break;
        };
        started = Instant::now();
        match spawn_child(&shared, &link, info).await {
            Ok(c) => {
                log(&shared.name, "restarted and re-initialized");
                *child.write().await = Some(c);
            }
            Err(e) => log(&shared.name, format!("restart failed: {e}")),
        }
    }
    // Session over: stop the child (dropping it kills the process).
    if let Some(c) = child.write().await.take() {
        let _ = tokio::time::timeout(Duration::from_secs(3), c.cancel()).await;
    }
}

fn internal(msg: String) -> ErrorData {
    ErrorData::internal_error(msg, None)
}

impl Session {
    /// Forward one request to the child and return its answer.
    async fn forward(
        &self,
        mut request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let name = &self.shared.name;
        let peer = {
            let guard = self.child.read().await;
            match guard.as_ref() {
                Some(c) if !c.is_transport_closed() => c.peer().clone(),
                Some(_) => {
                    return Err(internal(format!(
                        "stdio server {name} exited and is restarting; retry shortly"
                    )))
                }
                None => {
                    return Err(ErrorData::invalid_request(
                        "the session is not initialized".to_string(),
                        None,
                    ))
                }
            }
        };
        // The progress token and other _meta travel with the request.
        *request.get_meta_mut() = context.meta.clone();
        let http_id = context.id.clone();
        if let Ok(mut f) = self.link.in_flight.lock() {
            f.push(http_id.clone());
        }
        let handle = peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await;
        let result = match handle {
            Err(e) => Err(internal(format!("stdio server {name}: {e}"))),
            Ok(handle) => {
                let child_id = handle.id.clone();
                tokio::select! {
                    r = handle.await_response() => r.map_err(|e| match e {
                        rmcp::ServiceError::McpError(err) => err,
                        other => internal(format!("stdio server {name}: {other}")),
                    }),
                    _ = context.ct.cancelled() => {
                        let _ = peer
                            .notify_cancelled(CancelledNotificationParam::new(
                                Some(child_id),
                                Some("cancelled by the client".into()),
                            ))
                            .await;
                        Err(internal("cancelled".into()))
                    }
                }
            }
        };
        if let Ok(mut f) = self.link.in_flight.lock() {
            f.retain(|id| *id != http_id);
        }
        result
    }

    /// Build the request from its method and params, forward it, and read
    /// the answer as `T` (rmcp's typed handler methods, generically).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: Option<serde_json::Value>,
        context: RequestContext<RoleServer>,
    ) -> Result<T, ErrorData> {
        let result = self.call_raw(method, params, context).await?;
        convert(method, &result)
    }

    async fn call_raw(
        &self,
        method: &str,
        params: Option<serde_json::Value>,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let mut msg = serde_json::Map::new();
        msg.insert("method".into(), serde_json::Value::String(method.into()));
        if let Some(p) = params {
            msg.insert("params".into(), p);
        }
        let request: ClientRequest = serde_json::from_value(serde_json::Value::Object(msg))
            .map_err(|e| internal(format!("bridge: cannot forward {method}: {e}")))?;
        self.forward(request, context).await
    }

    async fn notify(&self, notification: ClientNotification) {
        let peer = self.child.read().await.as_ref().map(|c| c.peer().clone());
        if let Some(peer) = peer {
            let _ = peer.send_notification(notification).await;
        }
    }
}

fn convert<T: serde::de::DeserializeOwned>(
    method: &str,
    result: &ServerResult,
) -> Result<T, ErrorData> {
    let v = serde_json::to_value(result).map_err(|e| internal(e.to_string()))?;
    serde_json::from_value(v)
        .map_err(|e| internal(format!("bridge: unexpected answer to {method}: {e}")))
}

fn params<T: serde::Serialize>(p: &T) -> Option<serde_json::Value> {
    serde_json::to_value(p).ok().filter(|v| !v.is_null())
}

/// Results that are `{}` on the wire.
#[derive(serde::Deserialize)]
struct Empty {}

impl ServerHandler for Session {
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let name = &self.shared.name;
        context.peer.set_peer_info(request.clone());
        let _ = self.link.http_peer.set(context.peer.clone());
        let _ = self.link.client_info.set(request.clone());
        let child = spawn_child(&self.shared, &self.link, request)
            .await
            .map_err(|e| internal(format!("stdio server {name}: {e}")))?;
        let info = child
            .peer_info()
            .ok_or_else(|| internal(format!("stdio server {name}: no initialize result")))?;
        let v = serde_json::to_value(&*info).map_err(|e| internal(e.to_string()))?;
        let result: InitializeResult = serde_json::from_value(v)
            .map_err(|e| internal(format!("stdio server {name}: initialize result: {e}")))?;
        let _ = self.server_info.set(result.clone());
        *self.child.write().await = Some(child);
        tokio::spawn(supervise(
            self.shared.clone(),
            self.link.clone(),
            self.child.clone(),
            self.ct.clone(),
        ));
        Ok(result)
    }

    async fn complete(
        &self,
        p: CompleteRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.call("completion/complete", params(&p), c).await
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        p: rmcp::model::SetLevelRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.call::<Empty>("logging/setLevel", params(&p), c)
            .await
            .map(|_| ())
    }

    async fn get_prompt(
        &self,
        p: GetPromptRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        match self.call_raw("prompts/get", params(&p), c).await? {
            ServerResult::InputRequiredResult(i) => Ok(GetPromptResponse::InputRequired(i)),
            other => convert("prompts/get", &other).map(GetPromptResponse::Complete),
        }
    }

    async fn list_prompts(
        &self,
        p: Option<PaginatedRequestParams>,
        c: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.call("prompts/list", p.as_ref().and_then(params), c)
            .await
    }

    async fn list_resources(
        &self,
        p: Option<PaginatedRequestParams>,
        c: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.call("resources/list", p.as_ref().and_then(params), c)
            .await
    }

    async fn list_resource_templates(
        &self,
        p: Option<PaginatedRequestParams>,
        c: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.call("resources/templates/list", p.as_ref().and_then(params), c)
            .await
    }

    async fn read_resource(
        &self,
        p: ReadResourceRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        match self.call_raw("resources/read", params(&p), c).await? {
            ServerResult::InputRequiredResult(i) => Ok(ReadResourceResponse::InputRequired(i)),
            other => convert("resources/read", &other).map(ReadResourceResponse::Complete),
        }
    }

    async fn subscribe(
        &self,
        p: SubscribeRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.call::<Empty>("resources/subscribe", params(&p), c)
            .await
            .map(|_| ())
    }

    async fn unsubscribe(
        &self,
        p: UnsubscribeRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.call::<Empty>("resources/unsubscribe", params(&p), c)
            .await
            .map(|_| ())
    }

    async fn call_tool(
        &self,
        p: CallToolRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.call_raw("tools/call", params(&p), c).await? {
            ServerResult::InputRequiredResult(i) => Ok(CallToolResponse::InputRequired(i)),
            ServerResult::CreateTaskResult(t) => Ok(CallToolResponse::Task(t)),
            other => convert("tools/call", &other).map(CallToolResponse::Complete),
        }
    }

    async fn list_tools(
        &self,
        p: Option<PaginatedRequestParams>,
        c: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.call("tools/list", p.as_ref().and_then(params), c)
            .await
    }

    async fn on_custom_request(
        &self,
        r: CustomRequest,
        c: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let result = self.forward(ClientRequest::CustomRequest(r), c).await?;
        let v = serde_json::to_value(&result).map_err(|e| internal(e.to_string()))?;
        Ok(CustomResult::new(v))
    }

    async fn on_progress(&self, n: ProgressNotificationParam, _c: NotificationContext<RoleServer>) {
        self.notify(ClientNotification::ProgressNotification(
            ProgressNotification::new(n),
        ))
        .await;
    }

    async fn on_roots_list_changed(&self, _c: NotificationContext<RoleServer>) {
        self.notify(ClientNotification::RootsListChangedNotification(
            RootsListChangedNotification::default(),
        ))
        .await;
    }

    async fn on_custom_notification(
        &self,
        n: CustomNotification,
        _c: NotificationContext<RoleServer>,
    ) {
        self.notify(ClientNotification::CustomNotification(n)).await;
    }

    fn get_info(&self) -> ServerConfig {
        match self.server_info.get() {
            Some(r) => serde_json::to_value(r)
                .ok()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            None => ServerConfig::default(),
        }
    }
}

/// The child side: the child's requests and notifications go to the client.
struct ChildSide {
    link: Arc<Link>,
    info: ClientInfo,
}

impl Service<RoleClient> for ChildSide {
    async fn handle_request(
        &self,
        request: ServerRequest,
        _context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let Some(peer) = self.link.http_peer.get().cloned() else {
            return Err(internal("no client connected".into()));
        };
        let mut request = request;
        let newest = self
            .link
            .in_flight
            .lock()
            .ok()
            .and_then(|f| f.last().cloned());
        if let Some(id) = newest {
            use rmcp::model::GetExtensions;
            request.extensions_mut().insert(OriginatingRequestId(id));
        }
        peer.send_request(request).await.map_err(|e| match e {
            rmcp::ServiceError::McpError(err) => err,
            other => internal(format!("client: {other}")),
        })
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        if let Some(peer) = self.link.http_peer.get().cloned() {
            let _ = peer.send_notification(notification).await;
        }
        Ok(())
    }

    fn get_info(&self) -> ClientInfo {
        self.info.clone()
    }
}
