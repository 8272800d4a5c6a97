//! What operators see: a known sequence of calls through the real Envoy, then
//! the exact counters and labels on `/stats/prometheus`, an access-log line's
//! MCP fields, and trace headers reaching the backends.

use mcpgw_e2e::client::{Raw, ACCEPT_BOTH};
use mcpgw_e2e::envoy::Engine;
use mcpgw_e2e::faulty::{mcpgw_stats, normalize_series};
use mcpgw_e2e::stack::Stack;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

mcpgw_e2e::per_engine!(metrics_access_logs_and_traces,);

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    let key = normalize_series(key);
    *m.get(&key).unwrap_or_else(|| {
        panic!(
            "no series {key}; have:\n{:#?}",
            m.keys().collect::<Vec<_>>()
        )
    })
}

async fn metrics_access_logs_and_traces(engine: Engine) {
    let stack = Stack::two_backends(engine).await;
    let raw = Raw::new(&stack.url());
    let sid = raw.session().await;
    let call = |name: &str, id: u64| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"text":"x"}}});
    for i in 0..3 {
        assert_eq!(
            raw.post(Some(&sid), &call("alpha__echo", i)).await.status,
            200
        );
    }
    raw.post(Some(&sid), &call("beta__echo", 10)).await;
    raw.post(Some(&sid), &call("alpha__admin_reset", 11)).await; // hidden
    raw.post(
        Some(&sid),
        &json!({"jsonrpc":"2.0","id":12,"method":"tools/list"}),
    )
    .await;
    raw.post(
        Some("not-a-session"),
        &json!({"jsonrpc":"2.0","id":13,"method":"ping"}),
    )
    .await;
    raw.send(
        reqwest::Method::POST,
        &[
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
        ],
        Some("{nope".into()),
    )
    .await;
    // A traced call: W3C context from the client reaches the backend (routed) ...
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = raw
        .send(
            reqwest::Method::POST,
            &[
                ("content-type", "application/json"),
                ("accept", ACCEPT_BOTH),
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "2025-11-25"),
                ("traceparent", traceparent),
                ("tracestate", "vendor=1"),
                ("baggage", "tenant=acme"),
            ],
            Some(call("alpha__whoami", 20).to_string()),
        )
        .await;
    let who: Value = serde_json::from_str(
        traced.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("{}"),
    )
    .expect("whoami");
    assert_eq!(who["traceparent"], traceparent, "{who}");
    assert_eq!(who["baggage"], "tenant=acme");
    let del = raw
        .send(
            reqwest::Method::DELETE,
            &[
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            None,
        )
        .await;
    assert_eq!(del.status, 204);

    // Stats are flushed to the admin view periodically; wait for the last request.
    let mut m = HashMap::new();
    for _ in 0..50 {
        m = mcpgw_stats(&stack.envoy);
        if m.get("mcpgw_sessions_deleted_total{}")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(
            &m,
            "mcpgw_tool_calls_total{backend=\"alpha\",tool=\"alpha__echo\",outcome=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        get(
            &m,
            "mcpgw_tool_calls_total{backend=\"beta\",tool=\"beta__echo\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "mcpgw_requests_total{method=\"tools/call\",outcome=\"ok\"}"
        ),
        5.0
    );
    assert_eq!(
        get(
            &m,
            "mcpgw_requests_total{method=\"tools/call\",outcome=\"error\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "mcpgw_requests_total{method=\"initialize\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "mcpgw_requests_total{method=\"tools/list\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "mcpgw_requests_total{method=\"notifications/initialized\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(get(&m, "mcpgw_errors_total{kind=\"unknown_tool\"}"), 1.0);
    assert_eq!(get(&m, "mcpgw_errors_total{kind=\"unknown_session\"}"), 1.0);
    assert_eq!(get(&m, "mcpgw_errors_total{kind=\"invalid_jsonrpc\"}"), 1.0);
    assert_eq!(get(&m, "mcpgw_sessions_created_total{}"), 1.0);
    assert_eq!(get(&m, "mcpgw_sessions_deleted_total{}"), 1.0);
    // Histograms reach the admin view at the next stats flush (1 s in the tests).
    let mut text = String::new();
    for _ in 0..50 {
        // The module's series carry Envoy's prefix for module metrics.
        text = stack
            .envoy
            .admin_get("/stats/prometheus")
            .expect("stats")
            .replace(mcpgw_module::names::PROMETHEUS_PREFIX, "");
        if text.contains("mcpgw_fanout_duration_ms_count{method=\"initialize\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        text.contains("mcpgw_fanout_duration_ms_bucket{method=\"tools/list\",le=")
            && text.contains("mcpgw_fanout_duration_ms_count{method=\"initialize\"} 1"),
        "fan-out latency histograms:\n{}",
        text.lines()
            .filter(|l| l.starts_with("mcpgw_fanout"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // One JSON line per request, with the MCP fields.
    let log_path = stack.envoy.dir.path().join("access.log");
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.iter().any(|l| l["method"] == "DELETE") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let traced_line = lines
        .iter()
        .find(|l| l["jsonrpc_id"] == "20")
        .unwrap_or_else(|| panic!("no line for id 20: {lines:#?}"));
    assert_eq!(traced_line["mcp_method"], "tools/call");
    assert_eq!(traced_line["mcp_tool"], "alpha__whoami");
    assert_eq!(traced_line["mcp_backend"], "alpha");
    assert_eq!(traced_line["upstream_cluster"], "alpha");
    assert_eq!(traced_line["status"], 200);
    assert_eq!(traced_line["traceparent"], traceparent);
    assert_eq!(
        traced_line["mcp_session"].as_str().map(str::len),
        Some(16),
        "a session tag, not the id"
    );
    let hidden = lines
        .iter()
        .find(|l| l["jsonrpc_id"] == "11")
        .expect("line for id 11");
    assert_eq!(hidden["mcp_error"], "unknown_tool");
    assert_eq!(hidden["mcp_tool"], "alpha__admin_reset");
    stack.assert_vm_healthy();
}
