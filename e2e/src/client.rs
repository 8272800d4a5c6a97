//! Clients for the end-to-end tests: the official rmcp client with a handler
//! that records what the server sends, and a raw HTTP client for checking the
//! wire itself (status codes, headers, exact bodies).

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records progress notifications, with the time they arrived.
#[derive(Clone, Default)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<(Instant, ProgressNotificationParam)>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut p) = self.progress.lock() {
            p.push((Instant::now(), params));
        }
    }
}

pub type Client = RunningService<RoleClient, Recorder>;

/// Connect with the rmcp client (initialize + initialized), with extra headers.
pub async fn connect(url: &str, headers: &[(&'static str, &'static str)]) -> (Recorder, Client) {
    let mut h = HashMap::new();
    for (k, v) in headers {
        h.insert(
            http::HeaderName::from_static(k),
            http::HeaderValue::from_static(v),
        );
    }
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).custom_headers(h);
    let transport = StreamableHttpClientTransport::from_config(config);
    let recorder = Recorder::default();
    let client = tokio::time::timeout(Duration::from_secs(20), recorder.clone().serve(transport))
        .await
        .expect("initialize timed out")
        .expect("initialize");
    (recorder, client)
}

pub fn args(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub async fn call(
    client: &Client,
    name: &str,
    arguments: Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    tokio::time::timeout(
        Duration::from_secs(20),
        client.call_tool(
            CallToolRequestParams::new(name.to_string()).with_arguments(args(arguments)),
        ),
    )
    .await
    .expect("tools/call timed out")
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("text content")
}

/// An HTTP answer as seen on the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC messages in the body (JSON, or the `data` of SSE events).
    pub fn messages(&self) -> Vec<Value> {
        let ct = self.header("content-type").unwrap_or("");
        if ct.starts_with("text/event-stream") {
            let mut out = Vec::new();
            for event in self.body.replace("\r\n", "\n").split("\n\n") {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() || data.iter().all(|d| d.is_empty()) {
                    continue;
                }
                if let Ok(v) = serde_json::from_str(&data.join("\n")) {
                    out.push(v);
                }
            }
            out
        } else {
            serde_json::from_str(&self.body)
                .map(|v| vec![v])
                .unwrap_or_default()
        }
    }

    /// The last JSON-RPC message (the response, for a request).
    pub fn json(&self) -> Value {
        self.messages().pop().unwrap_or(Value::Null)
    }
}

/// A raw Streamable HTTP client.
pub struct Raw {
    pub url: String,
    http: reqwest::Client,
}

pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

impl Raw {
    pub fn new(url: &str) -> Raw {
        Raw {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let mut req = self.http.request(method, &self.url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// POST a JSON-RPC message with the standard MCP headers.
    pub async fn post(&self, session: Option<&str>, body: &Value) -> Answer {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
        ];
        if let Some(s) = session {
            headers.push(("mcp-session-id", s));
            headers.push(("mcp-protocol-version", "2025-11-25"));
        }
        self.send(reqwest::Method::POST, &headers, Some(body.to_string()))
            .await
    }

    /// initialize + notifications/initialized; returns the session id.
    pub async fn session(&self) -> String {
        let a = self
            .post(
                None,
                &serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                    "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}),
            )
            .await;
        assert_eq!(a.status, 200, "initialize: {}", a.body);
        let sid = a.header("mcp-session-id").expect("session id").to_string();
        let n = self
            .post(
                Some(&sid),
                &serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            )
            .await;
        assert_eq!(n.status, 202, "initialized: {}", n.body);
        sid
    }
}
