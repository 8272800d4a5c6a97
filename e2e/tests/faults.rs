//! Fault injection through the real Envoy: a healthy backend (`good`, the
//! rmcp test server, stateless JSON) next to a backend that misbehaves
//! (`faulty`, `e2e/src/faulty.rs`, fan-out `timeout` 1s) in every way a
//! backend can: down, slow, HTTP 500, garbage, truncated or aborted event
//! streams, another JSON-RPC id.
//!
//! For each: the client gets a well-formed JSON-RPC answer (an error naming
//! the backend, or the healthy backend's part of a list) within a bound,
//! never a hang; the failing backend is named in the wasm log and counted
//! in `/stats/prometheus`; the VM never traps, and a normal call still works.

use mcpgw_e2e::backends::{self, Kind, TestServer};
use mcpgw_e2e::client::{Answer, ACCEPT_BOTH};
use mcpgw_e2e::envoy::{render, Cluster, Engine, Envoy};
use mcpgw_e2e::faulty::{
    assert_vm_healthy, closed_port, counter, wait_counter, wait_log, Fault, FaultyBackend, Options,
};
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
mcpgw_e2e::per_engine!(
    a_backend_that_is_down_is_left_out,
    every_backend_down_is_a_json_rpc_error,
    a_backend_that_goes_down_after_initialize,
    a_slow_backend_is_cut_at_its_fanout_timeout,
    a_routed_call_may_outlast_the_fanout_timeout,
    a_hung_routed_call_ends_at_the_route_timeout,
    http_500_at_initialize_list_and_call,
    garbage_at_initialize_and_list_is_left_out,
    garbage_json_answer_to_a_call_is_a_json_rpc_error,
    garbage_of_other_kinds_is_a_json_rpc_error,
    a_truncated_event_stream_ends_with_an_error_event,
    a_connection_closed_mid_stream_resets_the_client_promptly,
    a_connection_closed_before_the_answer_is_a_json_rpc_error,
    a_json_answer_with_another_id_is_a_json_rpc_error,
    an_event_stream_answer_with_another_id_ends_with_an_error,
    a_list_answer_with_another_id_still_counts,
    a_non_utf8_header_on_a_routed_answer_does_not_trap_the_vm,
    a_non_utf8_header_on_a_fanout_answer_does_not_trap_the_vm,
    envoy_wasm_stats_show_no_failure,
    get_stream_and_delete_with_a_failing_backend,
);

/// The faulty backend's fan-out timeout.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(1);
/// Slack for Envoy and the test machine on top of an expected delay.
const SLACK: Duration = Duration::from_secs(4);
/// Envoy's timers may fire this much before the client's clock says.
const EARLY: Duration = Duration::from_millis(50);

struct Setup {
    _good: TestServer,
    faulty: Option<FaultyBackend>,
    envoy: Envoy,
    http: reqwest::Client,
}

