//! The request path driven through a fake host: what the gateway decides for
//! each kind of request, and what it sends where.

use super::*;
use crate::gateway::host::{
    Attribute, BodyAction as B, CallId, HeadersAction as H, Outbound, ResponseHeadersAction,
};
use crate::gateway::session::caps;
use crate::gateway::stats::{metric_name, names};
use crate::gateway::testing::{gateway, gateway_with, json_response, sse_response, FakeHost};
use crate::gateway::tokens::Wrapped;
use crate::protocol::jsonrpc::BACKEND_ERROR;
use serde_json::{json, Value};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TWO: &str = r#"[{"name":"alpha","cluster":"c_alpha","authority":"alpha.test","headers":{"authorization":"Bearer ${TOKEN}"},"tools":{"exclude":["admin_reset"]}},{"name":"beta","cluster":"c_beta","path":"/beta/mcp"}]"#;

fn hdrs(method: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    crate::gateway::testing::request_headers(method, extra)
}

fn body_of(r: &LocalResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

struct Harness {
    gw: Arc<Gateway>,
    host: FakeHost,
}

impl Harness {
    fn new(backends: &str) -> Self {
        Harness {
            gw: Arc::new(gateway(backends)),
            host: FakeHost::default(),
        }
    }

    /// POST a message; returns the exchange (for follow-up callbacks) and the body action.
    fn post(&mut self, session: Option<&str>, msg: Value) -> (Exchange, B) {
        self.post_with(session, &[], msg)
    }

    /// [`Harness::post`] with more request headers.
    fn post_with(
        &mut self,
        session: Option<&str>,
        more: &[(&str, &str)],
        msg: Value,
    ) -> (Exchange, B) {
        let mut extra = more.to_vec();
        if let Some(s) = session {
            extra.push(("mcp-session-id", s));
        }
        let mut ex = Exchange::new(self.gw.clone());
        match ex.on_request_headers(&mut self.host, &hdrs("POST", &extra), false) {
            H::NeedBody => {}
            H::Respond(r) => return (ex, B::Respond(r)),
            other => panic!("unexpected {other:?}"),
        }
        let a = ex.on_request_body(&mut self.host, msg.to_string().as_bytes());
        (ex, a)
    }

    /// Answer every pending call with `answer(cluster, body)`.
    fn answer(&mut self, ex: &mut Exchange, answer: impl Fn(&str, &Value) -> CallResponse) -> B {
        let calls: Vec<(CallId, Outbound)> = std::mem::take(&mut self.host.calls);
        let mut last = B::Wait;
        for (token, call) in calls {
            let body: Value = serde_json::from_slice(&call.body).unwrap_or(Value::Null);
            last = ex.on_call_response(&mut self.host, token, answer(&call.cluster, &body));
        }
        last
    }

    fn init_answer(cluster: &str, req: &Value) -> CallResponse {
        let result = json!({
            "protocolVersion": req["params"]["protocolVersion"],
            "capabilities": {"tools": {"listChanged": cluster == "c_alpha"}, "logging": {}},
            "serverInfo": {"name": cluster},
            "instructions": format!("use {cluster}"),
        });
        let msg = json!({"jsonrpc": "2.0", "id": req["id"], "result": result}).to_string();
        if cluster == "c_alpha" {
            let mut r = sse_response(&format!(
                "id: ev0\ndata:\n\nevent: message\ndata: {msg}\n\n"
            ));
            r.headers
                .push(("mcp-session-id".into(), "alpha-session-1".into()));
            r
        } else {
            json_response(&msg)
        }
    }

    /// A full initialize; returns the gateway session id.
    fn session(&mut self) -> String {
        let (mut ex, a) = self.post(
            None,
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
        );
        assert_eq!(a, B::Wait);
        let B::Respond(r) = self.answer(&mut ex, Self::init_answer) else {
            panic!()
        };
        r.headers
            .iter()
            .find(|(k, _)| k == "mcp-session-id")
            .map(|(_, v)| v.clone())
            .unwrap()
    }
}

fn op_set<'a>(ops: &'a [HeaderOp], name: &str) -> Option<&'a str> {
    ops.iter().find_map(|o| match o {
        HeaderOp::Set(k, v) if k == name => Some(v.as_str()),
        _ => None,
    })
}

fn op_removes(ops: &[HeaderOp], name: &str) -> bool {
    ops.iter()
        .any(|o| matches!(o, HeaderOp::Remove(k) if k == name))
}

#[test]
fn other_paths_pass_but_lose_the_route_header() {
    let mut h = Harness::new(TWO);
    let mut ex = Exchange::new(h.gw.clone());
    let mut headers = hdrs("GET", &[("x-mcpgw-cluster", "c_alpha")]);
    headers[1].1 = "/healthz".into();
    let a = ex.on_request_headers(&mut h.host, &headers, true);
    assert_eq!(
        a,
        H::Continue(vec![HeaderOp::Remove("x-mcpgw-cluster".into())])
    );
}

#[test]
fn transport_rules() {
    let mut h = Harness::new(TWO);
    let check = |h: &mut Harness, headers: Vec<(String, String)>, status: u16| {
        let mut ex = Exchange::new(h.gw.clone());
        match ex.on_request_headers(&mut h.host, &headers, false) {
            H::Respond(r) => {
                assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
                assert!(body_of(&r)["error"]["code"].is_i64());
            }
            other => panic!("expected {status}, got {other:?}"),
        }
    };
    let mut no_sse = hdrs("POST", &[]);
    no_sse[3].1 = "application/json".into();
    check(&mut h, no_sse, 406);
    let mut wrong_ct = hdrs("POST", &[]);
    wrong_ct[4].1 = "text/plain".into();
    check(&mut h, wrong_ct, 415);
    // A handshake-era version the gateway does not negotiate (an unknown
    // one takes the 2026-07-28 path, which answers -32022).
    check(
        &mut h,
        hdrs("POST", &[("mcp-protocol-version", "2024-11-05")]),
        400,
    );
    check(&mut h, hdrs("POST", &[("mcp-session-id", "forged")]), 404);
    check(&mut h, hdrs("POST", &[("content-length", "99999999")]), 413);
    // Beyond 32 bits (wasm32's usize) and beyond u64: still refused, early.
    check(
        &mut h,
        hdrs("POST", &[("content-length", "5000000000")]),
        413,
    );
    check(
        &mut h,
        hdrs("POST", &[("content-length", "999999999999999999999999")]),
        413,
    );
    check(&mut h, hdrs("PUT", &[]), 405);
    check(
        &mut h,
        hdrs("POST", &[("origin", "https://evil.example")]),
        403,
    );
    check(&mut h, hdrs("GET", &[]), 400);
    check(&mut h, hdrs("DELETE", &[]), 400);

    // Local pages talking to a local gateway are fine.
    let mut ex = Exchange::new(h.gw.clone());
    let a = ex.on_request_headers(
        &mut h.host,
        &hdrs("POST", &[("origin", "http://localhost:3000")]),
        false,
    );
    assert_eq!(a, H::NeedBody);
}

#[test]
fn bad_bodies_get_spec_errors() {
    let mut h = Harness::new(TWO);
    let cases: Vec<(&[u8], u16, i64)> = vec![
        (b"{not json", 400, -32700),
        (
            b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
            400,
            -32600,
        ),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1}", 400, -32600),
    ];
    for (body, status, code) in cases {
        let mut ex = Exchange::new(h.gw.clone());
        assert_eq!(
            ex.on_request_headers(&mut h.host, &hdrs("POST", &[]), false),
            H::NeedBody
        );
        let B::Respond(r) = ex.on_request_body(&mut h.host, body) else {
            panic!()
        };
        assert_eq!(r.status, status);
        assert_eq!(body_of(&r)["error"]["code"], code);
    }
    // No session on a non-initialize request.
    let (_, a) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":"s","method":"tools/list"}),
    );
    let B::Respond(r) = a else { panic!() };
    assert_eq!(r.status, 400);
    assert_eq!(body_of(&r)["id"], "s");
}

#[test]
fn discover_without_the_modern_headers_is_a_header_mismatch() {
    let mut h = Harness::new(TWO);
    let (_, a) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}),
    );
    let B::Respond(r) = a else { panic!() };
    assert_eq!(r.status, 400);
    let b = body_of(&r);
    assert_eq!(b["id"], 1);
    assert_eq!(b["error"]["code"], -32020);
}

