//! MCP 2026-07-28 through mcpgw in a real Envoy, beside the session era, on
//! one endpoint. One Envoy and one set of backends for the whole file
//! (`EraStack`): rmcp speaking only 2026-07-28 (`modern`, and `bare`, the
//! same server unprefixed), the Python SDK's `MCPServer` (`py`: MRTR
//! elicitation and sampling, `subscriptions/listen`) and a TypeScript SDK
//! server that knows only the 2025 era (`legacy`).
//!
//! * The official Python SDK client pinned to 2026-07-28, in auto mode and
//!   in legacy mode run the same journey at the same time
//!   (`e2e/python/modern_client.py`); the wire they recorded shows each
//!   era's shape (auto: discover, never `initialize`).
//! * Raw HTTP then checks every 2026-07-28 error case, a tampered MRTR state,
//!   header-only routing, listen streams and per-request logging.

use std::time::Duration;

use futures::StreamExt;
use mcpgw_e2e::checks::{wire_lines, Checks};
use mcpgw_e2e::envoy::Engine;
use mcpgw_e2e::peers::{python_bin, run_script};
use mcpgw_e2e::stack::EraStack;
use serde_json::{json, Value};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const V: &str = "2026-07-28";

async fn run_client(url: &str, mode: &str, label: &str) -> Value {
    let args = [url.to_string(), mode.to_string(), label.to_string()];
    let run = run_script(
        &python_bin(),
        "e2e/python/modern_client.py",
        &args,
        CLIENT_TIMEOUT,
    )
    .await;
    if let Some(f) = run.summary.get("fatal") {
        panic!(
            "{mode}: a step failed:\n{}\nwire:\n{}\nstderr:\n{}",
            f.as_str().unwrap_or_default(),
            wire_lines(&run.summary),
            run.stderr
        );
    }
    run.summary
}

fn text_has(v: &Value, needle: &str) -> bool {
    v.to_string().contains(needle)
}

/// What every client must have seen, whatever its era.
fn check_common(k: &mut Checks, r: &Value, label: &str) {
    k.eq("count", &r["count"], &json!(["counted to 3"]));
    k.eq(
        "progress",
        &r["progress"],
        &json!([
            [1.0, 3.0, "step 1"],
            [2.0, 3.0, "step 2"],
            [3.0, 3.0, "step 3"]
        ]),
    );
    let calls = &r["calls"];
    k.eq(
        "2026-07-28-only backend",
        &calls["modern__echo"],
        &json!({"text": [format!("modern: {label}")], "error": false}),
    );
    k.eq(
        "2025-only backend",
        &calls["legacy__echo"],
        &json!({"text": [format!("legacy: {label}")], "error": false}),
    );
    k.eq(
        "elicitation round trip",
        &calls["py__confirm"],
        &json!({"text": [format!("ordered book-{label}")], "error": false}),
    );
    k.eq(
        "sampling round trip",
        &calls["py__haiku"],
        &json!({"text": [format!("haiku: five seven five ({label})")], "error": false}),
    );
    k.that(
        "sampling asked",
        r["samplings"].as_array().map(Vec::len) == Some(1)
            && text_has(&r["samplings"], "A haiku about gateways"),
        &r["samplings"],
    );
    k.eq(
        "prompt",
        &r["prompt"],
        &json!([format!("Hello, {label}, from py")]),
    );
    k.eq("namespaced read", &r["read"], &json!(["the py document"]));
    k.eq(
        "resources",
        &r["resources"],
        &json!(["legacy+legacy://note", "py+py://doc"]),
    );
    k.eq("prompts", &r["prompts"], &json!(["py__greet"]));
    let tools = r["tools"].as_array().cloned().unwrap_or_default();
    for t in [
        "py__confirm",
        "py__haiku",
        "py__slow_count",
        "modern__echo",
        "legacy__echo",
        "legacy__ask_anyway",
        "echo",
        "whoami",
    ] {
        k.that(
            &format!("tool {t} listed"),
            tools.contains(&json!(t)),
            &json!(tools),
        );
    }
}

