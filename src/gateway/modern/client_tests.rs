//! 2026-07-28 requests driven through a fake host: what the gateway decides,
//! and what it sends where, for each era of client and backend.

use super::*;
use crate::gateway::host::{
    header, BodyAction as B, CallResponse, HeadersAction as H, Outbound, ResponseBodyAction,
    ResponseHeadersAction, StreamStart,
};
use crate::gateway::instance::Gateway;
use crate::gateway::modern::eras::{BackendInfo, Held, Learned};
use crate::gateway::modern::state::RequestState;
use crate::gateway::testing::{gateway, json_response, request_headers, FakeHost};
use serde_json::{json, Value};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// `m` speaks 2026-07-28 (prefixed: `m__echo`), `old` only 2025-06-18.
const MIXED: &str = r#"[{"name":"m","cluster":"c_m"},{"name":"old","cluster":"c_old"}]"#;

struct H2 {
    gw: Arc<Gateway>,
    host: FakeHost,
}

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}})
}

fn req(id: Value, method: &str, mut params: Value) -> Value {
    params["_meta"] = meta();
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
}

fn body_of(r: &LocalResponse) -> Value {
    let text = String::from_utf8_lossy(&r.body);
    // SSE-wrapped answers: the last data line.
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap_or(&text);
    serde_json::from_str(json).unwrap_or(Value::Null)
}

impl H2 {
    fn new(backends: &str) -> H2 {
        H2 {
            gw: Arc::new(gateway(backends)),
            host: FakeHost::default(),
        }
    }

    fn learn_modern(&self, i: usize, caps: Value) {
        self.gw.eras.set_learned(
            i,
            Learned {
                modern: true,
                legacy: true,
                info: BackendInfo {
                    capabilities: caps.as_object().cloned().unwrap_or_default(),
                    cache: Some(crate::gateway::modern::cache::CacheHint {
                        ttl_ms: 60_000,
                        private: false,
                    }),
                    ..Default::default()
                },
                learned_ms: self.host.now_ms(),
                held: None,
            },
        );
    }

    fn learn_legacy(&self, i: usize) {
        self.gw.eras.set_learned(
            i,
            Learned {
                modern: false,
                legacy: true,
                info: BackendInfo {
                    capabilities: json!({"tools":{"listChanged":true},"logging":{}})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    ..Default::default()
                },
                learned_ms: 0,
                held: Some(Held {
                    session_id: Some("held-1".into()),
                    version: Version::V2025_06_18,
                }),
            },
        );
    }

    /// A 2026-07-28 client's headers (its version unless `extra` sets one).
    fn headers(method: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = extra.to_vec();
        if !extra.iter().any(|(k, _)| *k == "mcp-protocol-version") {
            h.insert(0, ("mcp-protocol-version", "2026-07-28"));
        }
        request_headers(method, &h)
    }

    /// POST a 2026-07-28 message with its routing headers (from the body
    /// unless given); the exchange and what the gateway decided.
    fn post(&mut self, msg: &Value, extra: &[(&str, &str)]) -> (Exchange, Result<B, H>) {
        let mut extra: Vec<(&str, &str)> = extra.to_vec();
        let method = msg["method"].as_str().unwrap_or("").to_string();
        let name = msg["params"]["name"]
            .as_str()
            .or(msg["params"]["uri"].as_str())
            .map(crate::protocol::modern::encode_header_value);
        if !extra.iter().any(|(k, _)| *k == "mcp-method") && !method.is_empty() {
            extra.push(("mcp-method", &method));
        }
        if let Some(n) = &name {
            if !extra.iter().any(|(k, _)| *k == "mcp-name") {
                extra.push(("mcp-name", n));
            }
        }
        let mut ex = Exchange::new(self.gw.clone());
        match ex.on_request_headers(&mut self.host, &Self::headers("POST", &extra), false) {
            H::NeedBody => {}
            other => return (ex, Err(other)),
        }
        let a = ex.on_request_body(&mut self.host, msg.to_string().as_bytes());
        (ex, Ok(a))
    }

    /// The backend answers the routed request with this event stream; what
    /// the client gets.
    fn stream_back(&mut self, ex: &mut Exchange, sse: &[u8], end: bool) -> Vec<u8> {
        ex.on_response_headers(
            &mut self.host,
            &[
                (":status".into(), "200".into()),
                ("content-type".into(), "text/event-stream".into()),
            ],
        );
        match ex.on_response_body(&mut self.host, sse, end) {
            ResponseBodyAction::Replace(out) => out,
            other => panic!("{other:?}"),
        }
    }