#[test]
fn initialize_fans_out_and_seals_the_session() {
    let mut h = Harness::new(TWO);
    let (mut ex, a) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":"i1","method":"initialize","params":{"protocolVersion":"2026-07-28","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}),
    );
    assert_eq!(a, B::Wait);
    assert_eq!(h.host.calls.len(), 2);
    let (_, to_alpha) = h.host.call_to("c_alpha");
    assert_eq!(header(&to_alpha.headers, ":authority"), Some("alpha.test"));
    assert_eq!(
        header(&to_alpha.headers, "authorization"),
        Some("Bearer s3cret")
    );
    assert_eq!(header(&to_alpha.headers, ":path"), Some("/mcp"));
    let sent: Value = serde_json::from_slice(&to_alpha.body).unwrap();
    assert_eq!(
        sent["params"]["protocolVersion"], "2025-11-25",
        "negotiated down"
    );
    assert_eq!(
        sent["params"]["capabilities"]["sampling"],
        json!({}),
        "client params kept"
    );
    let (_, to_beta) = h.host.call_to("c_beta");
    assert_eq!(header(&to_beta.headers, ":path"), Some("/beta/mcp"));
    assert_eq!(
        header(&to_beta.headers, ":authority"),
        Some("localhost:1975")
    );

    let B::Respond(r) = h.answer(&mut ex, Harness::init_answer) else {
        panic!()
    };
    let b = body_of(&r);
    assert_eq!(b["id"], "i1");
    assert_eq!(b["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(b["result"]["serverInfo"]["name"], "mcpgw");
    assert_eq!(b["result"]["capabilities"]["tools"]["listChanged"], true);
    assert!(b["result"]["instructions"]
        .as_str()
        .unwrap()
        .contains("## alpha\nuse c_alpha"));
    let token = header(&r.headers, "mcp-session-id").unwrap();
    let s = Session::open(
        &h.gw.cfg.keys,
        token,
        h.host.now_ms(),
        h.gw.cfg.session_ttl_ms,
    )
    .unwrap();
    assert_eq!(s.backends.len(), 2);
    assert_eq!(
        s.backend("alpha").unwrap().session_id.as_deref(),
        Some("alpha-session-1")
    );
    assert_eq!(s.backend("beta").unwrap().session_id, None);
    assert_eq!(
        s.backend("alpha").unwrap().caps,
        caps::TOOLS | caps::LOGGING
    );
}

#[test]
fn initialize_leaves_out_failed_backends() {
    let mut h = Harness::new(TWO);
    let (mut ex, _) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}),
    );
    let a = h.answer(&mut ex, |cluster, req| {
        if cluster == "c_beta" {
            CallResponse {
                status: 503,
                headers: vec![],
                body: b"upstream connect error".to_vec(),
            }
        } else {
            Harness::init_answer(cluster, req)
        }
    });
    let B::Respond(r) = a else { panic!() };
    let token = header(&r.headers, "mcp-session-id").unwrap();
    let s = Session::open(
        &h.gw.cfg.keys,
        token,
        h.host.now_ms(),
        h.gw.cfg.session_ttl_ms,
    )
    .unwrap();
    assert_eq!(
        s.backends
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        vec!["alpha"]
    );
    assert!(h.host.logged("backend beta: HTTP 503"));

    // Everything down: a JSON-RPC error naming each backend.
    let (mut ex, _) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}),
    );
    let B::Respond(r) = h.answer(&mut ex, |_, _| CallResponse::default()) else {
        panic!()
    };
    let msg = body_of(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("alpha: no answer") && msg.contains("beta: no answer"),
        "{msg}"
    );
    assert!(header(&r.headers, "mcp-session-id").is_none());
}

#[test]
fn tools_list_merges_filters_and_paginates() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"k":1}}}),
    );
    assert_eq!(a, B::Wait);
    let (_, call) = h.host.call_to("c_alpha");
    assert_eq!(
        header(&call.headers, "mcp-session-id"),
        Some("alpha-session-1")
    );
    assert_eq!(
        header(&call.headers, "mcp-protocol-version"),
        Some("2025-06-18")
    );
    let a = h.answer(&mut ex, |cluster, req| {
        assert_eq!(req["params"]["_meta"]["k"], 1);
        assert!(req["params"].get("cursor").is_none());
        let r = if cluster == "c_alpha" {
            json!({"tools":[{"name":"echo","inputSchema":{}},{"name":"admin_reset","inputSchema":{}}],"nextCursor":"alpha-p2"})
        } else {
            json!({"tools":[{"name":"echo","inputSchema":{}}]})
        };
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":r}).to_string())
    });
    let B::Respond(r) = a else { panic!() };
    let b = body_of(&r);
    let names: Vec<&str> = b["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alpha__echo", "beta__echo"]);
    let cursor = b["result"]["nextCursor"].as_str().unwrap().to_string();

    // Page two goes only to alpha, with alpha's own cursor.
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":cursor}}),
    );
    assert_eq!(h.host.calls.len(), 1);
    let a = h.answer(&mut ex, |cluster, req| {
        assert_eq!(cluster, "c_alpha");
        assert_eq!(req["params"]["cursor"], "alpha-p2");
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"tools":[{"name":"add","inputSchema":{}}]}}).to_string())
    });
    let B::Respond(r) = a else { panic!() };
    let b = body_of(&r);
    assert_eq!(b["result"]["tools"][0]["name"], "alpha__add");
    assert!(b["result"].get("nextCursor").is_none());

    // A forged cursor is invalid params.
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"nope"}}),
    );
    let B::Respond(r) = a else { panic!() };
    assert_eq!(body_of(&r)["error"]["code"], -32602);
}

#[test]
fn tools_call_is_routed_with_credentials() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let client = [
        ("authorization", "Bearer client"),
        ("cookie", "c=1"),
        ("origin", "http://localhost:3000"),
    ];
    let (_, a) = h.post_with(
        Some(&sid),
        &client,
        json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"x"},"_meta":{"progressToken":"p"}}}),
    );
    let B::Forward { headers, body } = a else {
        panic!("{a:?}")
    };
    assert_eq!(op_set(&headers, "x-mcpgw-cluster"), Some("c_alpha"));
    assert_eq!(op_set(&headers, ":path"), Some("/mcp"));
    assert_eq!(op_set(&headers, ":authority"), Some("alpha.test"));
    assert_eq!(op_set(&headers, "mcp-session-id"), Some("alpha-session-1"));
    assert_eq!(op_set(&headers, "mcp-protocol-version"), Some("2025-06-18"));
    assert_eq!(op_set(&headers, "authorization"), Some("Bearer s3cret"));
    assert!(op_removes(&headers, "cookie") && op_removes(&headers, "origin"));
    let body = body.unwrap();
    assert_eq!(
        op_set(&headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["params"]["name"], "echo");
    assert_eq!(sent["params"]["_meta"]["progressToken"], "p");
    assert_eq!(sent["id"], "c1");

    // The client's own token never reaches a backend that did not opt in.
    let (_, a) = h.post_with(Some(&sid), &client, json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"beta__echo","arguments":{}}}));
    let B::Forward { headers, .. } = a else {
        panic!()
    };
    assert!(op_removes(&headers, "authorization"));
    assert!(op_removes(&headers, "mcp-session-id"), "stateless backend");
    assert_eq!(op_set(&headers, ":path"), Some("/beta/mcp"));

    for name in ["alpha__admin_reset", "gamma__x", "echo", "alpha__"] {
        let (_, a) = h.post(
            Some(&sid),
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":name}}),
        );
        let B::Respond(r) = a else {
            panic!("{name} was routed")
        };
        let b = body_of(&r);
        assert_eq!(b["error"]["code"], -32602, "{name}");
        assert_eq!(b["error"]["message"], format!("Unknown tool: {name}"));
        assert_eq!(b["id"], 7);
    }
}