/// `good` + `faulty` behind Envoy. `faulty_port`: where the `faulty`
/// cluster points (default: the faulty backend). `edit_yaml` may change the
/// rendered Envoy configuration.
async fn setup(
    engine: Engine,
    opts: Options,
    faulty_port: Option<u16>,
    edit_yaml: impl FnOnce(String) -> String,
) -> Setup {
    let good = backends::spawn(Kind::Beta).await;
    let faulty = match faulty_port {
        Some(_) => None,
        None => Some(FaultyBackend::spawn(opts).await),
    };
    let port = faulty_port.unwrap_or_else(|| faulty.as_ref().map_or(0, |f| f.port()));
    let cfg = json!({
        "session": {"key": SESSION_KEY},
        "backends": [
            {"name": "good", "cluster": "good", "tools": {"include": ["echo"]}},
            {"name": "faulty", "cluster": "faulty", "timeout": "1s"}
        ]
    });
    let yaml = edit_yaml(render(
        engine,
        &cfg.to_string(),
        &[
            Cluster {
                name: "good".into(),
                port: good.port(),
            },
            Cluster {
                name: "faulty".into(),
                port,
            },
        ],
        &[],
    ));
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy start");
    Setup {
        _good: good,
        faulty,
        envoy,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    fn faulty(&self) -> &FaultyBackend {
        self.faulty.as_ref().expect("a faulty backend")
    }

    /// POST one message; the answer must come within `bound`.
    async fn post(&self, sid: Option<&str>, body: &Value, bound: Duration) -> (Answer, Duration) {
        let started = Instant::now();
        let mut req = self
            .http
            .post(self.envoy.url())
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH)
            .body(body.to_string());
        if let Some(s) = sid {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let answer = tokio::time::timeout(bound, async {
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("no HTTP answer (transport error: {e})"));
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.text().await.expect("body");
            Answer {
                status,
                headers,
                body,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer within {bound:?} to {body}"));
        (answer, started.elapsed())
    }

    async fn initialize(&self) -> Answer {
        let (a, _) = self.post(None, &init(), FANOUT_TIMEOUT + SLACK).await;
        a
    }

    /// initialize + initialized; the session id.
    async fn session(&self) -> String {
        let a = self.initialize().await;
        assert_eq!(a.status, 200, "{}", a.body);
        let sid = a.header("mcp-session-id").expect("session id").to_string();
        let (n, _) = self
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
                FANOUT_TIMEOUT + SLACK,
            )
            .await;
        assert_eq!(n.status, 202, "{}", n.body);
        sid
    }

    async fn call(&self, sid: &str, tool: &str, id: u64, bound: Duration) -> (Answer, Duration) {
        self.post(Some(sid), &call(tool, id), bound).await
    }

    async fn tool_names(&self, sid: &str) -> Vec<String> {
        let (a, elapsed) = self
            .post(
                Some(sid),
                &json!({"jsonrpc":"2.0","id":50,"method":"tools/list"}),
                FANOUT_TIMEOUT + SLACK,
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(elapsed < FANOUT_TIMEOUT + SLACK);
        let v = a.json();
        assert_eq!(v["id"], 50, "{v}");
        let mut names: Vec<String> = v["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools: {v}"))
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// The healthy backend still answers, and the VM never trapped.
    async fn still_healthy(&self, sid: &str) {
        let (a, _) = self.call(sid, "good__echo", 900, SLACK).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.json()["result"]["content"][0]["text"],
            "beta: still here",
            "{}",
            a.body
        );
        assert_vm_healthy(&self.envoy);
    }

    async fn logged(&self, needles: &[&str]) -> String {
        wait_log(&self.envoy, needles).await.unwrap_or_else(|| {
            panic!(
                "no wasm log line with {needles:?}:\n{}",
                self.envoy.filter_log().join("\n")
            )
        })
    }
}

fn init() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"faults","version":"1"}}})
}

fn call(tool: &str, id: u64) -> Value {
    let text = if tool.starts_with("good") {
        "still here"
    } else {
        "x"
    };
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"text":text}}})
}

/// A JSON-RPC error for request `id` with this code, its message containing `needle`.
#[track_caller]
fn assert_rpc_error(a: &Answer, id: u64, code: i64, needle: &str) {
    let v = a.json();
    assert_eq!(v["jsonrpc"], "2.0", "not JSON-RPC: {}", a.body);
    assert_eq!(v["id"], id, "{}", a.body);
    assert_eq!(v["error"]["code"], code, "{}", a.body);
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
}

const FAILURES: &str = "mcpgw_backend_failures_total{backend=\"faulty\"}";
const INIT_FAILURES: &str = "mcpgw_initialize_backend_failures_total{backend=\"faulty\"}";

// ----- down ---------------------------------------------------------------------------

async fn a_backend_that_is_down_is_left_out(engine: Engine) {
    let down = closed_port();
    let s = setup(engine, Options::named("faulty"), Some(down.port), |y| y).await;
    let started = Instant::now();
    let a = s.initialize().await;
    assert!(started.elapsed() < FANOUT_TIMEOUT + SLACK);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["result"]["serverInfo"]["name"],
        "mcpgw",
        "{}",
        a.body
    );
    let sid = a
        .header("mcp-session-id")
        .expect("a session without faulty");
    s.logged(&[
        "initialize: backend faulty: HTTP 503",
        "left out of the session",
    ])
    .await;
    assert_eq!(wait_counter(&s.envoy, INIT_FAILURES, 1.0).await, 1.0);
    // Only the healthy backend is in the session.
    assert_eq!(s.tool_names(sid).await, ["good__echo"]);
    let (a, _) = s.call(sid, "faulty__echo", 3, SLACK).await;
    assert_eq!(a.status, 200);
    assert_rpc_error(&a, 3, -32602, "Unknown tool: faulty__echo");
    s.still_healthy(sid).await;
}

