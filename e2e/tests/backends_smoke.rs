//! Smoke test of the MCP test backends, driven by the official rmcp client.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use mcpgw_e2e::backends::{self, Kind, TestServer};
use rmcp::{
    model::{CallToolRequestParams, CallToolResult, JsonObject, ProgressNotificationParam},
    service::{NotificationContext, RunningService},
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ClientHandler, RoleClient, ServiceExt,
};
use serde_json::{json, Value};

/// A client that records every progress notification it receives.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().expect("lock").push(params);
    }
}

async fn connect(server: &TestServer) -> (Recorder, RunningService<RoleClient, Recorder>) {
    let mut headers = HashMap::new();
    headers.insert(
        http::HeaderName::from_static("x-api-key"),
        http::HeaderValue::from_static("key-123"),
    );
    let config = StreamableHttpClientTransportConfig::with_uri(server.url())
        .auth_header("secret-token")
        .custom_headers(headers);
    let transport = StreamableHttpClientTransport::from_config(config);
    let recorder = Recorder::default();
    let client = recorder.clone().serve(transport).await.expect("initialize");
    (recorder, client)
}

fn args(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("text content")
}

async fn call(
    client: &RunningService<RoleClient, Recorder>,
    name: &'static str,
    arguments: Value,
) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(name).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("call {name}: {e}"))
}

async fn check_common(kind: Kind, expected_tools: &[&str]) {
    let server = backends::spawn(kind).await;
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert!(server.url().ends_with("/mcp"));
    let (recorder, client) = connect(&server).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some(kind.name())
    );
    assert!(info.capabilities.tools.is_some());

    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = expected_tools.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);

    // echo
    let r = call(&client, "echo", json!({"text": "hi"})).await;
    assert_eq!(text(&r), format!("{}: hi", kind.name()));

    // count: the rmcp client attaches its own `_meta.progressToken` to every
    // request (overriding any token set by the caller).
    let r = call(&client, "count", json!({"n": 3, "delay_ms": 10})).await;
    assert_eq!(text(&r), "counted to 3");
    // Notifications may be dispatched slightly after the response.
    for _ in 0..50 {
        if recorder.progress.lock().expect("lock").len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let progress = recorder.progress.lock().expect("lock");
        assert_eq!(progress.len(), 3, "progress: {progress:?}");
        let token = progress[0].progress_token.clone();
        for (i, p) in progress.iter().enumerate() {
            let step = (i + 1) as f64;
            assert_eq!(p.progress_token, token);
            assert_eq!(p.progress, step);
            assert_eq!(p.total, Some(3.0));
            assert_eq!(
                p.message.as_deref(),
                Some(format!("step {}", i + 1).as_str())
            );
        }
    }

    // whoami shows the headers the backend received
    let r = call(&client, "whoami", json!({})).await;
    let who: Value = serde_json::from_str(&text(&r)).expect("whoami is JSON");
    eprintln!("{kind}: negotiated {}, whoami {who}", info.protocol_version);
    assert_eq!(who["authorization"], "Bearer secret-token");
    assert_eq!(who["x-api-key"], "key-123");
    assert_eq!(who["host"], format!("127.0.0.1:{}", server.port()));
    assert!(who["mcp-protocol-version"].is_string(), "{who}");

    match kind {
        Kind::Alpha => {
            let r = call(&client, "add", json!({"a": 2, "b": 3.5})).await;
            assert_eq!(text(&r), "5.5");
            assert_eq!(r.structured_content, Some(json!({"sum": 5.5})));
            let r = call(&client, "admin_reset", json!({})).await;
            assert_eq!(text(&r), "reset");
            let r = call(&client, "sleep", json!({"ms": 10})).await;
            assert_eq!(text(&r), "slept");
        }
        Kind::Beta => {
            let r = call(&client, "multiply", json!({"a": 6, "b": 7})).await;
            assert_eq!(text(&r), "42");
        }
        // Driven through the gateway by tests/modern.rs (rmcp's client
        // here speaks the handshake era).
        Kind::Modern => {}
    }

    client.cancel().await.expect("close client");
    server.shutdown().await;
}

#[tokio::test]
async fn alpha_smoke() {
    check_common(
        Kind::Alpha,
        &[
            "echo",
            "add",
            "count",
            "admin_reset",
            "whoami",
            "sleep",
            "announce",
            "roots",
        ],
    )
    .await;
}

#[tokio::test]
async fn beta_smoke() {
    check_common(
        Kind::Beta,
        &["echo", "multiply", "count", "whoami", "confirm"],
    )
    .await;
}

#[tokio::test]
async fn alpha_sleep_is_cancellable() {
    let server = backends::spawn(Kind::Alpha).await;
    let (_recorder, client) = connect(&server).await;
    let handle = client
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(
                CallToolRequestParams::new("sleep").with_arguments(args(json!({"ms": 30_000}))),
            )),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .expect("send sleep");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    handle.cancel(None).await.expect("cancel");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The session keeps working after the cancellation.
    let r = call(&client, "echo", json!({"text": "still here"})).await;
    assert_eq!(text(&r), "alpha: still here");
    client.cancel().await.expect("close client");
}

#[tokio::test]
async fn spawn_on_fixed_port_and_restart() {
    let probe = backends::spawn(Kind::Beta).await;
    let port = probe.port();
    probe.shutdown().await;
    let server = backends::spawn_on(Kind::Beta, port)
        .await
        .expect("rebind freed port");
    assert_eq!(server.port(), port);
    let (_recorder, client) = connect(&server).await;
    let r = call(&client, "echo", json!({"text": "x"})).await;
    assert_eq!(text(&r), "beta: x");
    client.cancel().await.expect("close client");
}