/// `rewrite: route`: the filter only names the backend, so the route is
/// re-resolved on the client's own host and path and the matched route
/// rewrites both; fan-out calls still address the backend's path and authority.
#[test]
fn route_rewrite_leaves_path_and_authority_to_the_route() {
    let mut h = Harness {
        gw: Arc::new(gateway_with(TWO, r#","rewrite":"route""#)),
        host: FakeHost::default(),
    };
    let (mut ex, a) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    assert_eq!(a, B::Wait);
    let fan: Vec<(String, Option<String>, Option<String>)> = h
        .host
        .calls
        .iter()
        .map(|(_, c)| {
            let get = |n: &str| header(&c.headers, n).map(str::to_string);
            (c.cluster.clone(), get(":path"), get(":authority"))
        })
        .collect();
    assert!(fan.contains(&(
        "c_alpha".into(),
        Some("/mcp".into()),
        Some("alpha.test".into())
    )));
    assert!(fan.contains(&(
        "c_beta".into(),
        Some("/beta/mcp".into()),
        Some("localhost:1975".into())
    )));
    let B::Respond(r) = h.answer(&mut ex, Harness::init_answer) else {
        panic!()
    };
    let sid = header(&r.headers, "mcp-session-id").unwrap().to_string();

    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"beta__echo","arguments":{}}});
    for (path, rewritten) in [("/mcp", None), ("/mcp?tenant=x", Some("/mcp"))] {
        let mut ex = Exchange::new(h.gw.clone());
        let mut hd = hdrs("POST", &[("mcp-session-id", &sid)]);
        hd[1].1 = path.into();
        assert_eq!(ex.on_request_headers(&mut h.host, &hd, false), H::NeedBody);
        let B::Forward { headers, .. } =
            ex.on_request_body(&mut h.host, call.to_string().as_bytes())
        else {
            panic!()
        };
        assert_eq!(
            op_set(&headers, "x-mcpgw-cluster"),
            Some("c_beta"),
            "{path}"
        );
        assert_eq!(op_set(&headers, ":path"), rewritten, "{path}");
        assert_eq!(op_set(&headers, ":authority"), None, "{path}");
    }
    let mut ex = Exchange::new(h.gw.clone());
    let H::Continue(ops) =
        ex.on_request_headers(&mut h.host, &hdrs("GET", &[("mcp-session-id", &sid)]), true)
    else {
        panic!()
    };
    assert_eq!(op_set(&ops, "x-mcpgw-cluster"), Some("c_alpha"));
    assert_eq!(op_set(&ops, ":path"), None);
    assert_eq!(op_set(&ops, ":authority"), None);
}

#[test]
fn local_answers() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let (_, a) = h.post(Some(&sid), json!({"jsonrpc":"2.0","id":9,"method":"ping"}));
    let B::Respond(r) = a else { panic!() };
    assert_eq!(body_of(&r), json!({"jsonrpc":"2.0","id":9,"result":{}}));
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":9,"method":"widgets/spin"}),
    );
    let B::Respond(r) = a else { panic!() };
    assert_eq!(body_of(&r)["error"]["code"], -32601);
    assert!(h.host.calls.is_empty());
}

#[test]
fn notifications_reach_every_backend_then_202() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    );
    assert_eq!(a, B::Wait);
    assert_eq!(h.host.calls.len(), 2);
    assert_eq!(
        header(&h.host.call_to("c_alpha").1.headers, "mcp-session-id"),
        Some("alpha-session-1")
    );
    let B::Respond(r) = h.answer(&mut ex, |_, _| CallResponse {
        status: 202,
        ..Default::default()
    }) else {
        panic!()
    };
    assert_eq!(r.status, 202);
}

#[test]
fn delete_ends_the_session_everywhere() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let mut ex = Exchange::new(h.gw.clone());
    let a = ex.on_request_headers(
        &mut h.host,
        &hdrs("DELETE", &[("mcp-session-id", &sid)]),
        true,
    );
    assert_eq!(a, H::Wait);
    assert_eq!(h.host.calls.len(), 1, "only stateful backends get a DELETE");
    let (_, call) = h.host.call_to("c_alpha");
    assert_eq!(header(&call.headers, ":method"), Some("DELETE"));
    let B::Respond(r) = h.answer(&mut ex, |_, _| CallResponse {
        status: 200,
        ..Default::default()
    }) else {
        panic!()
    };
    assert_eq!(r.status, 204);
    let (_, a) = h.post(Some(&sid), json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
    let B::Respond(r) = a else { panic!() };
    assert_eq!(r.status, 404);
}

#[test]
fn expired_sessions_are_404() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    h.host.now.set(h.host.now.get() + 2 * 3_600_000);
    let (_, a) = h.post(Some(&sid), json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
    let B::Respond(r) = a else { panic!() };
    assert_eq!(r.status, 404);
}

#[test]
fn routed_sse_answer_is_rewritten() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__echo"}}),
    );
    let a = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "text/event-stream".into()),
            ("mcp-session-id".into(), "alpha-session-1".into()),
        ],
    );
    let ResponseHeadersAction::Continue(ops) = a else {
        panic!()
    };
    assert!(op_removes(&ops, "mcp-session-id") && op_removes(&ops, "content-length"));
    let ResponseBodyAction::Replace(out) = ex.on_response_body(
        &mut h.host,
        b"id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"roots/list\"}\n\n",
        false,
    ) else {
        panic!()
    };
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"id\":\"mcpgw."), "{text}");
    assert!(!text.contains("id: 1\n"));
    let ResponseBodyAction::Replace(out) = ex.on_response_body(
        &mut h.host,
        b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n",
        true,
    ) else {
        panic!()
    };
    assert_eq!(
        out,
        b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n"
    );

    // The client answers the backend's request: back to alpha, original id restored.
    let wrapped = text
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":wrapped,"result":{"roots":[]}}),
    );
    let B::Forward { headers, body } = a else {
        panic!("{a:?}")
    };
    assert_eq!(op_set(&headers, "x-mcpgw-cluster"), Some("c_alpha"));
    let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(sent["id"], 42, "number restored as a number");
    // A made-up id cannot be routed.
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":"mcpgw.AAAA","result":{}}),
    );
    assert!(matches!(a, B::Respond(r) if r.status == 400));
}

#[test]
fn stream_cut_without_answer_gets_an_error_event() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"beta__echo"}}),
    );
    let _ = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "text/event-stream".into()),
        ],
    );
    let ResponseBodyAction::Replace(out) =
        ex.on_response_body(&mut h.host, b"data: {\"jsonrpc\":\"2.0\",\"met", true)
    else {
        panic!()
    };
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\"id\":\"q\"") && text.contains("beta"),
        "{text}"
    );
}

/// A backend whose JSON answer is not the answer to the client's request
/// (garbage, empty, another id) gives the client an error for its own id;
/// an error with a null id gets the client's id.
#[test]
fn routed_json_that_is_not_the_answer_becomes_an_error() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let failures = || metric_name(names::BACKEND_FAILURES, &[("backend", "beta")]);
    for (i, bad) in [
        "<html>oops",
        "",
        r#"{"jsonrpc":"2.0","id":999,"result":{"content":[]}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let before = h.host.counter(&failures());
        let (mut ex, _) = h.post(
            Some(&sid),
            json!({"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"beta__echo"}}),
        );
        let a = ex.on_response_headers(
            &mut h.host,
            &[
                (":status".into(), "200".into()),
                ("content-type".into(), "application/json".into()),
            ],
        );
        assert!(matches!(a, ResponseHeadersAction::Buffer(_)), "{i}");
        let ResponseBodyAction::Replace(out) =
            ex.on_response_body(&mut h.host, bad.as_bytes(), true)
        else {
            panic!("{bad:?} passed through")
        };
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 21, "{bad:?}");
        assert_eq!(v["error"]["code"], BACKEND_ERROR, "{bad:?}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("backend beta answered with"));
        assert_eq!(h.host.counter(&failures()), before + 1);
    }
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"beta__echo"}}),
    );
    let _ = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "400".into()),
            ("content-type".into(), "application/json".into()),
        ],
    );
    let null_id = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"bad"}}"#;
    let ResponseBodyAction::Replace(out) = ex.on_response_body(&mut h.host, null_id, true) else {
        panic!()
    };
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","id":"x","error":{"code":-32600,"message":"bad"}})
    );
}