async fn every_backend_down_is_a_json_rpc_error(engine: Engine) {
    let closed = closed_port();
    let down = closed.port;
    let s = setup(engine, Options::named("faulty"), Some(down), |y| {
        // The healthy backend is down too.
        let good_port = y
            .split("cluster_name: good")
            .nth(1)
            .and_then(|r| r.split("port_value: ").nth(1))
            .and_then(|r| r.split('}').next())
            .expect("good's port")
            .to_string();
        y.replace(
            &format!("port_value: {good_port}}}"),
            &format!("port_value: {down}}}"),
        )
    })
    .await;
    let a = s.initialize().await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("mcp-session-id").is_none());
    assert_rpc_error(&a, 0, -32010, "no backend could be initialized");
    let msg = a.json()["error"]["message"].to_string();
    assert!(msg.contains("good:") && msg.contains("faulty:"), "{msg}");
    assert_eq!(wait_counter(&s.envoy, INIT_FAILURES, 1.0).await, 1.0);
    assert_vm_healthy(&s.envoy);
}

async fn a_backend_that_goes_down_after_initialize(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    assert_eq!(
        s.tool_names(&sid).await,
        ["faulty__echo", "faulty__fail", "good__echo"]
    );
    s.faulty().stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Lists: the healthy part, at once.
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);
    // Envoy answers a side call to a cluster it cannot reach with a 503.
    s.logged(&["tools/list: backend faulty: HTTP 503"]).await;
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    // Calls: a JSON-RPC error naming the backend (Envoy's 503).
    let before = counter(&s.envoy, FAILURES);
    let (a, elapsed) = s.call(&sid, "faulty__echo", 4, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 4, -32010, "backend faulty failed: HTTP 503");
    assert!(elapsed < SLACK);
    s.logged(&["backend faulty failed: HTTP 503"]).await;
    assert!(wait_counter(&s.envoy, FAILURES, before + 1.0).await >= before + 1.0);
    s.still_healthy(&sid).await;
}

// ----- slow -------------------------------------------------------------------------------

async fn a_slow_backend_is_cut_at_its_fanout_timeout(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    s.faulty()
        .set("initialize", Fault::Delay(Duration::from_secs(10)));
    // initialize: answered after faulty's 1s timeout, without it (well before
    // the backend's 10 s delay, with room for a loaded machine).
    let started = Instant::now();
    let a = s.initialize().await;
    let elapsed = started.elapsed();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        elapsed >= FANOUT_TIMEOUT - EARLY && elapsed < FANOUT_TIMEOUT + SLACK,
        "initialize took {elapsed:?}"
    );
    let sid = a.header("mcp-session-id").expect("session").to_string();
    // Envoy answers a side call that hits its timeout with a 504.
    s.logged(&["initialize: backend faulty: HTTP 504"]).await;
    assert_eq!(wait_counter(&s.envoy, INIT_FAILURES, 1.0).await, 1.0);
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);

    // A list: the healthy part after 1s.
    s.faulty().set("initialize", Fault::None);
    s.faulty()
        .set("tools/list", Fault::Delay(Duration::from_secs(10)));
    let sid = s.session().await;
    let started = Instant::now();
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= FANOUT_TIMEOUT - EARLY && elapsed < FANOUT_TIMEOUT + SLACK,
        "tools/list took {elapsed:?}"
    );
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    s.still_healthy(&sid).await;
}

/// Routed calls are not fan-out calls: the backend `timeout` does not apply
/// (the route has `timeout: 0s`, tool calls may legitimately run long), so a
/// call slower than it still gets its answer.
async fn a_routed_call_may_outlast_the_fanout_timeout(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty()
        .set("tools/call", Fault::Delay(Duration::from_millis(2500)));
    let (a, elapsed) = s.call(&sid, "faulty__echo", 5, SLACK + SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["result"]["content"][0]["text"], "faulty: x");
    assert!(elapsed >= Duration::from_millis(2500));
    s.still_healthy(&sid).await;
}

