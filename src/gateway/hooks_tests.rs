//! The hooks driven through the fake host's stream, as an adapter drives
//! them: what each hook reads, holds, sends and resumes.

use super::*;
use crate::gateway::host::header;
use crate::gateway::testing::{gateway, json_response, FakeHost};
use crate::gateway::Gateway;
use serde_json::{json, Value};
use std::sync::Arc;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// `alpha` prefixed, `gamma` and `delta` bare (bare names need look-ups).
const BACKENDS: &str = r#"[{"name":"alpha","cluster":"c_alpha"},{"name":"gamma","cluster":"c_gamma","prefix":"never"},{"name":"delta","cluster":"c_delta","prefix":"never"}]"#;

fn request(method: &str, session: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = [
        (":method", method),
        (":path", "/mcp"),
        (":authority", "localhost:1975"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(s) = session {
        h.push(("mcp-session-id".into(), s.into()));
    }
    h
}

/// One POST through the request hooks; the body arrives in two chunks.
fn post(
    gw: &Arc<Gateway>,
    host: &mut FakeHost,
    session: Option<&str>,
    msg: Value,
) -> (Exchange, Flow) {
    host.request_headers = request("POST", session);
    host.request_body = msg.to_string().into_bytes();
    host.sent.clear();
    let mut ex = Exchange::new(gw.clone());
    assert_eq!(
        ex.request_headers(host, false),
        Flow::Stop,
        "held for the body"
    );
    let size = host.request_body.len();
    assert_eq!(ex.request_body(host, size / 2, false), Flow::Stop);
    let flow = ex.request_body(host, size, true);
    (ex, flow)
}

/// Answer every pending side call through `call_done`.
fn answer_calls(ex: &mut Exchange, host: &mut FakeHost, answer: impl Fn(&str, &Value) -> Value) {
    for (id, call) in std::mem::take(&mut host.calls) {
        let req: Value = serde_json::from_slice(&call.body).unwrap_or(Value::Null);
        let body = answer(&call.cluster, &req).to_string();
        ex.call_done(host, id, json_response(&body));
    }
}

fn initialize(gw: &Arc<Gateway>, host: &mut FakeHost) -> String {
    let (mut ex, flow) = post(
        gw,
        host,
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    assert_eq!(flow, Flow::Stop, "waiting for the fan-out");
    assert_eq!(host.calls.len(), 3);
    answer_calls(
        &mut ex,
        host,
        |cluster, req| json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":cluster}}}),
    );
    assert_eq!(host.resumed, 0, "answered here, not resumed upstream");
    let [r] = host.sent.clone().try_into().expect("one answer");
    assert_eq!(r.status, 200);
    // The gateway's own reply passes through the response hooks untouched.
    host.response_headers = r.headers.clone();
    assert_eq!(ex.response_headers(host, false), Flow::Continue);
    assert_eq!(ex.response_body(host, r.body.len(), true), Flow::Continue);
    ex.stream_done(host);
    header(&r.headers, "mcp-session-id").unwrap().to_string()
}

/// A gateway of [`BACKENDS`] and a session with all of them.
fn with_session() -> (Arc<Gateway>, FakeHost, String) {
    let gw = Arc::new(gateway(BACKENDS));
    let mut host = FakeHost::default();
    let sid = initialize(&gw, &mut host);
    (gw, host, sid)
}

#[test]
fn routed_call_is_rewritten_on_the_way_up_and_held_whole_on_the_way_back() {
    let (gw, mut host, sid) = with_session();
    let (mut ex, flow) = post(
        &gw,
        &mut host,
        Some(&sid),
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}),
    );
    assert_eq!(flow, Flow::Continue, "routed on");
    assert_eq!(
        header(&host.request_headers, "x-mcpgw-cluster"),
        Some("c_alpha")
    );
    assert_eq!(
        header(&host.request_headers, "mcp-session-id"),
        None,
        "the gateway's session id never reaches a backend"
    );
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(
        sent["params"]["name"], "echo",
        "un-prefixed for the backend"
    );
    assert_eq!(
        header(&host.request_headers, "content-length"),
        Some(host.request_body.len().to_string().as_str())
    );
    assert_eq!(host.resumed, 0, "nothing was waited for");

    // A JSON answer: held until its end, then judged as a whole.
    host.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
        ("content-length".into(), "99".into()),
        ("mcp-session-id".into(), "backend-secret".into()),
    ];
    assert_eq!(ex.response_headers(&mut host, false), Flow::Continue);
    assert_eq!(header(&host.response_headers, "content-length"), None);
    assert_eq!(header(&host.response_headers, "mcp-session-id"), None);
    host.response_body = br#"{"jsonrpc":"2.0","id":7,"re"#.to_vec();
    let n = host.response_body.len();
    assert_eq!(ex.response_body(&mut host, n, false), Flow::Stop);
    host.response_body = br#"{"jsonrpc":"2.0","id":99,"result":{}}"#.to_vec();
    let n = host.response_body.len();
    assert_eq!(ex.response_body(&mut host, n, true), Flow::Continue);
    let v: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(
        v["id"], 7,
        "another request's answer never reaches the client"
    );
    assert_eq!(v["error"]["code"], crate::protocol::jsonrpc::BACKEND_ERROR);
    ex.stream_done(&mut host);
    assert_eq!(
        host.stream_ids_asked.get(),
        0,
        "a request that waited on nothing needs no id to be woken by"
    );
    assert_eq!(
        host.published
            .borrow()
            .get("mcpgw.error")
            .map(String::as_str),
        None,
        "fields are published when the response starts"
    );
}