/// A routed event stream the backend resets before answering is the
/// backend's failure; a client hanging up is not.
#[test]
fn event_stream_reset_by_the_backend_is_counted() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let failures = || metric_name(names::BACKEND_FAILURES, &[("backend", "beta")]);
    for (details, counted) in [
        ("upstream_reset_after_response_started{remote_reset}", true),
        ("downstream_remote_disconnect", false),
    ] {
        let before = h.host.counter(&failures());
        let (mut ex, _) = h.post(
            Some(&sid),
            json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"beta__echo"}}),
        );
        let _ = ex.on_response_headers(
            &mut h.host,
            &[
                (":status".into(), "200".into()),
                ("content-type".into(), "text/event-stream".into()),
            ],
        );
        let progress = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        let _ = ex.on_response_body(&mut h.host, progress, false);
        h.host
            .set_attribute(Attribute::ResponseCodeDetails, details);
        h.host.logs.borrow_mut().clear();
        ex.on_done(&mut h.host);
        h.host.clear_stream_info();
        assert_eq!(
            h.host.counter(&failures()),
            before + u64::from(counted),
            "{details}"
        );
        assert_eq!(
            h.host.logged("backend beta: reset its event stream"),
            counted
        );
    }
}

#[test]
fn backend_failures_become_jsonrpc_errors() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    for (status, ct) in [
        (503, "text/plain"),
        (401, "application/json"),
        (200, "text/html"),
    ] {
        let (mut ex, _) = h.post(
            Some(&sid),
            json!({"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"beta__echo"}}),
        );
        let a = ex.on_response_headers(
            &mut h.host,
            &[
                (":status".into(), status.to_string()),
                ("content-type".into(), ct.into()),
                ("www-authenticate".into(), "Bearer".into()),
            ],
        );
        let ResponseHeadersAction::Replace(r) = a else {
            panic!("{status}")
        };
        assert_eq!(r.status, 200);
        assert!(header(&r.headers, "www-authenticate").is_none());
        let b = body_of(&r);
        assert_eq!(b["id"], 11);
        assert!(b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("backend beta failed"));
    }
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"alpha__echo"}}),
    );
    let a = ex.on_response_headers(&mut h.host, &[(":status".into(), "404".into())]);
    assert!(matches!(a, ResponseHeadersAction::Replace(r) if r.status == 404));
}

#[test]
fn get_streams() {
    // Only alpha holds a session (beta is stateless): alpha's stream is the stream.
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let mut ex = Exchange::new(h.gw.clone());
    let a = ex.on_request_headers(&mut h.host, &hdrs("GET", &[("mcp-session-id", &sid)]), true);
    assert!(
        matches!(a, H::Continue(ref ops) if op_set(ops, "x-mcpgw-cluster") == Some("c_alpha")),
        "{a:?}"
    );

    // Two stateful backends: their streams cannot be merged, so 405.
    let mut h2 = Harness::new(TWO);
    let (mut ex, _) = h2.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}),
    );
    let B::Respond(r) = h2.answer(&mut ex, |cluster, req| {
        let mut r = json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-11-25","capabilities":{}}}).to_string());
        r.headers.push(("mcp-session-id".into(), format!("{cluster}-s")));
        r
    }) else {
        panic!()
    };
    let sid2 = header(&r.headers, "mcp-session-id").unwrap().to_string();
    let mut ex = Exchange::new(h2.gw.clone());
    let a = ex.on_request_headers(
        &mut h2.host,
        &hdrs("GET", &[("mcp-session-id", &sid2)]),
        true,
    );
    assert!(matches!(a, H::Respond(r) if r.status == 405));

    // Resuming names a backend: routed there with its own event id.
    let w = Wrapped {
        sid: Session::open(&h.gw.cfg.keys, &sid, h.host.now_ms(), 3_600_000)
            .unwrap()
            .sid,
        backend: "alpha".into(),
        original: "ev-17".into(),
    };
    let id = w.seal_event_id(&h.gw.cfg.keys, &[9; 24]);
    let mut ex = Exchange::new(h.gw.clone());
    let a = ex.on_request_headers(
        &mut h.host,
        &hdrs("GET", &[("mcp-session-id", &sid), ("last-event-id", &id)]),
        true,
    );
    let H::Continue(ops) = a else { panic!("{a:?}") };
    assert_eq!(op_set(&ops, "x-mcpgw-cluster"), Some("c_alpha"));
    assert_eq!(op_set(&ops, "last-event-id"), Some("ev-17"));

    // One backend: the GET stream passes through.
    let mut h = Harness::new(r#"[{"name":"alpha","cluster":"c_alpha"}]"#);
    let sid = h.session();
    let mut ex = Exchange::new(h.gw.clone());
    let H::Continue(ops) =
        ex.on_request_headers(&mut h.host, &hdrs("GET", &[("mcp-session-id", &sid)]), true)
    else {
        panic!()
    };
    assert_eq!(op_set(&ops, "x-mcpgw-cluster"), Some("c_alpha"));
    assert!(op_removes(&ops, "last-event-id"));
}

/// Two stateful backends, one of which needs no GET stream (a stdio
/// bridge, `standalone_stream: false`): the other one's stream passes
/// through; with both needing none, the GET is refused as before.
#[test]
fn get_stream_goes_to_the_one_backend_that_pushes() {
    let stateful_session = |backends: &str| {
        let mut h = Harness::new(backends);
        let (mut ex, _) = h.post(
            None,
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}),
        );
        let B::Respond(r) = h.answer(&mut ex, |cluster, req| {
            let mut r = json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-11-25","capabilities":{}}}).to_string());
            r.headers.push(("mcp-session-id".into(), format!("{cluster}-s")));
            r
        }) else {
            panic!()
        };
        let sid = header(&r.headers, "mcp-session-id").unwrap().to_string();
        let mut ex = Exchange::new(h.gw.clone());
        ex.on_request_headers(&mut h.host, &hdrs("GET", &[("mcp-session-id", &sid)]), true)
    };
    let a = stateful_session(
        r#"[{"name":"bridge","cluster":"c_bridge","standalone_stream":false},{"name":"http","cluster":"c_http"}]"#,
    );
    assert!(
        matches!(a, H::Continue(ref ops) if op_set(ops, "x-mcpgw-cluster") == Some("c_http")),
        "{a:?}"
    );
    let a = stateful_session(
        r#"[{"name":"b1","cluster":"c_b1","standalone_stream":false},{"name":"b2","cluster":"c_b2","standalone_stream":false}]"#,
    );
    assert!(matches!(a, H::Respond(r) if r.status == 405));
}

#[test]
fn allowed_origins_list() {
    let gw = Arc::new(gateway_with(
        r#"[{"name":"a","cluster":"a"}]"#,
        r#","allowed_origins":["https://app.example.com"]"#,
    ));
    let mut host = FakeHost::default();
    let mut ex = Exchange::new(gw.clone());
    assert_eq!(
        ex.on_request_headers(
            &mut host,
            &hdrs("POST", &[("origin", "https://app.example.com")]),
            false
        ),
        H::NeedBody
    );
    let mut ex = Exchange::new(gw);
    assert!(matches!(
        ex.on_request_headers(&mut host, &hdrs("POST", &[("origin", "http://localhost:3000")]), false),
        H::Respond(r) if r.status == 403
    ));
}

const THREE: &str = r#"[{"name":"fix","cluster":"c_fix","prefix":"never"},{"name":"other","cluster":"c_other","prefix":"never"},{"name":"beta","cluster":"c_beta"}]"#;

fn session_of_three(h: &mut Harness) -> String {
    let (mut ex, _) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}),
    );
    let B::Respond(r) = h.answer(&mut ex, |_, req| {
        json_response(
            &json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-11-25",
                "capabilities":{"tools":{},"prompts":{},"resources":{"subscribe":true},"completions":{}}}})
            .to_string(),
        )
    }) else {
        panic!()
    };
    header(&r.headers, "mcp-session-id").unwrap().to_string()
}

