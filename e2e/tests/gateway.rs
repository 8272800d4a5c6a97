//! mcpgw in a real Envoy 1.40 in front of two rmcp backends, driven by the
//! official rmcp client, a raw HTTP client and the official Python SDK.

use mcpgw_e2e::backends::{self, Kind};
use mcpgw_e2e::client::{self, call, connect, text, Raw};
use mcpgw_e2e::envoy::{render, Cluster, Engine, Envoy};
use mcpgw_e2e::stack::{Stack, SESSION_KEY};
use serde_json::{json, Value};
use std::time::Duration;

mcpgw_e2e::per_engine!(
    rmcp_client_through_the_gateway,
    delete_ends_the_session,
    the_gateway_enforces_the_transport_rules,
    python_sdk_client_through_the_gateway,
    routes_rewrite_path_and_host_in_a_named_virtual_host,
);

async fn rmcp_client_through_the_gateway(engine: Engine) {
    let stack = Stack::two_backends(engine).await;
    let (recorder, client) =
        connect(&stack.url(), &[("authorization", "Bearer client-token")]).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("mcpgw")
    );
    assert!(info.capabilities.tools.is_some());
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(instructions.contains("## alpha"), "{instructions}");

    // Prefixed, filtered, every field kept.
    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "alpha__add",
            "alpha__announce",
            "alpha__count",
            "alpha__echo",
            "alpha__roots",
            "alpha__sleep",
            "alpha__whoami",
            "beta__count",
            "beta__echo",
            "beta__whoami"
        ]
    );
    let echo = tools
        .iter()
        .find(|t| t.name == "alpha__echo")
        .expect("alpha__echo");
    assert_eq!(echo.title.as_deref(), Some("Echo"));
    assert_eq!(
        echo.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );
    let add = tools
        .iter()
        .find(|t| t.name == "alpha__add")
        .expect("alpha__add");
    assert!(add.output_schema.is_some(), "outputSchema kept");

    assert_eq!(
        text(
            &call(&client, "alpha__echo", json!({"text": "hi"}))
                .await
                .expect("call")
        ),
        "alpha: hi"
    );
    assert_eq!(
        text(
            &call(&client, "beta__echo", json!({"text": "hi"}))
                .await
                .expect("call")
        ),
        "beta: hi"
    );
    let sum = call(&client, "alpha__add", json!({"a": 2, "b": 3.5}))
        .await
        .expect("add");
    assert_eq!(sum.structured_content, Some(json!({"sum": 5.5})));

    // Credentials come from the backend's config (env-expanded), never from the client.
    let who: Value = serde_json::from_str(&text(
        &call(&client, "alpha__whoami", json!({}))
            .await
            .expect("whoami"),
    ))
    .expect("json");
    assert_eq!(who["authorization"], "Bearer alpha-secret");
    assert_eq!(who["host"], format!("127.0.0.1:{}", stack.alpha.port()));
    let who: Value = serde_json::from_str(&text(
        &call(&client, "beta__whoami", json!({}))
            .await
            .expect("whoami"),
    ))
    .expect("json");
    assert_eq!(
        who["authorization"],
        Value::Null,
        "client token not passed through"
    );
    assert_eq!(who["x-api-key"], "key-beta");

    // Progress notifications stream through before the result, on both backends.
    for (tool, expect) in [
        ("alpha__count", "counted to 4"),
        ("beta__count", "counted to 4"),
    ] {
        recorder.progress.lock().expect("lock").clear();
        let before = std::time::Instant::now();
        let r = call(&client, tool, json!({"n": 4, "delay_ms": 100}))
            .await
            .expect("count");
        let done = std::time::Instant::now();
        assert_eq!(text(&r), expect);
        // The client hands notifications to its handler asynchronously; give the last one a moment.
        for _ in 0..50 {
            if recorder.progress.lock().expect("lock").len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let progress = recorder.progress.lock().expect("lock").clone();
        assert_eq!(progress.len(), 4, "{tool}: {progress:?}");
        // The first notification arrived well before the whole call finished (incremental stream).
        assert!(
            progress[0].0 < done - Duration::from_millis(150),
            "{tool}: progress was buffered"
        );
        assert!(progress[0].0 > before);
    }

    // A hidden tool cannot be called, and says so like an unknown tool.
    for hidden in ["alpha__admin_reset", "beta__multiply", "gamma__echo"] {
        let err = call(&client, hidden, json!({}))
            .await
            .expect_err("hidden tool must fail");
        let msg = err.to_string();
        assert!(msg.contains("Unknown tool"), "{hidden}: {msg}");
    }
    client.cancel().await.expect("close");
    stack.assert_vm_healthy();
}