/// With a route timeout (the way to bound routed calls), a backend that never
/// answers gets the client a JSON-RPC error at that timeout (Envoy's 504).
async fn a_hung_routed_call_ends_at_the_route_timeout(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| {
        let out = y.replace(
            "route: {cluster_header: x-mcpgw-cluster, timeout: 0s}",
            "route: {cluster_header: x-mcpgw-cluster, timeout: 2s}",
        );
        assert_ne!(out, y, "route timeout not found in the rendered config");
        out
    })
    .await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::Hang);
    let before = counter(&s.envoy, FAILURES);
    let (a, elapsed) = s.call(&sid, "faulty__echo", 6, SLACK + SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 6, -32010, "backend faulty failed: HTTP 504");
    // Not before the route timeout; the upper bound (no hang) is the call's
    // own, generous for a loaded machine.
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    s.logged(&["backend faulty failed: HTTP 504"]).await;
    assert!(wait_counter(&s.envoy, FAILURES, before + 1.0).await >= before + 1.0);
    s.still_healthy(&sid).await;
}

// ----- HTTP errors and garbage ------------------------------------------------------------

async fn http_500_at_initialize_list_and_call(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    s.faulty().set("initialize", Fault::Status(500));
    let a = s.initialize().await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sid = a.header("mcp-session-id").expect("session").to_string();
    s.logged(&["initialize: backend faulty: HTTP 500"]).await;
    assert_eq!(wait_counter(&s.envoy, INIT_FAILURES, 1.0).await, 1.0);
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);

    s.faulty().set("initialize", Fault::None);
    s.faulty().set("tools/list", Fault::Status(500));
    s.faulty().set("tools/call", Fault::Status(500));
    let sid = s.session().await;
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);
    s.logged(&["tools/list: backend faulty: HTTP 500"]).await;
    let (a, _) = s.call(&sid, "faulty__echo", 7, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 7, -32010, "backend faulty failed: HTTP 500");
    s.logged(&["backend faulty failed: HTTP 500"]).await;
    assert!(wait_counter(&s.envoy, FAILURES, 2.0).await >= 2.0);
    s.still_healthy(&sid).await;
}

async fn garbage_at_initialize_and_list_is_left_out(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    s.faulty().set("initialize", Fault::Garbage);
    let a = s.initialize().await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sid = a.header("mcp-session-id").expect("session").to_string();
    s.logged(&["initialize: backend faulty", "left out of the session"])
        .await;
    assert_eq!(wait_counter(&s.envoy, INIT_FAILURES, 1.0).await, 1.0);
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);

    s.faulty().set("initialize", Fault::None);
    s.faulty().set("tools/list", Fault::Garbage);
    let sid = s.session().await;
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);
    s.logged(&["tools/list: backend faulty"]).await;
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    s.still_healthy(&sid).await;
}

/// A routed call answered with `200 application/json` garbage must reach the
/// client as a JSON-RPC error for its request, not as the garbage.
async fn garbage_json_answer_to_a_call_is_a_json_rpc_error(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::Garbage);
    let (a, _) = s.call(&sid, "faulty__echo", 8, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 8, -32010, "faulty");
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    s.still_healthy(&sid).await;
}

async fn garbage_of_other_kinds_is_a_json_rpc_error(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    // Not JSON and not SSE: the gateway names the content type.
    s.faulty().set(
        "tools/call",
        Fault::Body("text/html", b"<html>oops</html>".to_vec()),
    );
    let (a, _) = s.call(&sid, "faulty__echo", 9, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 9, -32010, "backend faulty failed: HTTP 200");
    s.logged(&["backend faulty failed: HTTP 200 (text/html)"])
        .await;
    // An event stream that is not UTF-8: an error event closes it.
    s.faulty().set(
        "tools/call",
        Fault::Body("text/event-stream", b"data: \xff\xfe\n\n".to_vec()),
    );
    let (a, _) = s.call(&sid, "faulty__echo", 10, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 10, -32010, "broken event stream");
    s.logged(&["backend faulty: broken event stream"]).await;
    // An event stream without any event: an error event.
    s.faulty().set(
        "tools/call",
        Fault::Body("text/event-stream", b"this is not an event stream".to_vec()),
    );
    let (a, _) = s.call(&sid, "faulty__echo", 11, SLACK).await;
    assert_rpc_error(&a, 11, -32010, "backend faulty");
    assert!(wait_counter(&s.envoy, FAILURES, 2.0).await >= 2.0);
    s.still_healthy(&sid).await;
}