#[test]
fn bare_names_of_several_backends_are_looked_up() {
    let mut h = Harness::new(THREE);
    let sid = session_of_three(&mut h);
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_simple_text"}}),
    );
    assert_eq!(a, B::Wait, "looks the name up first");
    assert_eq!(
        h.host.calls.len(),
        2,
        "only the unprefixed backends are asked"
    );
    let a = h.answer(&mut ex, |cluster, req| {
        assert_eq!(req["method"], "tools/list");
        let tools = if cluster == "c_fix" {
            json!([{"name":"test_simple_text","inputSchema":{}}])
        } else {
            json!([{"name":"else","inputSchema":{}}])
        };
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"tools":tools}}).to_string())
    });
    let B::Forward { headers, body } = a else {
        panic!("{a:?}")
    };
    assert_eq!(op_set(&headers, "x-mcpgw-cluster"), Some("c_fix"));
    assert_eq!(body, None, "bare name: the body goes as is");

    // Found on a later page.
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"deep"}}),
    );
    let a = h.answer(&mut ex, |cluster, req| {
        let r = if cluster == "c_other" {
            json!({"tools":[],"nextCursor":"p2"})
        } else {
            json!({"tools":[]})
        };
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":r}).to_string())
    });
    assert_eq!(a, B::Wait);
    let a = h.answer(&mut ex, |cluster, req| {
        assert_eq!(
            (cluster, req["params"]["cursor"].as_str()),
            ("c_other", Some("p2"))
        );
        json_response(
            &json!({"jsonrpc":"2.0","id":req["id"],"result":{"tools":[{"name":"deep"}]}})
                .to_string(),
        )
    });
    assert!(
        matches!(a, B::Forward { ref headers, .. } if op_set(headers, "x-mcpgw-cluster") == Some("c_other"))
    );

    // Offered by both: a collision is reported, never shadowed.
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"dup"}}),
    );
    let B::Respond(r) = h.answer(&mut ex, |_, req| {
        json_response(
            &json!({"jsonrpc":"2.0","id":req["id"],"result":{"tools":[{"name":"dup"}]}})
                .to_string(),
        )
    }) else {
        panic!()
    };
    assert!(body_of(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("collision"));

    // Nobody has it.
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"nope"}}),
    );
    let B::Respond(r) = h.answer(&mut ex, |_, req| {
        assert_eq!(req["method"], "prompts/list");
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"prompts":[]}}).to_string())
    }) else {
        panic!()
    };
    assert_eq!(body_of(&r)["error"]["message"], "Invalid prompt name: nope");
}

#[test]
fn bare_uris_of_several_backends_go_to_the_one_that_knows_them() {
    let mut h = Harness::new(THREE);
    let sid = session_of_three(&mut h);
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"uri":"test://static-text"}}),
    );
    assert_eq!(a, B::Wait);
    let B::Respond(r) = h.answer(&mut ex, |cluster, req| {
        assert_eq!(req["params"]["uri"], "test://static-text");
        if cluster == "c_fix" {
            json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"contents":[{"uri":"test://static-text","text":"hi"}]}}).to_string())
        } else {
            json_response(&json!({"jsonrpc":"2.0","id":req["id"],"error":{"code":-32002,"message":"Resource not found"}}).to_string())
        }
    }) else {
        panic!()
    };
    let b = body_of(&r);
    assert_eq!(b["id"], "r");
    assert_eq!(b["result"]["contents"][0]["text"], "hi");
}

#[test]
fn prompts_resources_and_completions_are_routed() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"beta__greet","arguments":{"who":"x"}}}),
    );
    let B::Forward { headers, body } = a else {
        panic!()
    };
    assert_eq!(op_set(&headers, "x-mcpgw-cluster"), Some("c_beta"));
    let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(
        sent["params"],
        json!({"name":"greet","arguments":{"who":"x"}})
    );

    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"alpha+test://template/42"}}),
    );
    let B::Forward { headers, body } = a else {
        panic!()
    };
    assert_eq!(op_set(&headers, "x-mcpgw-cluster"), Some("c_alpha"));
    let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(sent["params"]["uri"], "test://template/42");
    // The answer's URIs come back namespaced.
    let ResponseHeadersAction::Buffer(_) = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ],
    ) else {
        panic!()
    };
    let ResponseBodyAction::Replace(out) = ex.on_response_body(
        &mut h.host,
        br#"{"jsonrpc":"2.0","id":2,"result":{"contents":[{"uri":"test://template/42","text":"x"}]}}"#,
        true,
    ) else {
        panic!()
    };
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["result"]["contents"][0]["uri"],
        "alpha+test://template/42"
    );

    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"gamma+x://y"}}),
    );
    let B::Respond(r) = a else { panic!() };
    assert_eq!(body_of(&r)["error"]["code"], -32002);

    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"alpha+test://template/{id}"},"argument":{"name":"id","value":"4"}}}),
    );
    let B::Forward { headers, body } = a else {
        panic!()
    };
    assert_eq!(op_set(&headers, "x-mcpgw-cluster"), Some("c_alpha"));
    let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(sent["params"]["ref"]["uri"], "test://template/{id}");
    assert_eq!(sent["params"]["argument"]["value"], "4");

    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"alpha__p"},"argument":{"name":"a","value":""}}}),
    );
    let B::Forward { body, .. } = a else { panic!() };
    let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(
        sent["params"]["ref"],
        json!({"type":"ref/prompt","name":"p"})
    );

    // logging/setLevel reaches the backends that log.
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":6,"method":"logging/setLevel","params":{"level":"debug"}}),
    );
    assert_eq!(a, B::Wait);
    assert_eq!(h.host.calls.len(), 2);
    let B::Respond(r) = h.answer(&mut ex, |_, req| {
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{}}).to_string())
    }) else {
        panic!()
    };
    assert_eq!(body_of(&r), json!({"jsonrpc":"2.0","id":6,"result":{}}));
}

#[test]
fn tasks_are_routed_by_sealed_ids() {
    let mut h = Harness::new(TWO);
    let (mut ex, _) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}),
    );
    let B::Respond(r) = h.answer(&mut ex, |cluster, req| {
        let tasks = if cluster == "c_alpha" {
            json!({"list":{},"cancel":{},"requests":{"tools":{"call":{}}}})
        } else {
            json!({"list":{}})
        };
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"tasks":tasks}}}).to_string())
    }) else {
        panic!()
    };
    assert_eq!(
        body_of(&r)["result"]["capabilities"]["tasks"],
        json!({"list":{},"cancel":{},"requests":{"tools":{"call":{}}}}),
        "deep union"
    );
    let sid = header(&r.headers, "mcp-session-id").unwrap().to_string();

    // A task-augmented call: the task id the client sees is sealed.
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__slow","task":{"ttl":60000}}}),
    );
    assert!(matches!(a, B::Forward { .. }));
    let _ = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ],
    );
    let ResponseBodyAction::Replace(out) = ex.on_response_body(
        &mut h.host,
        br#"{"jsonrpc":"2.0","id":2,"result":{"task":{"taskId":"t-1","status":"working"}}}"#,
        true,
    ) else {
        panic!()
    };
    let created: Value = serde_json::from_slice(&out).unwrap();
    let tid = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(tid, "t-1");
    assert_eq!(created["result"]["task"]["status"], "working");

    // tasks/get goes to alpha with alpha's own id; the answer shows the same sealed id.
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"taskId":tid}}),
    );
    let B::Forward { headers, body } = a else {
        panic!("{a:?}")
    };
    assert_eq!(op_set(&headers, "x-mcpgw-cluster"), Some("c_alpha"));
    let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(sent["params"]["taskId"], "t-1");
    let _ = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ],
    );
    let ResponseBodyAction::Replace(out) = ex.on_response_body(
        &mut h.host,
        br#"{"jsonrpc":"2.0","id":3,"result":{"taskId":"t-1","status":"completed"}}"#,
        true,
    ) else {
        panic!()
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap()["result"]["taskId"],
        tid.as_str()
    );

    // tasks/list merges both backends' tasks with sealed ids.
    let (mut ex, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":4,"method":"tasks/list"}),
    );
    assert_eq!(a, B::Wait);
    let B::Respond(r) = h.answer(&mut ex, |cluster, req| {
        let id = if cluster == "c_alpha" { "t-1" } else { "t-9" };
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"tasks":[{"taskId":id,"status":"working"}]}}).to_string())
    }) else {
        panic!()
    };
    let listed = body_of(&r);
    assert_eq!(listed["result"]["tasks"][0]["taskId"], tid.as_str());
    assert_eq!(listed["result"]["tasks"].as_array().unwrap().len(), 2);

    // A made-up or foreign task id is refused.
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":5,"method":"tasks/cancel","params":{"taskId":"t-1"}}),
    );
    assert!(matches!(a, B::Respond(r) if body_of(&r)["error"]["code"] == -32602));
}

mod oauth {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const AUTH: &str = r#","allowed_origins":["https://app.example.com"],"auth":{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes":["mcp"],"authorization_server_metadata":{"issuer":"https://auth.example.com","token_endpoint":"https://auth.example.com/token"}},"authorization":{"rules":[{"when":{"scopes":["mcp"]},"target":{"tools":[{"backend":"alpha","regex":"echo|count"}]}},{"when":{"scopes":["beta:all"]},"target":{"backends":["beta"]}}]}"#;

