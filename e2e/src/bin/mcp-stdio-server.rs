//! `mcp-stdio-server`: a small MCP server on stdin/stdout (rmcp's stdio
//! transport), the stdio backend of the `mcpgw run` end-to-end tests.
//!
//! Tools: `echo` (`stdio: <text>`), `pid` (this process's id, so tests can
//! tell sessions' processes apart), `env` (the value of an environment
//! variable), `count` (progress notifications, then a result), `sample`
//! (asks the client's LLM: sampling), `roots` (asks the client's roots) and
//! `exit` (the process exits, to test restarts). It logs one line to stderr
//! at start.

// Sampling and roots are deprecated as of 2026-07-28 (SEP-2577); this server
// speaks the handshake era, where they are how a server asks its client.
#![allow(deprecated)]

use mcpgw_e2e::backends::{CountArgs, EchoArgs};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, Implementation,
    ProgressNotificationParam, SamplingMessage, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
struct EnvArgs {
    /// Variable name.
    name: String,
}

#[derive(Clone)]
struct Stdio {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Stdio {
    #[tool(description = "Echo the text back, prefixed with 'stdio: '")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        format!("stdio: {}", args.text)
    }

    #[tool(description = "The server process id")]
    async fn pid(&self) -> String {
        std::process::id().to_string()
    }

    #[tool(description = "The value of an environment variable of the server process")]
    async fn env(&self, Parameters(args): Parameters<EnvArgs>) -> String {
        std::env::var(&args.name).unwrap_or_default()
    }

    #[tool(description = "Count to n with a progress notification per step")]
    async fn count(
        &self,
        Parameters(args): Parameters<CountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = ctx.meta.get_progress_token();
        for i in 1..=args.n.min(20) {
            if let Some(token) = &token {
                let _ = ctx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(i))
                            .with_total(f64::from(args.n)),
                    )
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(args.delay_ms)).await;
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "counted to {}",
            args.n
        ))]))
    }

    #[tool(description = "Ask the client's LLM (sampling) and return its answer")]
    async fn sample(
        &self,
        Parameters(args): Parameters<EchoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let params =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(args.text)], 20);
        let result = ctx
            .peer
            .create_message(params)
            .await
            .map_err(|e| ErrorData::internal_error(format!("sampling failed: {e}"), None))?;
        let content = serde_json::to_value(&result.message.content).unwrap_or_default();
        Ok(content
            .get("text")
            .or_else(|| content.get(0).and_then(|c| c.get("text")))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    #[tool(description = "The client's roots, one URI a line")]
    async fn roots(&self, ctx: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        let r = ctx
            .peer
            .list_roots()
            .await
            .map_err(|e| ErrorData::internal_error(format!("roots/list failed: {e}"), None))?;
        Ok(r.roots
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>()
            .join("\n"))
    }

    #[tool(description = "Exit the server process (tests restarts)")]
    async fn exit(&self) -> String {
        tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            std::process::exit(3);
        });
        "exiting".to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Stdio {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("stdio-test", env!("CARGO_PKG_VERSION")))
    }
}

#[tokio::main]
async fn main() {
    eprintln!("mcp-stdio-server {} starting", std::process::id());
    let server = Stdio {
        tool_router: Stdio::tool_router(),
    };
    match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            let _ = running.waiting().await;
        }
        Err(e) => eprintln!("mcp-stdio-server: {e}"),
    }
}