// ----- broken streams -----------------------------------------------------------------------

async fn a_truncated_event_stream_ends_with_an_error_event(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::TruncatedSse);
    let (a, elapsed) = s.call(&sid, "faulty__echo", 12, SLACK).await;
    assert!(elapsed < SLACK);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let msgs = a.messages();
    assert_eq!(msgs.len(), 2, "progress, then the error: {}", a.body);
    assert_eq!(msgs[0]["method"], "notifications/progress");
    assert_rpc_error(
        &a,
        12,
        -32010,
        "backend faulty cut its event stream mid-event",
    );
    s.logged(&["backend faulty cut its event stream mid-event"])
        .await;
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    s.still_healthy(&sid).await;
}

/// The backend drops the connection in the middle of an event stream, after
/// Envoy has sent the client the 200 and a first event: Envoy can only reset
/// the client's stream. The client sees the progress event, then the reset,
/// promptly (no hang); the VM is unaffected.
async fn a_connection_closed_mid_stream_resets_the_client_promptly(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::CloseMidStream);
    let started = Instant::now();
    let resp = tokio::time::timeout(
        SLACK,
        s.http
            .post(s.envoy.url())
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .body(call("faulty__echo", 13).to_string())
            .send(),
    )
    .await
    .expect("headers within the bound")
    .expect("response headers");
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(SLACK, resp.bytes())
        .await
        .expect("the body ends within the bound");
    assert!(started.elapsed() < SLACK);
    match body {
        // Envoy reset the stream: the client knows the answer is lost.
        Err(e) => eprintln!("client saw: {e}"),
        // Or the stream ended; then it must say what happened.
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            assert!(
                text.contains("-32010"),
                "stream ended without an error: {text}"
            );
        }
    }
    s.still_healthy(&sid).await;
    // The lost answer is the backend's failure: named and counted.
    assert!(
        wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0,
        "a stream the backend cut is not counted in {FAILURES}"
    );
    s.logged(&["backend faulty"]).await;
}

async fn a_connection_closed_before_the_answer_is_a_json_rpc_error(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::Reset);
    let (a, elapsed) = s.call(&sid, "faulty__echo", 14, SLACK).await;
    assert!(elapsed < SLACK);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 14, -32010, "backend faulty failed: HTTP 503");
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    // At initialize and in lists: left out.
    s.faulty().set("tools/list", Fault::Reset);
    assert_eq!(s.tool_names(&sid).await, ["good__echo"]);
    s.faulty().set("initialize", Fault::Reset);
    let a = s.initialize().await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("mcp-session-id").is_some());
    assert_eq!(wait_counter(&s.envoy, INIT_FAILURES, 1.0).await, 1.0);
    s.still_healthy(&sid).await;
}

// ----- another JSON-RPC id --------------------------------------------------------------------

/// A JSON answer with another id does not answer the client's request: the
/// client must get a JSON-RPC error for its own id (otherwise it waits for
/// an answer that never comes).
async fn a_json_answer_with_another_id_is_a_json_rpc_error(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::WrongId);
    let (a, _) = s.call(&sid, "faulty__echo", 15, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_rpc_error(&a, 15, -32010, "faulty");
    s.still_healthy(&sid).await;
}

async fn an_event_stream_answer_with_another_id_ends_with_an_error(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::WrongIdSse);
    let (a, _) = s.call(&sid, "faulty__echo", 16, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // The stray message passes, then the gateway answers the request.
    assert_rpc_error(
        &a,
        16,
        -32010,
        "backend faulty closed its event stream without answering",
    );
    s.logged(&["backend faulty closed its event stream without answering"])
        .await;
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    s.still_healthy(&sid).await;
}

/// Fan-out answers are taken by position, not by id: a backend answering a
/// list with another id still contributes its page (lenient, by design).
async fn a_list_answer_with_another_id_still_counts(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/list", Fault::WrongId);
    assert_eq!(
        s.tool_names(&sid).await,
        ["faulty__echo", "faulty__fail", "good__echo"]
    );
    s.still_healthy(&sid).await;
}

// ----- headers the adapter cannot read ------------------------------------------------------