    fn harness() -> Harness {
        Harness {
            gw: Arc::new(gateway_with(TWO, AUTH)),
            host: FakeHost::default(),
        }
    }

    /// What jwt_authn leaves behind for a verified token.
    fn login(h: &Harness, sub: &str, scope: &str) -> String {
        h.host.clear_stream_info();
        let jwt = "envoy.filters.http.jwt_authn";
        h.host
            .set_metadata(jwt, &["jwt_payload", "iss"], "https://auth.example.com");
        h.host.set_metadata(jwt, &["jwt_payload", "sub"], sub);
        URL_SAFE_NO_PAD.encode(
            json!({"iss":"https://auth.example.com","sub":sub,"aud":"https://mcp.example.com/mcp","scope":scope}).to_string(),
        )
    }

    fn post(h: &mut Harness, payload: &str, session: Option<&str>, msg: Value) -> (Exchange, B) {
        let mut extra = vec![
            ("authorization", "Bearer t"),
            ("x-mcpgw-jwt-payload", payload),
        ];
        if let Some(s) = session {
            extra.push(("mcp-session-id", s));
        }
        let mut ex = Exchange::new(h.gw.clone());
        match ex.on_request_headers(&mut h.host, &hdrs("POST", &extra), false) {
            H::NeedBody => {}
            H::Respond(r) => return (ex, B::Respond(r)),
            other => panic!("{other:?}"),
        }
        let a = ex.on_request_body(&mut h.host, msg.to_string().as_bytes());
        (ex, a)
    }

    fn init(h: &mut Harness, payload: &str) -> String {
        let (mut ex, a) = post(
            h,
            payload,
            None,
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}),
        );
        assert_eq!(a, B::Wait, "{a:?}");
        let B::Respond(r) = h.answer(&mut ex, Harness::init_answer) else {
            panic!()
        };
        header(&r.headers, "mcp-session-id").unwrap().to_string()
    }

    #[test]
    fn challenges_without_a_valid_token() {
        let mut h = harness();
        let mut ex = Exchange::new(h.gw.clone());
        let H::Respond(r) = ex.on_request_headers(&mut h.host, &hdrs("POST", &[]), false) else {
            panic!()
        };
        assert_eq!(r.status, 401);
        let www = header(&r.headers, "www-authenticate").unwrap();
        assert_eq!(
            www,
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
        );
        // A token jwt_authn rejected (no metadata): invalid_token.
        let mut ex = Exchange::new(h.gw.clone());
        let H::Respond(r) = ex.on_request_headers(
            &mut h.host,
            &hdrs("POST", &[("authorization", "Bearer bad")]),
            false,
        ) else {
            panic!()
        };
        assert!(header(&r.headers, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
        // Browsers can read the challenge.
        let mut ex = Exchange::new(h.gw.clone());
        let H::Respond(r) = ex.on_request_headers(
            &mut h.host,
            &hdrs("POST", &[("origin", "https://app.example.com")]),
            false,
        ) else {
            panic!()
        };
        assert_eq!(
            header(&r.headers, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert!(header(&r.headers, "access-control-expose-headers")
            .unwrap()
            .contains("www-authenticate"));
    }

    #[test]
    fn metadata_endpoints_and_preflight() {
        let mut h = harness();
        // What a route must send to the filter: exactly the paths answered below.
        assert_eq!(
            h.gw.cfg.auth.as_ref().unwrap().well_known_paths(),
            [
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource",
                "/.well-known/oauth-authorization-server",
                "/.well-known/openid-configuration",
            ]
        );
        for path in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ] {
            let mut ex = Exchange::new(h.gw.clone());
            let mut hd = hdrs("GET", &[]);
            hd[1].1 = path.into();
            let H::Respond(r) = ex.on_request_headers(&mut h.host, &hd, true) else {
                panic!()
            };
            assert_eq!(r.status, 200);
            assert_eq!(body_of(&r)["resource"], "https://mcp.example.com/mcp");
            assert_eq!(header(&r.headers, "access-control-allow-origin"), Some("*"));
        }
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let mut ex = Exchange::new(h.gw.clone());
            let mut hd = hdrs("GET", &[]);
            hd[1].1 = path.into();
            let H::Respond(r) = ex.on_request_headers(&mut h.host, &hd, true) else {
                panic!()
            };
            assert_eq!(
                body_of(&r)["token_endpoint"],
                "https://auth.example.com/token"
            );
        }
        let mut ex = Exchange::new(h.gw.clone());
        let H::Respond(r) = ex.on_request_headers(
            &mut h.host,
            &hdrs("OPTIONS", &[("origin", "https://app.example.com")]),
            true,
        ) else {
            panic!()
        };
        assert_eq!(r.status, 204);
        assert!(header(&r.headers, "access-control-allow-headers")
            .unwrap()
            .contains("mcp-session-id"));
        assert_eq!(
            header(&r.headers, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
    }

    #[test]
    fn sessions_are_bound_to_their_principal() {
        let mut h = harness();
        let alice = login(&h, "alice", "mcp");
        let sid = init(&mut h, &alice);
        let (_, a) = post(
            &mut h,
            &alice,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":2,"method":"ping"}),
        );
        assert!(matches!(a, B::Respond(ref r) if r.status == 200), "{a:?}");
        let bob = login(&h, "bob", "mcp");
        let (_, a) = post(
            &mut h,
            &bob,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
        );
        assert!(
            matches!(a, B::Respond(ref r) if r.status == 404),
            "replayed by bob: {a:?}"
        );
    }

    #[test]
    fn per_tool_rules_and_step_up() {
        let mut h = harness();
        let p = login(&h, "alice", "mcp");
        let sid = init(&mut h, &p);
        let (mut ex, _) = post(
            &mut h,
            &p,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        );
        let B::Respond(r) = h.answer(&mut ex, |_, req| {
            json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"tools":[
                {"name":"echo","inputSchema":{}},{"name":"count","inputSchema":{}},{"name":"add","inputSchema":{}}]}}).to_string())
        }) else {
            panic!()
        };
        let names: Vec<String> = body_of(&r)["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            vec!["alpha__echo", "alpha__count"],
            "only permitted tools are listed"
        );

        let (_, a) = post(
            &mut h,
            &p,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__echo"}}),
        );
        let B::Forward { headers, .. } = a else {
            panic!("{a:?}")
        };
        assert!(op_removes(&headers, "x-mcpgw-jwt-payload"));
        assert!(op_removes(&headers, "authorization"));

        let (_, a) = post(
            &mut h,
            &p,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"beta__echo"}}),
        );
        let B::Respond(r) = a else { panic!() };
        assert_eq!(r.status, 403);
        assert_eq!(
            header(&r.headers, "www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"mcp beta:all\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"")
        );
        assert_eq!(body_of(&r)["id"], 4);

        // With the stepped-up token (same subject) the same session goes on.
        let p2 = login(&h, "alice", "mcp beta:all");
        let (_, a) = post(
            &mut h,
            &p2,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"beta__echo"}}),
        );
        assert!(matches!(a, B::Forward { .. }), "{a:?}");
    }

    #[test]
    fn issuer_metadata_is_fetched_and_cached() {
        let extra = r#","auth":{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"authorization_server_metadata":{"cluster":"idp","path":"/.well-known/oauth-authorization-server","authority":"auth.example.com","cache":"10m"}}"#;
        let mut h = Harness {
            gw: Arc::new(gateway_with(TWO, extra)),
            host: FakeHost::default(),
        };
        let mut hd = hdrs("GET", &[]);
        hd[1].1 = "/.well-known/oauth-authorization-server".into();
        let mut ex = Exchange::new(h.gw.clone());
        assert_eq!(ex.on_request_headers(&mut h.host, &hd, true), H::Wait);
        let (_, call) = h.host.call_to("idp");
        assert_eq!(
            header(&call.headers, ":path"),
            Some("/.well-known/oauth-authorization-server")
        );
        let B::Respond(r) = h.answer(&mut ex, |_, _| {
            json_response(r#"{"issuer":"https://auth.example.com"}"#)
        }) else {
            panic!()
        };
        assert_eq!(body_of(&r)["issuer"], "https://auth.example.com");
        // Served from the cache afterwards.
        let mut ex = Exchange::new(h.gw.clone());
        let H::Respond(r) = ex.on_request_headers(&mut h.host, &hd, true) else {
            panic!()
        };
        assert_eq!(body_of(&r)["issuer"], "https://auth.example.com");
        assert!(h.host.calls.is_empty());
    }
}