#[test]
fn a_body_over_the_limit_is_refused_while_it_arrives() {
    let gw = Arc::new(crate::gateway::testing::gateway_with(
        BACKENDS,
        r#","max_request_bytes":100"#,
    ));
    let mut host = FakeHost::default();
    host.request_headers = request("POST", None);
    let mut ex = Exchange::new(gw);
    assert_eq!(ex.request_headers(&mut host, false), Flow::Stop);
    assert_eq!(ex.request_body(&mut host, 60, false), Flow::Stop);
    assert!(host.sent.is_empty());
    assert_eq!(ex.request_body(&mut host, 160, false), Flow::Stop);
    let [r] = host.sent.as_slice() else {
        panic!("{:?}", host.sent)
    };
    assert_eq!(r.status, 413);
    // Nothing more is read or sent for this request.
    assert_eq!(ex.request_body(&mut host, 260, true), Flow::Continue);
    assert_eq!(host.sent.len(), 1);
}

#[test]
fn a_request_held_for_a_look_up_is_resumed_to_its_backend() {
    let (gw, mut host, sid) = with_session();
    // `shared` is a bare name both gamma and delta could own: ask their lists.
    let (mut ex, flow) = post(
        &gw,
        &mut host,
        Some(&sid),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"shared"}}),
    );
    assert_eq!(flow, Flow::Stop);
    let clusters: Vec<String> = host.calls.iter().map(|(_, c)| c.cluster.clone()).collect();
    assert_eq!(clusters, ["c_gamma", "c_delta"]);
    answer_calls(&mut ex, &mut host, |cluster, req| {
        let tools = if cluster == "c_delta" {
            json!([{"name":"shared","inputSchema":{"type":"object"}}])
        } else {
            json!([])
        };
        json!({"jsonrpc":"2.0","id":req["id"],"result":{"tools":tools}})
    });
    assert!(host.sent.is_empty(), "{:?}", host.sent);
    assert_eq!(host.resumed, 1, "the held request goes on");
    assert_eq!(
        header(&host.request_headers, "x-mcpgw-cluster"),
        Some("c_delta")
    );
}

#[test]
fn a_failed_backend_is_replaced_and_its_body_never_read() {
    let (gw, mut host, sid) = with_session();
    let (mut ex, _) = post(
        &gw,
        &mut host,
        Some(&sid),
        json!({"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"alpha__echo"}}),
    );
    host.response_headers = vec![
        (":status".into(), "503".into()),
        ("content-type".into(), "text/plain".into()),
    ];
    assert_eq!(ex.response_headers(&mut host, false), Flow::Stop);
    let [r] = host.sent.as_slice() else {
        panic!("{:?}", host.sent)
    };
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((r.status, v["id"].as_str()), (200, Some("x")));
    // FakeHost::body would fail on a size that is not there: it is not read.
    assert_eq!(ex.response_body(&mut host, 12345, true), Flow::Continue);
}

#[test]
fn other_paths_pass_with_only_the_route_header_removed() {
    let gw = Arc::new(gateway(BACKENDS));
    let mut host = FakeHost::default();
    host.request_headers = request("GET", None);
    host.request_headers[1].1 = "/healthz".into();
    host.request_headers
        .push(("x-mcpgw-cluster".into(), "c_alpha".into()));
    let mut ex = Exchange::new(gw);
    assert_eq!(ex.request_headers(&mut host, true), Flow::Continue);
    assert_eq!(header(&host.request_headers, "x-mcpgw-cluster"), None);
    assert_eq!(ex.request_body(&mut host, 5, true), Flow::Continue);
    host.response_headers = vec![(":status".into(), "200".into())];
    assert_eq!(ex.response_headers(&mut host, true), Flow::Continue);
    assert_eq!(ex.response_body(&mut host, 5, true), Flow::Continue);
}