fn check_modern(r: &Value, label: &str, auto: bool, engine: Engine) {
    let mut k = Checks::new(label);
    check_common(&mut k, r, label);
    k.eq("protocol version", &r["protocol_version"], &json!(V));
    k.eq(
        "elicitation round trip with the rmcp backend",
        &r["calls"]["modern__confirm"],
        &json!({"text": [format!("ordered gadget-{label}")], "error": false}),
    );
    k.eq(
        "elicitations asked",
        &r["elicitations"],
        &json!([
            format!("Really order book-{label}?"),
            format!("Order gadget-{label}?")
        ]),
    );
    let d = &r["discover"];
    k.eq("discover result type", &d["resultType"], &json!("complete"));
    k.eq(
        "discover versions",
        &d["supportedVersions"],
        &json!([V, "2025-11-25", "2025-06-18", "2025-03-26"]),
    );
    k.eq(
        "discover identity",
        &d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        &json!("mcpgw"),
    );
    k.eq(
        "discover capabilities",
        &d["capabilities"]["tools"],
        &json!({"listChanged": true}),
    );
    k.that(
        "discover hints",
        d["ttlMs"].is_u64() && d["cacheScope"].is_string(),
        d,
    );
    k.that(
        "discover instructions name every backend",
        ["## py", "## modern", "## legacy"]
            .iter()
            .all(|h| text_has(&d["instructions"], h)),
        &d["instructions"],
    );
    // Lists carry hints; the 2025-only backend gives none: stale, private.
    k.eq(
        "tools/list hints",
        &r["tools_hints"],
        &json!([0, "private"]),
    );
    k.eq(
        "resources/read hints",
        &r["read_hints"],
        &json!([5000, "public"]),
    );
    // Logging per request: the client asked for warning and above.
    k.eq(
        "logs at the asked level",
        &r["logs"],
        &json!([["error", "counted"]]),
    );
    // A 2025-only backend's request to the client is refused for it.
    k.that(
        "server request refused on the client's behalf",
        r["calls"]["legacy__ask_anyway"]["error"] == json!(true)
            && text_has(&r["calls"]["legacy__ask_anyway"], "refused")
            && text_has(&r["calls"]["legacy__ask_anyway"], "2026-07-28"),
        &r["calls"]["legacy__ask_anyway"],
    );
    k.that(
        "a conforming 2025 backend does not ask",
        r["calls"]["legacy__ask"]["error"] == json!(true)
            && text_has(&r["calls"]["legacy__ask"], "does not support"),
        &r["calls"]["legacy__ask"],
    );
    // Listen: acknowledged with what is honoured, then the change. Tools
    // changes come from three backends (py, modern, bare): the dynamic module
    // merges their listen streams; one proxy-wasm stream follows one backend,
    // so it honours only what one backend alone serves (prompts: py).
    match engine {
        Engine::Module => {
            k.eq(
                "listen acknowledgement",
                &r["honored"],
                &json!({"toolsListChanged": true, "promptsListChanged": true}),
            );
            k.eq(
                "listen event",
                &r["listen_event"],
                &json!("tools_list_changed"),
            );
        }
        Engine::Wasm => {
            k.eq(
                "listen acknowledgement",
                &r["honored"],
                &json!({"promptsListChanged": true}),
            );
            k.eq("no tools event promised", &r["listen_event"], &Value::Null);
        }
    }
    let added = format!("py__extra_{label}");
    k.that(
        "the added tool is listed",
        r["tools_after"]
            .as_array()
            .is_some_and(|t| t.contains(&json!(added))),
        &r["tools_after"],
    );
    // The wire: stateless, every POST with its routing headers.
    let wire = r["wire"].as_array().cloned().unwrap_or_default();
    for e in &wire {
        k.that("no session", e["has_session"] == json!(false), e);
        k.that("POST only", e["method"] == json!("POST"), e);
        k.eq("version header", &e["version"], &json!(V));
        k.eq("Mcp-Method", &e["mcp_method"], &e["rpc"]);
        k.that("answered", e["status"] == json!(200), e);
    }
    k.that(
        "no initialize",
        !wire.iter().any(|e| e["rpc"] == json!("initialize")),
        &json!(wire.len()),
    );
    let confirms = wire
        .iter()
        .filter(|e| e["name"] == json!("py__confirm"))
        .collect::<Vec<_>>();
    k.that(
        "MRTR with the rmcp backend: two rounds",
        wire.iter()
            .filter(|e| e["name"] == json!("modern__confirm"))
            .count()
            == 2,
        &json!(wire.len()),
    );
    k.that(
        "MRTR: the retry is a new request",
        confirms.len() == 2 && confirms[0]["id"] != confirms[1]["id"],
        &json!(confirms),
    );
    k.that(
        "Mcp-Name mirrors the name",
        confirms
            .iter()
            .all(|e| e["mcp_name"] == json!("py__confirm")),
        &json!(confirms),
    );
    if auto {
        // No fallback round trip: the probe is answered, nothing else precedes.
        k.eq(
            "auto probes first",
            &wire[0]["rpc"],
            &json!("server/discover"),
        );
        k.eq("probe answered", &wire[0]["status"], &json!(200));
    }
    k.finish(r);
}