#[test]
fn local_answers_follow_the_clients_preferred_framing() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let mut headers = hdrs("POST", &[("mcp-session-id", &sid)]);
    headers[3].1 = "text/event-stream, application/json".into();
    let mut ex = Exchange::new(h.gw.clone());
    assert_eq!(
        ex.on_request_headers(&mut h.host, &headers, false),
        H::NeedBody
    );
    let B::Respond(r) =
        ex.on_request_body(&mut h.host, br#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#)
    else {
        panic!()
    };
    assert_eq!(
        header(&r.headers, "content-type"),
        Some("text/event-stream")
    );
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}\n\n"
    );
    // Errors with an HTTP status stay JSON.
    let mut ex = Exchange::new(h.gw.clone());
    assert_eq!(
        ex.on_request_headers(&mut h.host, &headers, false),
        H::NeedBody
    );
    let B::Respond(r) = ex.on_request_body(&mut h.host, b"{bad") else {
        panic!()
    };
    assert_eq!(
        (r.status, header(&r.headers, "content-type")),
        (400, Some("application/json"))
    );
}

#[test]
fn metrics_and_access_log_fields() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    // (initialize is reported once its exchange ends; this harness drops it.)
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"alpha__echo"}}),
    );
    ex.on_response_start(&mut h.host);
    let _ = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "text/event-stream".into()),
        ],
    );
    let _ = ex.on_response_body(
        &mut h.host,
        br#"data: {"jsonrpc":"2.0","id":"c1","result":{"content":[]}}

"#,
        true,
    );
    ex.on_done(&mut h.host);
    ex.on_done(&mut h.host);
    assert_eq!(
        h.host.counter(&metric_name(
            names::TOOL_CALLS,
            &[
                ("backend", "alpha"),
                ("tool", "alpha__echo"),
                ("outcome", "ok")
            ]
        )),
        1,
        "counted once: {:?}",
        h.host.metrics.borrow()
    );
    assert_eq!(
        h.host.counter(&metric_name(
            names::REQUESTS,
            &[("method", "tools/call"), ("outcome", "ok")]
        )),
        1
    );
    let published = h.host.published.borrow().clone();
    assert_eq!(
        published.get("mcpgw.method").map(String::as_str),
        Some("tools/call")
    );
    assert_eq!(
        published.get("mcpgw.tool").map(String::as_str),
        Some("alpha__echo")
    );
    assert_eq!(
        published.get("mcpgw.backend").map(String::as_str),
        Some("alpha")
    );
    assert_eq!(
        published.get("mcpgw.jsonrpc_id").map(String::as_str),
        Some("\"c1\"")
    );
    assert_eq!(published.get("mcpgw.session").map(String::len), Some(16));

    // A tool the backend fails: outcome error, no gateway error kind.
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"beta__echo"}}),
    );
    let _ = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ],
    );
    let _ = ex.on_response_body(
        &mut h.host,
        br#"{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"x"}}"#,
        true,
    );
    ex.on_done(&mut h.host);
    assert_eq!(
        h.host.counter(&metric_name(
            names::TOOL_CALLS,
            &[
                ("backend", "beta"),
                ("tool", "beta__echo"),
                ("outcome", "error")
            ]
        )),
        1
    );

    // Gateway-side errors by kind.
    for (session, msg, kind) in [
        (
            Some("forged"),
            json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
            "unknown_session",
        ),
        (
            None,
            json!({"jsonrpc":"2.0","id":4,"method":"tools/list"}),
            "missing_session",
        ),
        (
            Some(sid.as_str()),
            json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"alpha__admin_reset"}}),
            "unknown_tool",
        ),
        (
            Some(sid.as_str()),
            json!({"jsonrpc":"2.0","id":6,"method":"nope/nope"}),
            "unknown_method",
        ),
    ] {
        let (mut ex, _) = h.post(session, msg);
        ex.on_done(&mut h.host);
        assert_eq!(
            h.host
                .counter(&metric_name(names::ERRORS, &[("kind", kind)])),
            1,
            "{kind}"
        );
    }
    assert_eq!(
        h.host.counter(&metric_name(
            names::REQUESTS,
            &[("method", "other"), ("outcome", "error")]
        )),
        1,
        "unknown methods are not labels"
    );

    // Sessions created/deleted and fan-out latency.
    assert_eq!(h.host.counter(names::SESSIONS_CREATED), 1);
    let mut ex = Exchange::new(h.gw.clone());
    let _ = ex.on_request_headers(
        &mut h.host,
        &hdrs("DELETE", &[("mcp-session-id", &sid)]),
        true,
    );
    assert_eq!(h.host.counter(names::SESSIONS_DELETED), 1);
    assert!(h
        .host
        .metrics
        .borrow()
        .keys()
        .any(|k| k.starts_with("mcpgw.fanout_duration_ms;.;method=.=initialize")));
}

#[test]
fn trace_context_reaches_backends_including_fan_out() {
    let mut h = Harness::new(TWO);
    let sid = h.session();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // From the headers, on fan-out calls.
    let mut ex = Exchange::new(h.gw.clone());
    let headers = hdrs(
        "POST",
        &[
            ("mcp-session-id", &sid),
            ("traceparent", tp),
            ("baggage", "a=b"),
        ],
    );
    assert_eq!(
        ex.on_request_headers(&mut h.host, &headers, false),
        H::NeedBody
    );
    assert_eq!(
        ex.on_request_body(
            &mut h.host,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#
        ),
        B::Wait
    );
    for (_, call) in &h.host.calls {
        assert_eq!(header(&call.headers, "traceparent"), Some(tp));
        assert_eq!(header(&call.headers, "baggage"), Some("a=b"));
    }
    h.host.calls.clear();
    // From params._meta, on routed and fan-out requests.
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","_meta":{"traceparent":tp,"tracestate":"v=1"}}}),
    );
    let B::Forward { headers, .. } = a else {
        panic!()
    };
    assert_eq!(op_set(&headers, "traceparent"), Some(tp));
    assert_eq!(op_set(&headers, "tracestate"), Some("v=1"));
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"info","_meta":{"traceparent":tp}}}),
    );
    assert_eq!(a, B::Wait);
    assert!(h
        .host
        .calls
        .iter()
        .all(|(_, c)| header(&c.headers, "traceparent") == Some(tp)));
}