    fn answer(
        &mut self,
        ex: &mut Exchange,
        answer: impl Fn(&Outbound, &Value) -> CallResponse,
    ) -> B {
        let mut last = B::Wait;
        // Answering may dispatch more calls (learning steps): loop until none.
        loop {
            let calls: Vec<(u64, Outbound)> = std::mem::take(&mut self.host.calls);
            if calls.is_empty() {
                return last;
            }
            for (token, call) in calls {
                let body: Value = serde_json::from_slice(&call.body).unwrap_or(Value::Null);
                last = ex.on_call_response(&mut self.host, token, answer(&call, &body));
            }
        }
    }
}

fn respond(a: Result<B, H>) -> LocalResponse {
    match a {
        Ok(B::Respond(r)) | Err(H::Respond(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn validation_failures_answer_with_the_specified_codes() {
    let mut h = H2::new(MIXED);
    // Header and body disagree.
    let (_, a) = h.post(
        &req(json!(1), "tools/call", json!({"name":"m__echo"})),
        &[("mcp-name", "m__other")],
    );
    let r = respond(a);
    assert_eq!(
        (
            r.status,
            body_of(&r)["error"]["code"].as_i64(),
            body_of(&r)["id"].as_i64()
        ),
        (400, Some(-32020), Some(1))
    );
    // Missing _meta.
    let (_, a) = h.post(
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}),
        &[],
    );
    let r = respond(a);
    assert_eq!(
        (r.status, body_of(&r)["error"]["code"].as_i64()),
        (400, Some(-32602))
    );
    // Removed methods.
    let (_, a) = h.post(&req(json!(3), "ping", json!({})), &[]);
    let r = respond(a);
    assert_eq!(
        (r.status, body_of(&r)["error"]["code"].as_i64()),
        (404, Some(-32601))
    );
    // Unknown version, with the versions served.
    let (_, a) = h.post(
        &req(json!(4), "tools/list", json!({})),
        &[("mcp-protocol-version", "2030-01-01")],
    );
    let r = respond(a);
    let b = body_of(&r);
    assert_eq!((r.status, b["error"]["code"].as_i64()), (400, Some(-32022)));
    assert_eq!(b["error"]["data"]["requested"], "2030-01-01");
    // Notifications: 202; responses: 400; GET/DELETE: 405.
    let (_, a) = h.post(
        &json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}),
        &[],
    );
    assert_eq!(respond(a).status, 202);
    let (_, a) = h.post(&json!({"jsonrpc":"2.0","id":5,"result":{}}), &[]);
    assert_eq!(respond(a).status, 400);
    for m in ["GET", "DELETE"] {
        let mut ex = Exchange::new(h.gw.clone());
        let H::Respond(r) = ex.on_request_headers(
            &mut h.host,
            &H2::headers(m, &[("mcp-session-id", "x")]),
            true,
        ) else {
            panic!()
        };
        assert_eq!(r.status, 405);
        assert_eq!(header(&r.headers, "allow"), Some("POST"));
    }
    assert!(h.host.calls.is_empty(), "nothing reached a backend");
}