fn check_legacy(r: &Value) {
    let mut k = Checks::new("legacy");
    check_common(&mut k, r, "legacy");
    k.eq(
        "protocol version",
        &r["protocol_version"],
        &json!("2025-11-25"),
    );
    // The dual-era Python backend asks in the session era; the
    // 2026-07-28-only backend's input_required cannot reach this client.
    k.eq(
        "elicitations asked",
        &r["elicitations"],
        &json!(["Really order book-legacy?"]),
    );
    let confirm = &r["calls"]["modern__confirm"];
    k.that(
        "a 2026-07-28 backend's input_required becomes an error",
        confirm["code"] == json!(-32010) && text_has(confirm, "2026-07-28"),
        confirm,
    );
    let wire = r["wire"].as_array().cloned().unwrap_or_default();
    k.eq("initialize first", &wire[0]["rpc"], &json!("initialize"));
    k.that(
        "a session throughout",
        wire.iter().skip(1).all(|e| e["has_session"] == json!(true)),
        &json!(wire.len()),
    );
    k.that(
        "no 2026-07-28 request",
        !wire.iter().any(|e| e["version"] == json!(V)),
        &json!(wire.len()),
    );
    k.finish(r);
}

// ----- raw HTTP ---------------------------------------------------------------

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The JSON body, or the last JSON-RPC message of an event stream.
    json: Value,
    /// Every JSON-RPC message of an event stream (or the JSON body).
    messages: Vec<Value>,
}

fn meta(extra: Value) -> Value {
    let mut m = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}},
    });
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    m
}

fn request(id: Value, method: &str, mut params: Value) -> Value {
    if params.get("_meta").is_none() {
        params["_meta"] = meta(json!({}));
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
    let mut req = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(20))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_string()).send().await.expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let messages: Vec<Value> = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).into_iter().collect()
    } else {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    Answer {
        status,
        headers,
        json: messages.last().cloned().unwrap_or(Value::Null),
        messages,
    }
}

/// POST a 2026-07-28 request with the routing headers its body implies.
async fn call(url: &str, body: &Value) -> Answer {
    let method = body["method"].as_str().unwrap_or("").to_string();
    let name = body["params"]["name"]
        .as_str()
        .or(body["params"]["uri"].as_str())
        .map(str::to_string);
    let mut h = vec![("mcp-protocol-version", V), ("mcp-method", method.as_str())];
    if let Some(n) = &name {
        h.push(("mcp-name", n.as_str()));
    }
    post(url, &h, body).await
}

fn code(a: &Answer) -> (u16, Option<i64>) {
    (a.status, a.json["error"]["code"].as_i64())
}