#[test]
fn observability_can_be_turned_off() {
    let gw = Arc::new(gateway_with(
        r#"[{"name":"a","cluster":"a"}]"#,
        r#","observability":{"metrics":false,"access_log_fields":false}"#,
    ));
    let mut h = Harness {
        gw,
        host: FakeHost::default(),
    };
    let sid = h.session();
    let (mut ex, _) = h.post(Some(&sid), json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
    ex.on_response_start(&mut h.host);
    ex.on_done(&mut h.host);
    assert!(
        h.host.metrics.borrow().is_empty(),
        "{:?}",
        h.host.metrics.borrow()
    );
    assert!(h.host.published.borrow().is_empty());
}

/// The policy at the request path: lists filtered per kind, uses refused
/// before any backend sees them, by each backend's own names and URIs.
#[test]
fn the_policy_governs_every_kind_at_the_request_path() {
    let policy = r#","authorization":{"rules":[
        {"name":"no big counts","action":"deny","target":{"tools":[{"backend":"alpha","name":"count"}]},"cel":"request.mcp.params.arguments.n > 10"},
        {"name":"alpha tools","target":{"tools":[{"backend":"alpha","regex":"echo|count"}]}},
        {"name":"greet","target":{"prompts":[{"backend":"beta","name":"greet"}]}},
        {"name":"templates","target":{"resources":[{"backend":"alpha","template":"test://template/{id}"}]}},
        {"name":"tenant","target":{"resources":[{"backend":"beta","prefix":"file:///t1/"}]},"cel":"request.headers['x-tenant'] == 't1'"}
    ]}"#;
    let mut h = Harness {
        gw: Arc::new(gateway_with(TWO, policy)),
        host: FakeHost::default(),
    };
    let (mut ex, _) = h.post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let B::Respond(r) = h.answer(&mut ex, |_, req| {
        json_response(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-11-25",
            "capabilities":{"tools":{},"prompts":{},"resources":{"subscribe":true},"completions":{}},
            "serverInfo":{"name":"s"}}}).to_string())
    }) else {
        panic!()
    };
    let sid = header(&r.headers, "mcp-session-id").unwrap().to_string();
    let list = |h: &mut Harness, method: &str, key: &str, items: Value, more: &[(&str, &str)]| {
        let (mut ex, _) = h.post_with(
            Some(&sid),
            more,
            json!({"jsonrpc":"2.0","id":2,"method":method}),
        );
        let items2 = items.clone();
        let B::Respond(r) = h.answer(&mut ex, move |_, req| {
            json_response(
                &json!({"jsonrpc":"2.0","id":req["id"],"result":{key: items2.clone()}}).to_string(),
            )
        }) else {
            panic!()
        };
        let mut names: Vec<String> = body_of(&r)["result"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t["uriTemplate"]
                    .as_str()
                    .or(t["uri"].as_str())
                    .or(t["name"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect();
        names.sort();
        names
    };
    let tools = json!([{"name":"echo","inputSchema":{}},{"name":"count","inputSchema":{}},{"name":"add","inputSchema":{}}]);
    assert_eq!(
        list(&mut h, "tools/list", "tools", tools, &[]),
        ["alpha__count", "alpha__echo"],
        "count is listed: some calls of it are allowed"
    );
    let prompts = json!([{"name":"greet"},{"name":"other"}]);
    assert_eq!(
        list(&mut h, "prompts/list", "prompts", prompts, &[]),
        ["beta__greet"]
    );
    let templates = json!([{"uriTemplate":"test://template/{id}","name":"t"},{"uriTemplate":"test://{any}","name":"u"}]);
    assert_eq!(
        list(
            &mut h,
            "resources/templates/list",
            "resourceTemplates",
            templates,
            &[]
        ),
        ["alpha+test://template/{id}"]
    );
    let resources = json!([{"uri":"file:///t1/a","name":"a"},{"uri":"file:///t2/b","name":"b"}]);
    assert_eq!(
        list(
            &mut h,
            "resources/list",
            "resources",
            resources.clone(),
            &[("x-tenant", "t1")]
        ),
        ["beta+file:///t1/a"]
    );
    assert!(list(
        &mut h,
        "resources/list",
        "resources",
        resources,
        &[("x-tenant", "t2")]
    )
    .is_empty());

    // Uses: allowed ones are forwarded, refused ones answered here (403).
    let forwarded = |a: &B| matches!(a, B::Forward { .. });
    let refused = |a: &B| matches!(a, B::Respond(r) if r.status == 403);
    let call = |n: u64| json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__count","arguments":{"n":n}}});
    let (_, a) = h.post(Some(&sid), call(5));
    assert!(forwarded(&a), "{a:?}");
    assert_eq!(h.host.calls.len(), 0);
    let (ex, a) = h.post(Some(&sid), call(50));
    assert!(refused(&a), "{a:?}");
    assert_eq!(ex.req.audit.rule, "no big counts");
    assert_eq!(ex.req.audit.decision, "deny");
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"beta__other"}}),
    );
    assert!(refused(&a), "{a:?}");
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"beta__greet"}}),
    );
    assert!(forwarded(&a), "{a:?}");
    let read =
        |uri: &str| json!({"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":uri}});
    assert!(forwarded(
        &h.post(Some(&sid), read("alpha+test://template/42")).1
    ));
    assert!(refused(&h.post(Some(&sid), read("alpha+test://other")).1));
    assert!(forwarded(
        &h.post_with(Some(&sid), &[("x-tenant", "t1")], read("beta+file:///t1/a"))
            .1
    ));
    assert!(refused(
        &h.post_with(Some(&sid), &[("x-tenant", "t2")], read("beta+file:///t1/a"))
            .1
    ));
    let sub = json!({"jsonrpc":"2.0","id":7,"method":"resources/subscribe","params":{"uri":"alpha+test://other"}});
    assert!(refused(&h.post(Some(&sid), sub).1));
    let complete = |r: Value| json!({"jsonrpc":"2.0","id":8,"method":"completion/complete","params":{"ref":r,"argument":{"name":"id","value":"4"}}});
    assert!(forwarded(
        &h.post(
            Some(&sid),
            complete(json!({"type":"ref/resource","uri":"alpha+test://template/{id}"}))
        )
        .1
    ));
    assert!(refused(
        &h.post(
            Some(&sid),
            complete(json!({"type":"ref/resource","uri":"alpha+test://{x}"}))
        )
        .1
    ));
    assert!(refused(
        &h.post(
            Some(&sid),
            complete(json!({"type":"ref/prompt","name":"beta__other"}))
        )
        .1
    ));
    // No rule names tasks: a task id of alpha is refused.
    let opened =
        crate::gateway::session::Session::open(&h.gw.cfg.keys, &sid, h.host.now_ms(), 3_600_000)
            .unwrap();
    let task =
        crate::gateway::stream::wrap_task_id(&h.gw, &opened.sid, &h.gw.cfg.backends[0], "t-1");
    let (_, a) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":9,"method":"tasks/get","params":{"taskId":task}}),
    );
    assert!(refused(&a), "{a:?}");
    // Nothing refused reached a backend.
    assert!(h.host.calls.is_empty());
}

/// With `rate_limit_headers`, a routed call names its backend, tool and
/// caller for Envoy's rate-limit descriptors; Envoy's 429 becomes a JSON-RPC
/// error with a retry hint, counted.
#[test]
fn rate_limits_see_mcp_attributes_and_answer_in_json_rpc() {
    let mut h = Harness {
        gw: Arc::new(gateway_with(TWO, r#","rate_limit_headers":true"#)),
        host: FakeHost::default(),
    };
    let sid = h.session();
    let (mut ex, a) = h.post_with(
        Some(&sid),
        &[("x-mcpgw-caller", "forged")],
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}),
    );
    let B::Forward { headers, .. } = a else {
        panic!("{a:?}")
    };
    assert_eq!(op_set(&headers, "x-mcpgw-backend"), Some("alpha"));
    assert_eq!(op_set(&headers, "x-mcpgw-tool"), Some("alpha__echo"));
    assert_eq!(op_set(&headers, "x-mcpgw-caller"), Some("anonymous"));
    h.host.set_attribute(
        crate::gateway::host::Attribute::ResponseCodeDetails,
        "local_rate_limited",
    );
    let ResponseHeadersAction::Replace(r) = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "429".into()),
            ("x-ratelimit-reset".into(), "42".into()),
            ("content-type".into(), "text/plain".into()),
        ],
    ) else {
        panic!()
    };
    assert_eq!(r.status, 200);
    assert_eq!(header(&r.headers, "retry-after"), Some("42"));
    let v = body_of(&r);
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], crate::protocol::jsonrpc::RATE_LIMITED);
    assert_eq!(v["error"]["data"]["retryAfter"], 42);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("alpha__echo"));
    assert_eq!(
        h.host.counter(&crate::gateway::stats::metric_name(
            names::RATE_LIMITED,
            &[("backend", "alpha"), ("tool", "alpha__echo")]
        )),
        1
    );
    // A backend's own 429 stays the backend's failure.
    h.host.set_attribute(
        crate::gateway::host::Attribute::ResponseCodeDetails,
        "via_upstream",
    );
    let (mut ex, _) = h.post(
        Some(&sid),
        json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}),
    );
    let ResponseHeadersAction::Replace(r) = ex.on_response_headers(
        &mut h.host,
        &[
            (":status".into(), "429".into()),
            ("content-type".into(), "text/plain".into()),
        ],
    ) else {
        panic!()
    };
    assert_eq!(
        body_of(&r)["error"]["code"],
        crate::protocol::jsonrpc::BACKEND_ERROR
    );
    // Other paths lose client-sent attribute headers.
    let mut ex = Exchange::new(h.gw.clone());
    let mut hd = hdrs("GET", &[("x-mcpgw-tool", "x")]);
    hd[1].1 = "/other".into();
    let H::Continue(ops) = ex.on_request_headers(&mut h.host, &hd, true) else {
        panic!()
    };
    assert!(op_removes(&ops, "x-mcpgw-tool"));
}