#[test]
fn discover_learns_each_backends_era_once() {
    let mut h = H2::new(MIXED);
    let (mut ex, a) = h.post(&req(json!("d1"), "server/discover", json!({})), &[]);
    assert_eq!(a, Ok(B::Wait));
    for c in ["c_m", "c_old"] {
        let (_, call) = h.host.call_to(c);
        assert_eq!(header(&call.headers, "mcp-method"), Some("server/discover"));
        assert_eq!(
            header(&call.headers, "mcp-protocol-version"),
            Some("2026-07-28")
        );
    }
    let r = h.answer(&mut ex, |call, body| {
        let method = body["method"].as_str().unwrap_or("notification").to_string();
        let cluster = call.cluster.clone();
        match (cluster.as_str(), method.as_str()) {
            ("c_m", "server/discover") => json_response(&json!({"jsonrpc":"2.0","id":body["id"],"result":{
                "resultType":"complete","supportedVersions":["2026-07-28"],
                "capabilities":{"tools":{"listChanged":true}},"instructions":"modern one",
                "ttlMs":60000,"cacheScope":"public"}}).to_string()),
            ("c_old", "server/discover") => {
                let mut r = json_response(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#);
                r.status = 400;
                r
            }
            ("c_old", "initialize") => {
                assert_eq!(body["params"]["capabilities"], json!({}));
                let mut r = json_response(&json!({"jsonrpc":"2.0","id":body["id"],"result":{
                    "protocolVersion":"2025-06-18","capabilities":{"prompts":{}},"serverInfo":{"name":"old"}}}).to_string());
                r.headers.push(("mcp-session-id".into(), "held-7".into()));
                r
            }
            ("c_old", _) => {
                assert_eq!(header(&call.headers, "mcp-session-id"), Some("held-7"));
                CallResponse { status: 202, ..Default::default() }
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let B::Respond(r) = r else { panic!("{r:?}") };
    let b = body_of(&r);
    assert_eq!(b["id"], "d1");
    assert_eq!(b["result"]["supportedVersions"][0], "2026-07-28");
    assert_eq!(b["result"]["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(b["result"]["capabilities"]["prompts"], json!({}));
    assert_eq!(b["result"]["instructions"], "## m\nmodern one");
    assert_eq!(b["result"]["cacheScope"], "public");
    // Learned: the next discover is answered without a call.
    let (_, a) = h.post(&req(json!("d2"), "server/discover", json!({})), &[]);
    assert_eq!(
        body_of(&respond(a))["result"]["supportedVersions"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert!(h.host.calls.is_empty());
}

#[test]
fn lists_reach_each_backend_in_its_era_with_hints_merged() {
    let mut h = H2::new(MIXED);
    h.learn_modern(0, json!({"tools":{}}));
    h.learn_legacy(1);
    let (mut ex, a) = h.post(
        &req(json!(7), "tools/list", json!({})),
        &[("mcp-session-id", "ignored"), ("last-event-id", "x")],
    );
    assert_eq!(a, Ok(B::Wait));
    let (_, to_m) = h.host.call_to("c_m");
    assert_eq!(
        header(&to_m.headers, "mcp-protocol-version"),
        Some("2026-07-28")
    );
    assert_eq!(header(&to_m.headers, "mcp-method"), Some("tools/list"));
    assert_eq!(header(&to_m.headers, "mcp-session-id"), None);
    let (_, to_old) = h.host.call_to("c_old");
    assert_eq!(header(&to_old.headers, "mcp-session-id"), Some("held-1"));
    assert_eq!(
        header(&to_old.headers, "mcp-protocol-version"),
        Some("2025-06-18")
    );
    let B::Respond(r) = h.answer(&mut ex, |call, body| {
        let result = if call.cluster == "c_m" {
            json!({"tools":[{"name":"echo","inputSchema":{}}],"resultType":"complete","ttlMs":30000,"cacheScope":"public"})
        } else {
            json!({"tools":[{"name":"old_tool","inputSchema":{}}]})
        };
        json_response(&json!({"jsonrpc":"2.0","id":body["id"],"result":result}).to_string())
    }) else {
        panic!()
    };
    let b = body_of(&r);
    let names: Vec<&str> = b["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["m__echo", "old__old_tool"]);
    assert_eq!(b["result"]["resultType"], "complete");
    assert_eq!(
        (
            b["result"]["ttlMs"].as_u64(),
            b["result"]["cacheScope"].as_str()
        ),
        (Some(0), Some("private")),
        "the 2025 backend gave no hints"
    );
    assert_eq!(
        b["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcpgw"
    );
}

#[test]
fn an_unprefixed_modern_backend_is_routed_from_the_headers_alone() {
    let mut h = H2::new(
        r#"[{"name":"m","cluster":"c_m","prefix":"never"},{"name":"old","cluster":"c_old"}]"#,
    );
    h.learn_modern(0, json!({"tools":{}}));
    h.learn_legacy(1);
    let mut ex = Exchange::new(h.gw.clone());
    let a = ex.on_request_headers(
        &mut h.host,
        &H2::headers(
            "POST",
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
                ("mcp-session-id", "s"),
                ("mcp-param-region", "eu"),
            ],
        ),
        false,
    );
    let H::Continue(ops) = a else { panic!("{a:?}") };
    let set = |n: &str| {
        ops.iter().find_map(|o| match o {
            HeaderOp::Set(k, v) if k == n => Some(v.clone()),
            _ => None,
        })
    };
    assert_eq!(set("x-mcpgw-cluster").as_deref(), Some("c_m"));
    assert_eq!(set("mcp-protocol-version").as_deref(), Some("2026-07-28"));
    assert!(ops.contains(&HeaderOp::Remove("mcp-session-id".into())));
    assert!(
        !ops.iter().any(
            |o| matches!(o, HeaderOp::Remove(k) | HeaderOp::Set(k, _) if k.starts_with("mcp-param"))
        ),
        "Mcp-Param-* untouched"
    );
    // The first response is the answer (the id was never read); resultType added.
    let hs = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ],
    );
    assert!(matches!(hs, ResponseHeadersAction::Buffer(_)));
    let out = ex.on_response_body(
        &mut h.host,
        br#"{"jsonrpc":"2.0","id":"c-9","result":{"content":[]}}"#,
        true,
    );
    let ResponseBodyAction::Replace(b) = out else {
        panic!("{out:?}")
    };
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["result"]["resultType"].as_str()),
        (Some("c-9"), Some("complete"))
    );
    // A prefixed backend this worker has not learned yet: never taken for
    // the unprefixed one's; the body is read (and the backend learned).
    let mut ex = Exchange::new(h.gw.clone());
    h.gw.eras.forget(1);
    let a = ex.on_request_headers(
        &mut h.host,
        &H2::headers(
            "POST",
            &[("mcp-method", "tools/call"), ("mcp-name", "old__old_tool")],
        ),
        false,
    );
    assert_eq!(a, H::NeedBody);
    h.learn_legacy(1);
    // A prefixed backend's tool needs its body rewritten: read first.
    let mut ex = Exchange::new(h.gw.clone());
    let a = ex.on_request_headers(
        &mut h.host,
        &H2::headers(
            "POST",
            &[("mcp-method", "tools/call"), ("mcp-name", "old__old_tool")],
        ),
        false,
    );
    assert_eq!(a, H::NeedBody);
}

#[test]
fn mrtr_state_is_sealed_checked_and_unwrapped() {
    let mut h = H2::new(MIXED);
    h.learn_modern(0, json!({"tools":{}}));
    h.learn_legacy(1);
    let call = req(
        json!(1),
        "tools/call",
        json!({"name":"m__confirm","arguments":{"x":1}}),
    );
    let (mut ex, a) = h.post(&call, &[]);
    let Ok(B::Forward {
        headers,
        body: Some(body),
    }) = a
    else {
        panic!("{a:?}")
    };
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["params"]["name"], "confirm");
    assert!(
        headers.contains(&HeaderOp::Set("mcp-name".into(), "confirm".into())),
        "header says what the body says"
    );
    let out = h.stream_back(&mut ex, b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resultType\":\"input_required\",\"requestState\":\"theirs\",\"inputRequests\":{\"k\":{\"method\":\"elicitation/create\",\"params\":{\"message\":\"ok?\",\"requestedSchema\":{}}}}}}\n\n", true);
    let text = String::from_utf8(out).unwrap();
    let data: Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    let token = data["result"]["requestState"].as_str().unwrap().to_string();
    assert!(token.starts_with(super::super::state::PREFIX));
    assert_eq!(
        RequestState::open(&h.gw.cfg.keys, &token, h.host.now_ms())
            .unwrap()
            .original
            .as_deref(),
        Some("theirs")
    );
    // The retry (new id) reaches m with m's own state.
    let mut retry = req(
        json!(2),
        "tools/call",
        json!({"name":"m__confirm","arguments":{"x":1},"inputResponses":{"k":{"action":"accept"}}}),
    );
    retry["params"]["requestState"] = json!(token);
    let (_, a) = h.post(&retry, &[]);
    let Ok(B::Forward {
        body: Some(body), ..
    }) = a
    else {
        panic!("{a:?}")
    };
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            sent["params"]["requestState"].as_str(),
            sent["params"]["name"].as_str()
        ),
        (Some("theirs"), Some("confirm"))
    );
    assert_eq!(sent["params"]["inputResponses"]["k"]["action"], "accept");
    // Tampered, or for other arguments: refused before any backend.
    let mut bad = token.clone().into_bytes();
    let mid = bad.len() / 2;
    bad[mid] = if bad[mid] == b'A' { b'B' } else { b'A' };
    for (state, args) in [
        (String::from_utf8(bad).unwrap(), json!({"x":1})),
        (token.clone(), json!({"x":2})),
        ("theirs".to_string(), json!({"x":1})),
    ] {
        let mut r = req(
            json!(3),
            "tools/call",
            json!({"name":"m__confirm","arguments":args}),
        );
        r["params"]["requestState"] = json!(state);
        let (_, a) = h.post(&r, &[]);
        let r = respond(a);
        assert_eq!(
            (r.status, body_of(&r)["error"]["code"].as_i64()),
            (400, Some(-32602))
        );
    }
}

#[test]
fn a_2025_backends_request_to_a_modern_client_is_refused_for_it() {
    let mut h = H2::new(MIXED);
    h.learn_modern(0, json!({"tools":{}}));
    h.learn_legacy(1);
    let (mut ex, a) = h.post(
        &req(json!(1), "tools/call", json!({"name":"old__ask"})),
        &[],
    );
    assert!(matches!(a, Ok(B::Forward { .. })));
    let out = h.stream_back(&mut ex, b"id: e1\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"elicitation/create\",\"params\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"error\",\"data\":\"x\"}}\n\n", false);
    assert!(
        out.is_empty(),
        "neither the request nor an unasked log reaches the client: {}",
        String::from_utf8_lossy(&out)
    );
    let (_, refusal) = h.host.call_to("c_old");
    assert_eq!(header(&refusal.headers, "mcp-session-id"), Some("held-1"));
    let v: Value = serde_json::from_slice(&refusal.body).unwrap();
    assert_eq!(
        (v["id"].as_i64(), v["error"]["code"].as_i64()),
        (Some(0), Some(-32601))
    );
}

/// Stateless clients share the session held with a 2025-era backend, and
/// reuse ids: each request goes there with an id of its own, and each client
/// gets its answer under its own id.
#[test]
fn requests_through_a_held_session_never_share_an_id() {
    let mut h = H2::new(MIXED);
    h.learn_modern(0, json!({"tools":{}}));
    h.learn_legacy(1);
    let call = req(json!(7), "tools/call", json!({"name":"old__echo"}));
    let (mut first, a1) = h.post(&call, &[]);
    let (_, a2) = h.post(&call, &[]);
    let sent_id = |a: &Result<B, H>| -> Value {
        let Ok(B::Forward {
            body: Some(body), ..
        }) = a
        else {
            panic!("{a:?}")
        };
        serde_json::from_slice::<Value>(body).unwrap()["id"].clone()
    };
    let (id1, id2) = (sent_id(&a1), sent_id(&a2));
    assert_ne!(id1, json!(7));
    assert_ne!(id1, id2, "one held session, two requests in flight");
    let answer = format!(
        "data: {}\n\n",
        json!({"jsonrpc":"2.0","id":id1,"result":{"content":[]}})
    );
    let out = h.stream_back(&mut first, answer.as_bytes(), true);
    let f = frames(&out);
    assert_eq!(
        (f[0]["id"].clone(), f[0]["result"]["resultType"].clone()),
        (json!(7), json!("complete"))
    );
    // A list fan-out through the held session: numbered too.
    let (_, a) = h.post(&req(json!(7), "tools/list", json!({})), &[]);
    assert_eq!(a, Ok(B::Wait));
    let (_, to_old) = h.host.call_to("c_old");
    let v: Value = serde_json::from_slice(&to_old.body).unwrap();
    assert!(
        v["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("mcpgw-held-")),
        "{v}"
    );
}

#[test]
fn listen_follows_the_one_backend_that_can_honour_it() {
    let mut h = H2::new(MIXED);
    h.learn_modern(
        0,
        json!({"tools":{"listChanged":true},"resources":{"subscribe":true}}),
    );
    h.learn_legacy(1);
    let listen = req(
        json!("L"),
        "subscriptions/listen",
        json!({"notifications":{"toolsListChanged":true,"promptsListChanged":true,"resourceSubscriptions":["m+x://1","old+y://2"]}}),
    );
    let (_, a) = h.post(&listen, &[]);
    let Ok(B::Forward {
        body: Some(body),
        headers,
    }) = a
    else {
        panic!("{a:?}")
    };
    assert!(headers.contains(&HeaderOp::Set("x-mcpgw-cluster".into(), "c_m".into())));
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        sent["params"]["notifications"],
        json!({"toolsListChanged":true,"resourceSubscriptions":["x://1"]})
    );
    // Nothing honourable: acknowledged empty and closed by the gateway.
    let (_, a) = h.post(
        &req(
            json!("L2"),
            "subscriptions/listen",
            json!({"notifications":{"promptsListChanged":true}}),
        ),
        &[],
    );
    let r = respond(a);
    assert_eq!(
        header(&r.headers, "content-type"),
        Some("text/event-stream")
    );
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("notifications/subscriptions/acknowledged")
            && text.contains("\"notifications\":{}")
    );
    assert!(text.contains("\"id\":\"L2\""));
}

/// The data of each event in `data`, parsed.
fn frames(data: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn listen_merges_every_backend_that_serves_it_on_a_streaming_host() {
    let mut h = H2::new(r#"[{"name":"m","cluster":"c_m"},{"name":"n","cluster":"c_n"}]"#);
    h.host.streaming = true;
    h.learn_modern(
        0,
        json!({"tools":{"listChanged":true},"resources":{"subscribe":true}}),
    );
    h.learn_modern(
        1,
        json!({"tools":{"listChanged":true},"prompts":{"listChanged":true}}),
    );
    let listen = req(
        json!("L"),
        "subscriptions/listen",
        json!({"notifications":{"toolsListChanged":true,"promptsListChanged":true,"resourceSubscriptions":["m+x://1"]}}),
    );
    let (mut ex, a) = h.post(&listen, &[]);
    assert_eq!(a, Ok(B::Wait));
    let (m, to_m) = h.host.stream_to("c_m");
    let (n, to_n) = h.host.stream_to("c_n");
    let asked = |o: &Outbound| -> Value {
        serde_json::from_slice::<Value>(&o.body).unwrap()["params"]["notifications"].clone()
    };
    assert_eq!(
        asked(to_m),
        json!({"toolsListChanged":true,"resourceSubscriptions":["x://1"]})
    );
    assert_eq!(
        asked(to_n),
        json!({"toolsListChanged":true,"promptsListChanged":true})
    );
    for o in [to_m, to_n] {
        assert_eq!(
            header(&o.headers, "mcp-method"),
            Some("subscriptions/listen")
        );
        assert_eq!(
            header(&o.headers, "mcp-protocol-version"),
            Some("2026-07-28")
        );
        assert_eq!(header(&o.headers, "mcp-session-id"), None);
    }
    let sse = vec![
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "text/event-stream".to_string()),
    ];
    // n opens and talks while m has not answered: held.
    let out = ex.on_stream_headers(&mut h.host, n, &sse);
    assert!(out.start.is_none());
    let ack = r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{"toolsListChanged":true,"promptsListChanged":true}}}"#;
    let tools = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    let out = ex.on_stream_data(
        &mut h.host,
        n,
        format!("data: {ack}\n\ndata: {tools}\n\n").as_bytes(),
        false,
        false,
    );
    assert!(out.start.is_none() && out.data.is_empty());
    // m fails: the answer starts with the gateway's one acknowledgement of
    // what n was asked for, then what n said (its own ack dropped).
    let out = ex.on_stream_headers(&mut h.host, m, &[(":status".into(), "503".into())]);
    assert!(matches!(out.start, Some(StreamStart::Stream(_))), "{out:?}");
    assert_eq!(out.close, vec![m]);
    let f = frames(&out.data);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0]["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        f[0]["params"]["notifications"],
        json!({"toolsListChanged":true,"promptsListChanged":true})
    );
    assert_eq!(f[1]["method"], "notifications/tools/list_changed");
    for x in &f {
        assert_eq!(
            x["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "L"
        );
    }
    // n ends the subscription: its answer ends the client's stream.
    let end = r#"{"jsonrpc":"2.0","id":"L","result":{}}"#;
    let out = ex.on_stream_data(
        &mut h.host,
        n,
        format!("data: {end}\n\n").as_bytes(),
        true,
        false,
    );
    let f = frames(&out.data);
    assert_eq!(f[0]["id"], "L");
    assert_eq!(
        f[0]["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L"
    );
    assert!(out.end);

    // Every stream fails: one JSON-RPC error for the listen request.
    let (mut ex, _) = h.post(&listen, &[]);
    let ids: Vec<_> = h
        .host
        .streams
        .iter()
        .rev()
        .take(2)
        .map(|(i, _)| *i)
        .collect();
    let out = ex.on_stream_headers(&mut h.host, ids[0], &[(":status".into(), "500".into())]);
    assert!(out.start.is_none());
    let out = ex.on_stream_headers(&mut h.host, ids[1], &[(":status".into(), "502".into())]);
    let Some(StreamStart::Reply(r)) = out.start else {
        panic!("{out:?}")
    };
    let v = body_of(&r);
    assert_eq!(v["id"], "L");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("listen"),
        "{v}"
    );
    assert!(
        !crate::protocol::modern::is_reserved_code(v["error"]["code"].as_i64().unwrap()),
        "{v}"
    );
}

#[test]
fn a_2025_client_reaches_a_2026_only_backend() {
    let mut h = H2::new(MIXED);
    h.gw.eras.set_learned(
        0,
        Learned {
            modern: true,
            legacy: false,
            info: BackendInfo {
                capabilities: json!({"tools":{"listChanged":true}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                ..Default::default()
            },
            learned_ms: h.host.now_ms(),
            held: None,
        },
    );
    let mut ex = Exchange::new(h.gw.clone());
    let legacy = |extra: &[(&str, &str)]| {
        let mut hd = H2::headers("POST", extra);
        hd.retain(|(k, _)| k != "mcp-protocol-version");
        hd
    };
    assert_eq!(
        ex.on_request_headers(&mut h.host, &legacy(&[]), false),
        H::NeedBody
    );
    let a = ex.on_request_body(
        &mut h.host,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}).to_string().as_bytes(),
    );
    assert_eq!(a, B::Wait);
    assert_eq!(
        h.host.calls.len(),
        2,
        "every backend is offered the handshake"
    );
    let B::Respond(r) = h.answer(&mut ex, |call, body| {
        if call.cluster == "c_m" {
            // A 2026-07-28-only server refuses the handshake.
            let mut r = json_response(&json!({"jsonrpc":"2.0","id":body["id"],"error":{"code":-32601,"message":"Method not found"}}).to_string());
            r.status = 404;
            return r;
        }
        json_response(&json!({"jsonrpc":"2.0","id":body["id"],"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"old"}}}).to_string())
    }) else {
        panic!()
    };
    let init = body_of(&r);
    assert!(
        init["result"]["capabilities"]["tools"]
            .get("listChanged")
            .is_none(),
        "not deliverable to a 2025 session"
    );
    let sid = header(&r.headers, "mcp-session-id").unwrap().to_string();
    let mut ex = Exchange::new(h.gw.clone());
    assert_eq!(
        ex.on_request_headers(
            &mut h.host,
            &legacy(&[
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "2025-06-18")
            ]),
            false
        ),
        H::NeedBody
    );
    let a = ex.on_request_body(&mut h.host, br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"m__echo","arguments":{}}}"#);
    let B::Forward {
        headers,
        body: Some(body),
    } = a
    else {
        panic!("{a:?}")
    };
    assert!(headers.contains(&HeaderOp::Set(
        "mcp-protocol-version".into(),
        "2026-07-28".into()
    )));
    assert!(headers.contains(&HeaderOp::Set("mcp-method".into(), "tools/call".into())));
    assert!(headers.contains(&HeaderOp::Set("mcp-name".into(), "echo".into())));
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert_eq!(
        sent["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({})
    );
    // An input_required answer cannot be given to this client: an error says why.
    ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ],
    );
    let ResponseBodyAction::Replace(out) = ex.on_response_body(
        &mut h.host,
        br#"{"jsonrpc":"2.0","id":2,"result":{"resultType":"input_required","inputRequests":{}}}"#,
        true,
    ) else {
        panic!()
    };
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["code"], -32010);
}