/// A backend header whose value is not UTF-8 (obs-text, legal in HTTP/1.1)
/// on a routed answer: proxy-wasm's `get_map` panics on it (hostcalls.rs,
/// `String::from_utf8(..).unwrap()`), which traps the VM. The answer must
/// reach the client and the VM must survive.
async fn a_non_utf8_header_on_a_routed_answer_does_not_trap_the_vm(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty()
        .set("tools/call", Fault::Header("x-note", b"caf\xe9".to_vec()));
    let (a, _) = s.call(&sid, "faulty__echo", 17, SLACK).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["result"]["content"][0]["text"],
        "faulty: x",
        "{}",
        a.body
    );
    assert_vm_healthy(&s.envoy);
    s.still_healthy(&sid).await;
}

/// The same header on a fan-out answer (a side call's response headers).
async fn a_non_utf8_header_on_a_fanout_answer_does_not_trap_the_vm(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty()
        .set("tools/list", Fault::Header("x-note", b"caf\xe9".to_vec()));
    let (a, _) = s
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":51,"method":"tools/list"}),
            FANOUT_TIMEOUT + SLACK,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"good__echo"), "{}", a.body);
    assert_vm_healthy(&s.envoy);
    s.still_healthy(&sid).await;
}

/// Envoy's own wasm statistics exist and show no failed VM (so the check in
/// `assert_vm_healthy` is not vacuous): with `failure_policy: FAIL_RELOAD` a
/// VM that traps is counted in `wasm.mcpgw.vm_reload*`. (The module has no
/// VM: a hook that panics is logged, which `assert_vm_healthy` looks for.)
async fn envoy_wasm_stats_show_no_failure(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    s.faulty().set("tools/call", Fault::Status(502));
    let (a, _) = s.call(&sid, "faulty__echo", 18, SLACK).await;
    assert_rpc_error(&a, 18, -32010, "HTTP 502");
    let stats = s.envoy.admin_get("/stats").expect("stats");
    let vm_stats: &[&str] = match engine {
        Engine::Wasm => &[
            "wasm.mcpgw.vm_reload: 0",
            "wasm.mcpgw.vm_reload_failure: 0",
            "wasm.mcpgw.vm_reload_success: 0",
        ],
        Engine::Module => &[],
    };
    for name in vm_stats {
        assert!(
            stats.lines().any(|l| l == *name),
            "{name} missing:\n{}",
            stats
                .lines()
                .filter(|l| l.contains("wasm"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(counter(&s.envoy, FAILURES), 1.0);
    s.still_healthy(&sid).await;
}

// ----- GET streams and DELETE ---------------------------------------------------------------

/// The standalone GET stream goes to the session's only stateful backend
/// (`faulty`; `good` is stateless). Its failures are JSON-RPC errors too, and
/// DELETE ends the gateway session even when a backend cannot be reached.
async fn get_stream_and_delete_with_a_failing_backend(engine: Engine) {
    let s = setup(engine, Options::named("faulty"), None, |y| y).await;
    let sid = s.session().await;
    let get = || async {
        let resp = tokio::time::timeout(
            SLACK,
            s.http
                .get(s.envoy.url())
                .header("accept", "text/event-stream")
                .header("mcp-session-id", &sid)
                .header("mcp-protocol-version", "2025-11-25")
                .send(),
        )
        .await
        .expect("GET answered within the bound")
        .expect("GET");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    };
    // The backend has no GET stream (405): said in MCP terms.
    let (status, body) = get().await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("backend faulty offers no GET stream"));
    // The backend is down: 502 with a JSON-RPC error naming it.
    s.faulty().stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = get().await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], -32010, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("backend faulty failed: HTTP 503"));
    assert!(wait_counter(&s.envoy, FAILURES, 1.0).await >= 1.0);
    // DELETE still ends the session (204), logging the backend it could not reach.
    let del = tokio::time::timeout(
        FANOUT_TIMEOUT + SLACK,
        s.http
            .delete(s.envoy.url())
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .send(),
    )
    .await
    .expect("DELETE answered within the bound")
    .expect("DELETE");
    assert_eq!(del.status(), 204);
    s.logged(&["backend faulty: answered HTTP 503"]).await;
    let (a, _) = s
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
            SLACK,
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_vm_healthy(&s.envoy);
}