async fn error_cases(url: &str) {
    let client = reqwest::Client::new();
    for m in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = client
            .request(m.clone(), url)
            .header("mcp-protocol-version", V)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", "whatever")
            .send()
            .await
            .expect("GET/DELETE");
        assert_eq!(r.status(), 405, "{m}");
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some("POST")
        );
    }
    let confirm = request(
        json!(1),
        "tools/call",
        json!({"name": "py__confirm", "arguments": {"item": "x"}}),
    );
    let mismatched = [
        vec![
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/call"),
            ("mcp-name", "py__haiku"),
        ],
        vec![("mcp-protocol-version", V), ("mcp-method", "tools/call")],
        vec![("mcp-protocol-version", V), ("mcp-name", "py__confirm")],
        vec![
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/list"),
            ("mcp-name", "py__confirm"),
        ],
        vec![
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?not base64?="),
        ],
    ];
    for h in mismatched {
        let a = post(url, &h, &confirm).await;
        assert_eq!(code(&a), (400, Some(-32020)), "{h:?}: {}", a.json);
        assert_eq!(a.json["id"], 1);
    }
    // A base64-encoded name is decoded before it is compared.
    let a = post(
        url,
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?bW9kZXJuX19lY2hv?="),
        ],
        &request(
            json!(2),
            "tools/call",
            json!({"name": "modern__echo", "arguments": {"text": "b64"}}),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["result"]["content"][0]["text"], "modern: b64");
    // Missing request metadata.
    let a = call(
        url,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}),
    )
    .await;
    assert_eq!(code(&a), (400, Some(-32602)), "{}", a.json);
    let a = call(url, &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": V}}})).await;
    assert_eq!(code(&a), (400, Some(-32602)), "{}", a.json);
    // An unsupported version, with the versions served (both eras).
    let a = post(
        url,
        &[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")],
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": meta(json!({"io.modelcontextprotocol/protocolVersion": "2099-01-01"}))}}),
    )
    .await;
    assert_eq!(code(&a), (400, Some(-32022)), "{}", a.json);
    assert_eq!(a.json["error"]["data"]["requested"], "2099-01-01");
    let supported = a.json["error"]["data"]["supported"].clone();
    assert!(
        supported
            .as_array()
            .is_some_and(|s| s.contains(&json!(V)) && s.contains(&json!("2025-11-25"))),
        "{supported}"
    );
    // Removed and unknown methods.
    for m in [
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "tasks/result",
        "widgets/spin",
    ] {
        let a = call(url, &request(json!(5), m, json!({}))).await;
        assert_eq!(code(&a), (404, Some(-32601)), "{m}: {}", a.json);
    }
    // Notifications: accepted, no body.
    let a = post(
        url,
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "notifications/cancelled"),
        ],
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
    )
    .await;
    assert_eq!((a.status, a.messages.len()), (202, 0));
    // Mcp-Session-Id and Last-Event-ID are ignored; no session is minted.
    let a = post(
        url,
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/list"),
            ("mcp-session-id", "not-a-session"),
            ("last-event-id", "x"),
        ],
        &request(json!(6), "tools/list", json!({})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert!(a.headers.get("mcp-session-id").is_none());
    assert_eq!(a.json["result"]["resultType"], "complete");
    // A backend's "resource not found" in a 2026-07-28 code.
    let a = call(
        url,
        &request(
            json!(7),
            "resources/read",
            json!({"uri": "legacy+legacy://missing"}),
        ),
    )
    .await;
    assert_eq!(a.json["error"]["code"], -32602, "{}", a.json);
    // Backend failures are not reserved codes either.
    assert!(!(-32099..=-32000).contains(&a.json["error"]["code"].as_i64().unwrap_or(0)));
}