#[test]
fn tasks_are_routed_by_their_sealed_id() {
    let mut h = H2::new(MIXED);
    h.learn_modern(
        0,
        json!({"tools":{},"extensions":{"io.modelcontextprotocol/tasks":{}}}),
    );
    h.learn_legacy(1);
    // A task created by a tools/call: its id is sealed for the client.
    let (mut ex, a) = h.post(
        &req(json!(1), "tools/call", json!({"name":"m__build"})),
        &[],
    );
    assert!(matches!(a, Ok(B::Forward { .. })));
    let out = h.stream_back(
        &mut ex,
        b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resultType\":\"task\",\"taskId\":\"t-9\",\"status\":\"working\"}}\n\n",
        true,
    );
    let text = String::from_utf8(out).unwrap();
    let v: Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    let sealed = v["result"]["taskId"].as_str().unwrap().to_string();
    assert_ne!(sealed, "t-9");
    // tasks/get by the sealed id (in Mcp-Name too): the backend gets its own.
    let get = req(json!(2), "tasks/get", json!({"taskId": sealed}));
    let (_, a) = h.post(&get, &[("mcp-name", &sealed)]);
    let Ok(B::Forward {
        headers,
        body: Some(body),
    }) = a
    else {
        panic!("{a:?}")
    };
    assert!(headers.contains(&HeaderOp::Set("x-mcpgw-cluster".into(), "c_m".into())));
    assert!(headers.contains(&HeaderOp::Set("mcp-name".into(), "t-9".into())));
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["params"]["taskId"], "t-9");
    // A forged id reaches nobody.
    let (_, a) = h.post(
        &req(json!(3), "tasks/get", json!({"taskId": "t-9"})),
        &[("mcp-name", "t-9")],
    );
    let r = respond(a);
    assert_eq!(
        (r.status, body_of(&r)["error"]["code"].as_i64()),
        (400, Some(-32602))
    );
}