async fn delete_ends_the_session(engine: Engine) {
    let stack = Stack::two_backends(engine).await;
    let raw = Raw::new(&stack.url());
    let sid = raw.session().await;
    let list = raw
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json()["result"]["tools"].as_array().map(Vec::len),
        Some(10)
    );

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
    // The old id is refused, on any worker, for every kind of request.
    for _ in 0..4 {
        let after = raw
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
            )
            .await;
        assert_eq!(after.status, 404, "{}", after.body);
        let call = raw
            .post(Some(&sid), &json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"x"}}}))
            .await;
        assert_eq!(call.status, 404);
    }
    // A tampered id is unknown.
    let mut forged = sid.clone().into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let a = raw
        .post(
            Some(&forged),
            &json!({"jsonrpc":"2.0","id":4,"method":"ping"}),
        )
        .await;
    assert_eq!(a.status, 404);
    stack.assert_vm_healthy();
}

async fn the_gateway_enforces_the_transport_rules(engine: Engine) {
    let stack = Stack::two_backends(engine).await;
    let raw = Raw::new(&stack.url());
    let sid = raw.session().await;
    let post = |headers: Vec<(&'static str, String)>, body: &'static str| {
        let raw = &raw;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw.send(reqwest::Method::POST, &h, Some(body.to_string()))
                .await
        }
    };
    let std_headers = |sid: &str| {
        vec![
            ("content-type", "application/json".to_string()),
            ("accept", client::ACCEPT_BOTH.to_string()),
            ("mcp-session-id", sid.to_string()),
        ]
    };

    // Batch -> -32600, malformed -> -32700, both HTTP 400.
    let a = post(
        std_headers(&sid),
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{}",
        a.body
    );
    let a = post(std_headers(&sid), r#"{"jsonrpc":"2.0","id":1,"#).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{}",
        a.body
    );
    // No session on a non-initialize request -> 400.
    let a = raw
        .post(None, &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(a.status, 400);
    // Accept must allow both JSON and SSE -> 406.
    let mut h = std_headers(&sid);
    h[1].1 = "application/json".into();
    let a = post(h, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
    assert_eq!(a.status, 406);
    // Invalid protocol version header -> 400.
    let mut h = std_headers(&sid);
    h.push(("mcp-protocol-version", "1999-01-01".into()));
    let a = post(h, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
    assert_eq!(a.status, 400);
    // Notifications and responses -> 202.
    let a = post(
        std_headers(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    // ping is answered by the gateway; string and numeric ids come back as sent.
    let a = post(
        std_headers(&sid),
        r#"{"jsonrpc":"2.0","id":"p-1","method":"ping"}"#,
    )
    .await;
    assert_eq!(a.json(), json!({"jsonrpc":"2.0","id":"p-1","result":{}}));
    let a = post(std_headers(&sid), r#"{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"beta__echo","arguments":{"text":"n"}}}"#).await;
    assert_eq!(a.json()["id"], 77);
    let a = post(std_headers(&sid), r#"{"jsonrpc":"2.0","id":"s-77","method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"s"}}}"#).await;
    assert_eq!(a.json()["id"], "s-77");
    assert!(
        a.header("mcp-session-id").is_none(),
        "backend session ids never leak"
    );
    // Not yet supported methods -> -32601, not a hang or an HTML error.
    let a = post(
        std_headers(&sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"widgets/spin"}"#,
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].as_i64()),
        (200, Some(-32601))
    );
    // server/discover without the 2026-07-28 headers: a header mismatch
    // (tests/modern.rs covers that era).
    let a = raw
        .post(
            None,
            &json!({"jsonrpc":"2.0","id":9,"method":"server/discover","params":{}}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["code"], -32020);
    assert_eq!(a.json()["id"], 9);
    // Only alpha keeps sessions (beta is stateless), so GET streams alpha's messages.
    let resp = reqwest::Client::new()
        .get(stack.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    assert!(resp.headers().get("mcp-session-id").is_none());
    drop(resp);
    // A client cannot pick an upstream cluster itself.
    let a = raw
        .send(
            reqwest::Method::GET,
            &[
                ("accept", "text/event-stream"),
                ("x-mcpgw-cluster", "alpha"),
            ],
            None,
        )
        .await;
    assert_eq!(a.status, 400, "mcpgw still wants a session: {}", a.body);
    let other = Raw::new(&stack.url().replace("/mcp", "/elsewhere"));
    let a = other
        .send(
            reqwest::Method::POST,
            &[("x-mcpgw-cluster", "alpha")],
            Some("{}".into()),
        )
        .await;
    assert_eq!(
        a.status, 404,
        "route header stripped on other paths: {}",
        a.body
    );
    stack.assert_vm_healthy();
}

async fn python_sdk_client_through_the_gateway(engine: Engine) {
    let stack = Stack::two_backends(engine).await;
    let python = std::env::var("MCPGW_PYTHON").unwrap_or_else(|_| {
        mcpgw_e2e::envoy::workspace_root()
            .join(".venv/bin/python")
            .display()
            .to_string()
    });
    let script = mcpgw_e2e::envoy::workspace_root().join("e2e/python/client_flow.py");
    let url = stack.url();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python client timed out")
    .expect("run python (./build.sh test installs it in .venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).expect("json summary");
    assert_eq!(r["server_name"], "mcpgw");
    assert_eq!(r["protocol_version"], "2025-11-25");
    assert_eq!(
        r["tools"],
        json!([
            "alpha__add",
            "alpha__announce",
            "alpha__count",
            "alpha__echo",
            "alpha__roots",
            "alpha__sleep",
            "alpha__whoami",
            "beta__count",
            "beta__echo",
            "beta__whoami"
        ])
    );
    assert_eq!(r["calls"]["alpha__echo"], json!(["alpha: py"]));
    assert_eq!(r["calls"]["beta__echo"], json!(["beta: py"]));
    assert_eq!(r["count_result"], json!(["counted to 3"]));
    assert_eq!(r["progress"], json!([1.0, 2.0, 3.0]));
    assert_eq!(r["hidden_tool"]["code"], -32602, "{r}");
    assert_eq!(r["session_ids"], 1);
    assert_eq!(r["after_delete_status"], 404);
    stack.assert_vm_healthy();
}

/// `rewrite: route` in both builds: the filter only names the backend, Envoy
/// picks the route again on the client's own host (a virtual host that lists
/// only `localhost`) and path, and the backend's route rewrites path and host
/// (what `mcpgw render` and Envoy Gateway's URLRewrite do). The client's query
/// string never reaches a backend; beta's own query does.
async fn routes_rewrite_path_and_host_in_a_named_virtual_host(engine: Engine) {
    let alpha = backends::spawn(Kind::Alpha).await;
    let beta = backends::spawn(Kind::Beta).await;
    let (a, b) = (alpha.port(), beta.port());
    let cfg = json!({
        "session": {"key": SESSION_KEY},
        "rewrite": "route",
        "backends": [
            {"name": "alpha", "cluster": "alpha", "authority": format!("127.0.0.1:{a}")},
            {"name": "beta", "cluster": "beta", "authority": format!("127.0.0.1:{b}"), "path": "/mcp?k=1"}
        ]
    });
    let clusters = [
        Cluster {
            name: "alpha".into(),
            port: a,
        },
        Cluster {
            name: "beta".into(),
            port: b,
        },
    ];
    let yaml = render(engine, &cfg.to_string(), &clusters, &[]);
    let old = r#"              domains: ["*"]
              routes:
              - match: {prefix: "/", headers: [{name: x-mcpgw-cluster, present_match: true}]}
                route: {cluster_header: x-mcpgw-cluster, timeout: 0s}
"#;
    let route = |name: &str, port: u16, path: &str| {
        format!(
            "              - match: {{path: \"/mcp\", headers: [{{name: x-mcpgw-cluster, string_match: {{exact: {name}}}}}]}}\n                route: {{cluster: {name}, timeout: 0s, host_rewrite_literal: \"127.0.0.1:{port}\", regex_rewrite: {{pattern: {{regex: \"^/.*$\"}}, substitution: \"{path}\"}}}}\n"
        )
    };
    let new = format!(
        "              domains: [\"localhost\", \"localhost:*\"]\n              routes:\n{}{}",
        route("alpha", a, "/mcp"),
        route("beta", b, "/mcp?k=1")
    );
    assert!(yaml.contains(old), "the harness's route block changed");
    let yaml = yaml.replace(old, &new);
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy start");

    let raw = Raw::new(&format!("http://localhost:{}/mcp?client=q", envoy.port));
    let sid = raw.session().await;
    for (i, (tool, port, path)) in [
        ("alpha__whoami", a, "/mcp"),
        ("beta__whoami", b, "/mcp?k=1"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = raw
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":i + 1,"method":"tools/call","params":{"name":tool,"arguments":{}}}),
            )
            .await;
        assert_eq!(r.status, 200, "{engine:?} {tool}: {}", r.body);
        let text = r.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let who: Value = serde_json::from_str(&text).expect("whoami JSON");
        assert_eq!(
            who["host"],
            format!("127.0.0.1:{port}"),
            "{engine:?} {tool}: {who}"
        );
        assert_eq!(who["path"], path, "{engine:?} {tool}: {who}");
    }
    envoy.assert_log_clean();
}