async fn mrtr_state(url: &str) {
    let first = request(
        json!("r1"),
        "tools/call",
        json!({"name": "py__confirm", "arguments": {"item": "raw"}}),
    );
    let a = call(url, &first).await;
    assert_eq!(
        a.json["result"]["resultType"], "input_required",
        "{}",
        a.json
    );
    let state = a.json["result"]["requestState"]
        .as_str()
        .expect("requestState")
        .to_string();
    assert!(
        state.starts_with("mcpgw1."),
        "the backend's state is wrapped: {state}"
    );
    let key = a.json["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("an input request");
    let retry = |id: &str, state: &str, item: &str| {
        request(
            json!(id),
            "tools/call",
            json!({"name": "py__confirm", "arguments": {"item": item},
                   "inputResponses": {key.clone(): {"action": "accept", "content": {"ok": true}}},
                   "requestState": state}),
        )
    };
    let mut tampered = state.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for (what, body) in [
        ("tampered", retry("r2", &tampered, "raw")),
        ("for other arguments", retry("r3", &state, "other")),
        (
            "the backend's own, unwrapped",
            retry("r4", "v1.forged", "raw"),
        ),
    ] {
        let a = call(url, &body).await;
        assert_eq!(code(&a), (400, Some(-32602)), "{what}: {}", a.json);
    }
    let a = call(url, &retry("r5", &state, "raw")).await;
    assert_eq!(a.json["id"], "r5");
    assert_eq!(
        a.json["result"]["content"][0]["text"], "ordered raw",
        "{}",
        a.json
    );
}

async fn routing_and_logging(url: &str) {
    // `bare` (2026-07-28, unprefixed) is routed from the headers alone.
    let a = call(
        url,
        &request(
            json!(8),
            "tools/call",
            json!({"name": "whoami", "arguments": {}}),
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.json["id"].as_i64()),
        (200, Some(8)),
        "{}",
        a.json
    );
    assert_eq!(a.json["result"]["resultType"], "complete");
    let seen: Value = serde_json::from_str(
        a.json["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("{}"),
    )
    .unwrap_or_default();
    assert_eq!(seen["mcp-protocol-version"], V, "{seen}");
    // Headers and body disagree: the 2026-07-28 backend itself refuses it.
    let a = post(
        url,
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/call"),
            ("mcp-name", "whoami"),
        ],
        &request(
            json!(9),
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}}),
        ),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.json);
    assert_eq!(a.json["error"]["code"], -32020, "{}", a.json);
    // Logging per request: none unless asked, then at the asked level.
    let count = |m: Value| {
        request(
            json!(10),
            "tools/call",
            json!({"name": "py__slow_count", "arguments": {"n": 1}, "_meta": m}),
        )
    };
    let a = call(url, &count(meta(json!({})))).await;
    assert!(
        !a.messages
            .iter()
            .any(|m| m["method"] == "notifications/message"),
        "{:?}",
        a.messages
    );
    let a = call(
        url,
        &count(meta(json!({"io.modelcontextprotocol/logLevel": "info"}))),
    )
    .await;
    let logs: Vec<&Value> = a
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| &m["params"]["data"])
        .collect();
    assert_eq!(logs, vec![&json!("counting"), &json!("counted")]);
}