/// The authorization policy decides for a 2026-07-28 client exactly as for a
/// session client: the list shows what a call would allow (and is private),
/// a refused call reaches no backend (its headers alone never route it), a
/// refused resource subscription is not honoured.
#[test]
fn the_policy_governs_the_2026_path_as_the_session_path() {
    let policy = r#","authorization":{"rules":[
        {"name":"echo","target":{"tools":[{"backend":"m","name":"echo"}]}},
        {"name":"ok docs","target":{"resources":[{"backend":"m","prefix":"x://ok/"}]}}
    ]}"#;
    let mut h = H2 {
        gw: Arc::new(crate::gateway::testing::gateway_with(
            r#"[{"name":"m","cluster":"c_m","prefix":"never"}]"#,
            policy,
        )),
        host: FakeHost::default(),
    };
    h.learn_modern(
        0,
        json!({"tools":{"listChanged":true},"resources":{"subscribe":true}}),
    );
    let (mut ex, a) = h.post(&req(json!(1), "tools/list", json!({})), &[]);
    assert_eq!(a, Ok(B::Wait));
    let B::Respond(r) = h.answer(&mut ex, |_, body| {
        let result = json!({"tools":[{"name":"echo","inputSchema":{}},{"name":"wipe","inputSchema":{}}],
            "resultType":"complete","ttlMs":30000,"cacheScope":"public"});
        json_response(&json!({"jsonrpc":"2.0","id":body["id"],"result":result}).to_string())
    }) else {
        panic!()
    };
    let b = body_of(&r);
    assert_eq!(b["result"]["tools"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["result"]["tools"][0]["name"], "echo");
    assert_eq!(b["result"]["cacheScope"], "private", "filtered per caller");
    // The refused call: the body is read (no header routing under a policy),
    // then 403 before any backend.
    let wipe = req(
        json!(2),
        "tools/call",
        json!({"name":"wipe","arguments":{}}),
    );
    let (_, a) = h.post(&wipe, &[]);
    let r = respond(a);
    assert_eq!(r.status, 403);
    assert!(h.host.calls.is_empty() && h.host.streams.is_empty());
    let v = body_of(&r);
    assert!(
        !crate::protocol::modern::is_reserved_code(v["error"]["code"].as_i64().unwrap()),
        "{v}"
    );
    // Not even learning the backend: refused before anything is asked.
    h.gw.eras.forget(0);
    let (_, a) = h.post(&wipe, &[]);
    assert_eq!(respond(a).status, 403);
    assert!(h.host.calls.is_empty() && h.host.streams.is_empty());
    h.learn_modern(
        0,
        json!({"tools":{"listChanged":true},"resources":{"subscribe":true}}),
    );
    // The allowed one is forwarded.
    let echo = req(
        json!(3),
        "tools/call",
        json!({"name":"echo","arguments":{}}),
    );
    let (_, a) = h.post(&echo, &[]);
    assert!(matches!(a, Ok(B::Forward { .. })), "{a:?}");
    // Listen: only the allowed URI is asked for and acknowledged.
    let listen = req(
        json!("L"),
        "subscriptions/listen",
        json!({"notifications":{"resourceSubscriptions":["x://ok/1","x://secret"]}}),
    );
    let (_, a) = h.post(&listen, &[]);
    let Ok(B::Forward {
        body: Some(body), ..
    }) = a
    else {
        panic!("{a:?}")
    };
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        sent["params"]["notifications"],
        json!({"resourceSubscriptions":["x://ok/1"]})
    );
}