async fn listen_streams(url: &str, engine: Engine) {
    // Only a 2025-only backend could serve it: acknowledged empty, closed.
    let a = call(
        url,
        &request(
            json!("L1"),
            "subscriptions/listen",
            json!({"notifications": {"resourceSubscriptions": ["legacy+legacy://note"]}}),
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.messages.len(), 2, "{:?}", a.messages);
    assert_eq!(
        a.messages[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    assert_eq!(a.messages[0]["params"]["notifications"], json!({}));
    assert_eq!(
        a.messages[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L1"
    );
    assert_eq!(a.messages[1]["id"], "L1");
    assert_eq!(
        a.messages[1]["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L1"
    );
    // A namespaced URI: subscribed at py with py's own URI, reported namespaced.
    let mut l2 = ListenStream::open(
        url,
        json!("L2"),
        json!({"resourceSubscriptions": ["py+py://doc"]}),
    )
    .await;
    let ack = l2.next_frame().await;
    let touched = call(
        url,
        &request(
            json!(11),
            "tools/call",
            json!({"name": "py__touch", "arguments": {"uri": "py://doc"}}),
        ),
    )
    .await;
    assert_eq!(
        touched.json["result"]["content"][0]["text"], "touched py://doc",
        "{}",
        touched.json
    );
    let update = l2.next_frame().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": ["py+py://doc"]})
    );
    assert_eq!(update["method"], "notifications/resources/updated");
    assert_eq!(update["params"]["uri"], "py+py://doc");
    for f in [&ack, &update] {
        assert_eq!(
            f["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L2",
            "{f}"
        );
    }
    drop(l2);

    // Tools changes, served by py, modern and bare.
    let mut l3 = ListenStream::open(url, json!("L3"), json!({"toolsListChanged": true})).await;
    let ack = l3.next_frame().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L3"
    );
    match engine {
        Engine::Module => {
            // Three backend streams merged into one: the gateway's one
            // acknowledgement, then each backend's change as it comes (modern
            // and bare announce one on their own, py after a tool is added).
            assert_eq!(
                ack["params"]["notifications"],
                json!({"toolsListChanged": true})
            );
            let added = call(
                url,
                &request(
                    json!(12),
                    "tools/call",
                    json!({"name": "py__add_tool", "arguments": {"name": "extra_listen"}}),
                ),
            )
            .await;
            assert_eq!(
                added.json["result"]["content"][0]["text"],
                "added extra_listen"
            );
            for _ in 0..3 {
                let f = l3.next_frame().await;
                assert_eq!(f["method"], "notifications/tools/list_changed", "{f}");
                assert_eq!(
                    f["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L3",
                    "{f}"
                );
            }
            assert!(
                !l3.raw.contains("\nid:") && !l3.raw.starts_with("id:"),
                "2026-07-28 listen events carry no ids: {}",
                l3.raw
            );
        }
        Engine::Wasm => {
            // One stream cannot follow three backends: nothing is promised,
            // and the subscription ends at once.
            assert_eq!(ack["params"]["notifications"], json!({}));
            let end = l3.next_frame().await;
            assert_eq!(end["id"], "L3");
            assert_eq!(end["result"]["resultType"], "complete");
        }
    }
}

/// A `subscriptions/listen` request's open SSE answer, read frame by frame.
struct ListenStream {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    /// Everything read so far.
    raw: String,
}

impl ListenStream {
    async fn open(url: &str, id: Value, notifications: Value) -> ListenStream {
        let body = request(
            id,
            "subscriptions/listen",
            json!({"notifications": notifications}),
        );
        let resp = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", V)
            .header("mcp-method", "subscriptions/listen")
            .body(body.to_string())
            .send()
            .await
            .expect("listen");
        assert_eq!(resp.status(), 200);
        ListenStream {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
            raw: String::new(),
        }
    }

    /// The next event's JSON data (within 15 s).
    async fn next_frame(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(v) = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .find_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                {
                    return v;
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("listen frames in time; read so far:\n{}", self.raw))
                .expect("stream open")
                .expect("chunk");
            let text = String::from_utf8_lossy(&chunk);
            self.raw.push_str(&text);
            self.buf.push_str(&text);
        }
    }
}

mcpgw_e2e::per_engine!(both_eras_through_one_endpoint);

async fn both_eras_through_one_endpoint(engine: Engine) {
    let stack = EraStack::start(engine).await;
    let url = stack.url();
    let (pinned, auto, legacy) = tokio::join!(
        run_client(&url, V, "pinned"),
        run_client(&url, "auto", "auto"),
        run_client(&url, "legacy", "legacy"),
    );
    check_modern(&pinned, "pinned", false, engine);
    check_modern(&auto, "auto", true, engine);
    check_legacy(&legacy);
    error_cases(&url).await;
    mrtr_state(&url).await;
    routing_and_logging(&url).await;
    listen_streams(&url, engine).await;
    stack.envoy.assert_log_clean();
    let _ = (stack.py.log(), stack.legacy.log());
}
