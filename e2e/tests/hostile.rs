//! Hostile clients through the real Envoy: oversized and slow bodies, deep
//! nesting, huge ids, invalid UTF-8, CR/LF and control characters aimed at
//! upstream headers, path tricks, DNS-rebinding Origins. Every case asserts
//! the exact status and JSON-RPC code, what the backend received (a
//! recording backend, `e2e/src/faulty.rs`), and that the VM is still healthy
//! and serving afterwards.
//!
//! Not repeated here: session reuse by another user (404) is covered by
//! `tests/oauth.rs::sessions_cannot_be_replayed_by_another_user`, and a
//! client-sent `x-mcpgw-cluster` by
//! `tests/gateway.rs::the_gateway_enforces_the_transport_rules`.

use mcpgw_e2e::backends::{self, Kind, TestServer};
use mcpgw_e2e::client::{Answer, ACCEPT_BOTH};
use mcpgw_e2e::envoy::{render, Cluster, Engine, Envoy};
use mcpgw_e2e::faulty::{
    assert_vm_healthy, counter, wait_counter, wait_log, FaultyBackend, Options, RawBackend,
};
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
mcpgw_e2e::per_engine!(
    oversized_bodies_get_413,
    deep_nesting_and_huge_ids,
    invalid_utf8_in_bodies,
    a_non_utf8_request_header_does_not_trap_the_vm,
    crlf_in_names_and_ids_stays_in_the_body,
    trace_context_from_the_body_cannot_smuggle_headers,
    control_characters_in_client_headers_are_stopped_by_envoy,
    backend_session_ids_with_bad_characters_are_refused,
    a_non_utf8_backend_session_id_does_not_trap_the_vm,
    path_tricks_never_reach_a_backend,
    origins_with_an_allow_list,
    origins_without_an_allow_list_allow_only_local_pages_on_a_local_gateway,
    slow_bodies_are_bounded_by_request_timeout,
    request_timeout_does_not_cut_fanouts_or_long_calls,
    a_body_over_envoys_buffer_limit_gets_envoys_413,
);

const BOUND: Duration = Duration::from_secs(10);
/// The `max_request_bytes` of these tests.
const MAX_REQUEST: usize = 65536;

struct Setup {
    rec: FaultyBackend,
    _good: TestServer,
    extra: Option<RawBackend>,
    envoy: Envoy,
    http: reqwest::Client,
}

/// `rec` (a recording backend) and `good` (rmcp, stateless) behind Envoy;
/// `extra`, if given, is a third backend `raw`.
async fn setup_with(
    engine: Engine,
    edit_cfg: impl FnOnce(&mut Value),
    edit_yaml: impl FnOnce(String) -> String,
    extra: Option<RawBackend>,
) -> Setup {
    let rec = FaultyBackend::spawn(Options::named("rec")).await;
    let good = backends::spawn(Kind::Beta).await;
    let mut cfg = json!({
        "session": {"key": SESSION_KEY},
        "max_request_bytes": MAX_REQUEST,
        "allowed_origins": ["https://app.example.com"],
        "backends": [
            {"name": "rec", "cluster": "rec", "timeout": "5s"},
            {"name": "good", "cluster": "good", "tools": {"include": ["echo"]}}
        ]
    });
    let mut clusters = vec![
        Cluster {
            name: "rec".into(),
            port: rec.port(),
        },
        Cluster {
            name: "good".into(),
            port: good.port(),
        },
    ];
    if let Some(raw) = &extra {
        cfg["backends"]
            .as_array_mut()
            .expect("backends")
            .push(json!({"name": "raw", "cluster": "raw", "timeout": "2s"}));
        clusters.push(Cluster {
            name: "raw".into(),
            port: raw.port(),
        });
    }
    edit_cfg(&mut cfg);
    let yaml = edit_yaml(render(engine, &cfg.to_string(), &clusters, &[]));
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy start");
    Setup {
        rec,
        _good: good,
        extra,
        envoy,
        http: reqwest::Client::builder()
            .timeout(BOUND)
            .build()
            .expect("client"),
    }
}

async fn setup(engine: Engine) -> Setup {
    setup_with(engine, |_| {}, |y| y, None).await
}

impl Setup {
    async fn send(&self, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Answer {
        self.send_method(reqwest::Method::POST, path, headers, body)
            .await
    }

    async fn send_method(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let url = format!("http://127.0.0.1:{}{path}", self.envoy.port);
        let mut req = self.http.request(method, url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("no HTTP answer (transport error: {e})"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// POST to /mcp with the MCP headers (and the session, if any).
    async fn post_raw(&self, sid: Option<&str>, body: Vec<u8>) -> Answer {
        let mut h = vec![
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
        ];
        if let Some(s) = sid {
            h.push(("mcp-session-id", s));
            h.push(("mcp-protocol-version", "2025-11-25"));
        }
        self.send("/mcp", &h, Some(body)).await
    }

    async fn post(&self, sid: Option<&str>, body: &Value) -> Answer {
        self.post_raw(sid, body.to_string().into_bytes()).await
    }

    async fn session(&self) -> String {
        let a = self.post(None, &init()).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let sid = a.header("mcp-session-id").expect("session id").to_string();
        let n = self
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            )
            .await;
        assert_eq!(n.status, 202, "{}", n.body);
        sid
    }

    /// A normal call still works and the VM never trapped.
    async fn still_healthy(&self) {
        let sid = self.session().await;
        let a = self
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":"ok","method":"tools/call","params":{"name":"good__echo","arguments":{"text":"fine"}}}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.json()["result"]["content"][0]["text"],
            "beta: fine",
            "{}",
            a.body
        );
        assert_vm_healthy(&self.envoy);
    }

    /// Every header value any backend received is free of control characters.
    fn assert_backend_headers_clean(&self) {
        for r in self.rec.received() {
            for (k, v) in &r.headers {
                assert!(
                    !v.iter().any(|b| *b < 0x20 && *b != b'\t' || *b == 0x7f),
                    "rec got a control character in {k}: {v:?}"
                );
                assert!(!k.contains("evil"), "smuggled header {k} reached rec");
            }
        }
    }

    /// The access log is one JSON object per line, whatever the client sent.
    async fn access_log(&self) -> Vec<Value> {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let text =
            std::fs::read_to_string(self.envoy.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line ({e}): {l}"))
            })
            .collect()
    }
}

fn init() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"hostile","version":"1"}}})
}

/// Status, JSON-RPC code and id of a gateway answer.
#[track_caller]
fn assert_answer(a: &Answer, status: u16, code: i64, id: Value) {
    let v = a.json();
    assert_eq!(
        (a.status, v["error"]["code"].as_i64(), &v["id"]),
        (status, Some(code), &id),
        "{}",
        a.body
    );
    assert_eq!(v["jsonrpc"], "2.0");
}

/// A raw HTTP/1.1 exchange (for bytes no client library sends), bounded.
/// Returns (status, head, body); status 0 if the connection closed first.
async fn raw_http(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut out))
        .await
        .expect("Envoy answers within the bound");
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, String::from_utf8_lossy(&out).into_owned(), Vec::new());
    };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = out[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

/// A POST of `body` to /mcp with extra raw header lines.
fn raw_post(sid: &str, extra_headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: {ACCEPT_BOTH}\r\nmcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(extra_headers);
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

// ----- sizes -----------------------------------------------------------------------------

async fn oversized_bodies_get_413(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    let big = |n: usize| {
        let pad = "x".repeat(n);
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rec__echo","arguments":{"text":pad}}})
            .to_string()
            .into_bytes()
    };
    // With Content-Length: refused from the headers.
    let a = s.post_raw(Some(&sid), big(MAX_REQUEST + 1)).await;
    assert_answer(&a, 413, -32600, Value::Null);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("the limit is 65536 bytes (max_request_bytes)"));
    // Chunked (no Content-Length): refused while it arrives.
    let body = big(4 * MAX_REQUEST);
    let stream = futures::stream::iter(
        body.chunks(8192)
            .map(|c| Ok::<Vec<u8>, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = s
        .http
        .post(s.envoy.url())
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-session-id", &sid)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match resp {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(v["error"]["code"], -32600, "{v}");
        }
        // The gateway answered before the body was sent whole; the client may see the reset.
        Err(e) => eprintln!("chunked upload cut: {e}"),
    }
    // Just under the limit passes.
    let a = s.post_raw(Some(&sid), big(MAX_REQUEST - 200)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], 1);
    assert!(
        s.rec.received_rpc("tools/call").len() == 1,
        "only the small call reached the backend"
    );
    s.still_healthy().await;
}

async fn deep_nesting_and_huge_ids(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    // 30 000 levels: the gateway does not recurse into what it forwards
    // (serde_json skips raw values iteratively), so it neither overflows nor
    // refuses; the backend does (here: rec's parser, HTTP 400), and the
    // client gets that as a JSON-RPC error naming it.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"rec__echo","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    let a = s.post_raw(Some(&sid), deep.into_bytes()).await;
    assert_answer(&a, 200, -32010, json!(1));
    assert!(
        a.body.contains("backend rec failed: HTTP 400"),
        "{}",
        a.body
    );
    // The same in a request the gateway answers itself: answered.
    let deep_obj = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{}1{}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    let a = s.post_raw(Some(&sid), deep_obj.into_bytes()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!({"jsonrpc":"2.0","id":1,"result":{}}));
    // Moderate nesting (what real schemas do) passes to the backend untouched.
    let nested = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"rec__echo","arguments":{{"text":"n","a":{}1{}}}}}}}"#,
        "[".repeat(64),
        "]".repeat(64)
    );
    let a = s.post_raw(Some(&sid), nested.clone().into_bytes()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["result"]["content"][0]["text"], "rec: n");

    // Huge ids come back exactly, as sent (a number stays a number).
    let digits = "9".repeat(10_000);
    let body = format!(r#"{{"jsonrpc":"2.0","id":{digits},"method":"ping"}}"#);
    let a = s.post_raw(Some(&sid), body.into_bytes()).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        format!(r#"{{"jsonrpc":"2.0","id":{digits},"result":{{}}}}"#)
    );
    let long = "i".repeat(50_000);
    let a = s
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":long,"method":"ping"}),
        )
        .await;
    assert_eq!(a.json()["id"], long.as_str());
    // ... through a backend too.
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":-{digits},"method":"tools/call","params":{{"name":"rec__echo","arguments":{{"text":"big id"}}}}}}"#
    );
    let a = s.post_raw(Some(&sid), body.into_bytes()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains(&format!(r#""id":-{digits}"#)), "{}", a.body);
    // Ids JSON-RPC does not allow for MCP: -32600.
    for bad in [
        json!(1.5),
        json!({"a":1}),
        json!([1]),
        json!(null),
        json!(true),
    ] {
        let a = s
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":bad,"method":"ping"}),
            )
            .await;
        assert_answer(&a, 400, -32600, Value::Null);
    }
    s.still_healthy().await;
}

// ----- encodings -------------------------------------------------------------------------

async fn invalid_utf8_in_bodies(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    let a = s
        .post_raw(
            Some(&sid),
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}"
                .to_vec(),
        )
        .await;
    assert_answer(&a, 400, -32700, Value::Null);
    assert!(a.body.contains("not UTF-8"), "{}", a.body);
    // A lone surrogate escape is valid JSON text but not a string: the name is missing.
    let a = s
        .post_raw(
            Some(&sid),
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rec__\ud800","arguments":{}}}"#.to_vec(),
        )
        .await;
    assert_answer(&a, 200, -32602, json!(2));
    // ... and in the method: not even JSON text serde accepts (-32700).
    let a = s
        .post_raw(
            Some(&sid),
            br#"{"jsonrpc":"2.0","id":3,"method":"ping\udc00"}"#.to_vec(),
        )
        .await;
    assert_answer(&a, 400, -32700, Value::Null);
    // A UTF-8 BOM and NUL escapes are fine.
    let a = s
        .post_raw(
            Some(&sid),
            b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":\"\\u0000\",\"method\":\"ping\"}".to_vec(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], "\u{0}");
    assert_eq!(s.rec.received_rpc("tools/call").len(), 0);
    s.still_healthy().await;
}

/// A request header whose value is not UTF-8 (obs-text: legal in HTTP/1.1,
/// and Envoy passes it). proxy-wasm's `get_map` panics on such a value, so
/// the VM traps on the request headers; the gateway must treat it like any
/// other header instead.
async fn a_non_utf8_request_header_does_not_trap_the_vm(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    let (status, head, body) = raw_http(
        s.envoy.port,
        &raw_post(
            &sid,
            b"x-client-note: caf\xe9\r\n",
            br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
        ),
    )
    .await;
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&body));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
        json!({"jsonrpc":"2.0","id":7,"result":{}})
    );
    s.still_healthy().await;
}

// ----- smuggling into upstream headers ---------------------------------------------------

async fn crlf_in_names_and_ids_stays_in_the_body(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    let evil = "echo\r\nx-evil: 1\r\n\r\nGET / HTTP/1.1";
    let a = s
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":"a\r\nx-evil-id: 1","method":"tools/call",
                    "params":{"name": format!("rec__{evil}"),"arguments":{"text":"t"}}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], "a\r\nx-evil-id: 1");
    let calls = s.rec.received_rpc("tools/call");
    assert_eq!(calls.len(), 1);
    let got: Value = serde_json::from_slice(&calls[0].body).expect("json");
    assert_eq!(
        got["params"]["name"], evil,
        "the backend's own name, exactly"
    );
    s.assert_backend_headers_clean();
    // Control characters in a name the gateway has to look up: unknown, not routed.
    let a = s
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"re\u{0}c__echo","arguments":{}}}),
        )
        .await;
    assert_answer(&a, 200, -32602, json!(3));
    // The access log (JSON lines) is not broken by what the client chose.
    let lines = s.access_log().await;
    assert!(
        lines
            .iter()
            .any(|l| l["mcp_tool"].as_str().is_some_and(|t| t.contains("x-evil"))),
        "{lines:#?}"
    );
    s.still_healthy().await;
}

async fn trace_context_from_the_body_cannot_smuggle_headers(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    let ok_tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let call = |id: u64, meta: Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
               "params":{"name":"rec__echo","arguments":{"text":"t"},"_meta":meta}})
    };
    // Positive control: a clean traceparent in _meta becomes a header.
    let a = s
        .post(Some(&sid), &call(1, json!({"traceparent": ok_tp})))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let first = s.rec.received_rpc("tools/call");
    assert_eq!(first[0].header("traceparent"), Some(ok_tp.as_bytes()));
    // CR/LF, NUL or oversized values are dropped, never sent.
    for (i, meta) in [
        json!({"traceparent": format!("{ok_tp}\r\nx-evil: 1")}),
        json!({"tracestate": "a=b\nx-evil: 1"}),
        json!({"baggage": "k=\u{0}v"}),
        json!({"baggage": "k=".to_string() + &"v".repeat(9000)}),
    ]
    .into_iter()
    .enumerate()
    {
        let a = s.post(Some(&sid), &call(10 + i as u64, meta.clone())).await;
        assert_eq!(a.status, 200, "{meta}: {}", a.body);
        let last = s.rec.received_rpc("tools/call").pop().expect("call");
        for h in ["traceparent", "tracestate", "baggage"] {
            assert!(last.header(h).is_none(), "{meta}: {h} was sent");
        }
    }
    s.assert_backend_headers_clean();
    s.still_healthy().await;
}

/// Control characters inside a client's header value never reach the
/// gateway or a backend: Envoy's codec refuses NUL and other controls (400,
/// not JSON-RPC) and drops a bare CR (the value is joined, no new header).
async fn control_characters_in_client_headers_are_stopped_by_envoy(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rec__echo","arguments":{}}}"#;
    let before = s.rec.received().len();
    for extra in [&b"x-note: a\x00b\r\n"[..], &b"x-note: a\x01b\r\n"[..]] {
        let (status, head, _) = raw_http(s.envoy.port, &raw_post(&sid, extra, call)).await;
        assert_eq!(status, 400, "{extra:?}: {head}");
    }
    assert_eq!(
        s.rec.received().len(),
        before,
        "nothing reached the backend"
    );
    let (status, head, _) = raw_http(
        s.envoy.port,
        &raw_post(&sid, b"traceparent: a\rx-evil: 1\r\n", call),
    )
    .await;
    assert_eq!(status, 200, "{head}");
    let got = s.rec.received_rpc("tools/call").pop().expect("the call");
    assert_eq!(got.header("traceparent"), Some(&b"ax-evil: 1"[..]));
    assert!(got.header("x-evil").is_none());
    s.assert_backend_headers_clean();
    s.still_healthy().await;
}

/// A backend's `Mcp-Session-Id` becomes an upstream header on every later
/// request, so one that is not visible ASCII must not be taken.
async fn backend_session_ids_with_bad_characters_are_refused(engine: Engine) {
    for (label, sid_bytes, expect_log) in [
        ("space", &b"abc def"[..], "raw: invalid Mcp-Session-Id"),
        ("tab", &b"abc\tdef"[..], "raw: invalid Mcp-Session-Id"),
        ("DEL", &b"abc\x7fdef"[..], "raw: "),
        ("control", &b"abc\x01def"[..], "raw: "),
        ("bare CR", &b"abc\rx-evil: 1"[..], "raw: "),
        ("NUL", &b"abc\x00def"[..], "raw: "),
        ("too long", &[b'a'; 2000][..], "raw: invalid Mcp-Session-Id"),
    ] {
        let body = json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25",
            "capabilities":{"tools":{}},"serverInfo":{"name":"raw"}}})
        .to_string();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nmcp-session-id: ",
            body.len()
        )
        .into_bytes();
        resp.extend_from_slice(sid_bytes);
        resp.extend_from_slice(b"\r\n\r\n");
        resp.extend_from_slice(body.as_bytes());
        let raw = RawBackend::spawn(resp).await;
        let s = setup_with(engine, |_| {}, |y| y, Some(raw)).await;
        let a = s.post(None, &init()).await;
        assert_eq!(a.status, 200, "{label}: {}", a.body);
        assert!(
            a.header("mcp-session-id").is_some(),
            "{label}: the session goes on without raw"
        );
        assert!(
            wait_log(&s.envoy, &["initialize: backend", expect_log])
                .await
                .is_some(),
            "{label}: {}",
            s.envoy.filter_log().join("\n")
        );
        assert_eq!(
            wait_counter(
                &s.envoy,
                "mcpgw_initialize_backend_failures_total{backend=\"raw\"}",
                1.0
            )
            .await,
            1.0,
            "{label}"
        );
        let sid = a.header("mcp-session-id").unwrap_or_default().to_string();
        let calls = s
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"raw__echo","arguments":{}}}),
            )
            .await;
        assert_answer(&calls, 200, -32602, json!(1));
        assert_eq!(
            s.extra
                .as_ref()
                .map(|r| r.received.lock().map(|v| v.len()).unwrap_or(0)),
            Some(1),
            "{label}: only the initialize reached raw"
        );
        s.still_healthy().await;
    }
}

/// The same with a session id that is not UTF-8 (obs-text): proxy-wasm's
/// `get_map` panics on the side call's response headers.
async fn a_non_utf8_backend_session_id_does_not_trap_the_vm(engine: Engine) {
    let body = json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25",
        "capabilities":{"tools":{}},"serverInfo":{"name":"raw"}}})
    .to_string();
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nmcp-session-id: abc",
        body.len()
    )
    .into_bytes();
    resp.push(0xe9); // Latin-1 é: not UTF-8
    resp.extend_from_slice(b"\r\n\r\n");
    resp.extend_from_slice(body.as_bytes());
    let raw = RawBackend::spawn(resp).await;
    let s = setup_with(engine, |_| {}, |y| y, Some(raw)).await;
    let a = s.post(None, &init()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("mcp-session-id").is_some(), "{}", a.body);
    s.still_healthy().await;
}

// ----- paths -------------------------------------------------------------------------------

/// Only the exact endpoint path (query string ignored) is MCP. Anything else
/// is not the gateway's, and since mcpgw strips `x-mcpgw-cluster` on every
/// path, the routing rule never matches: Envoy's 404, and the backend sees
/// nothing, whatever the client sets.
async fn path_tricks_never_reach_a_backend(engine: Engine) {
    let s = setup(engine).await;
    let sid = s.session().await;
    let before = s.rec.received().len();
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec();
    // Sent raw: client libraries would resolve dot segments themselves.
    let send = |target: &str| {
        let req = format!(
            "POST {target} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: {ACCEPT_BOTH}\r\nmcp-session-id: {sid}\r\nx-mcpgw-cluster: rec\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            ping.len(),
            String::from_utf8_lossy(&ping)
        );
        let port = s.envoy.port;
        async move {
            let (status, _, body) = raw_http(port, req.as_bytes()).await;
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let pong = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    // The endpoint, with a query string: MCP.
    assert_eq!(send("/mcp?x=1").await, (200, pong.to_string()));
    assert_eq!(send("/mcp?").await, (200, pong.to_string()));
    // Not the endpoint: Envoy's own 404 (the routing header was stripped).
    for target in [
        "/mcp/../x",
        "/mcp/",
        "//mcp",
        "/MCP",
        "/%6Dcp",
        "/m%63p",
        "/mcp%2F",
        "/mcp;x",
        "/mcp/x",
        "/mcpx",
        "/",
        "/mcp/%2e%2e/x",
        "/x/%2e%2e/mcp",
    ] {
        assert_eq!(
            send(target).await,
            (404, "not found".to_string()),
            "{target}"
        );
    }
    // Envoy (default: no path normalization) passes dot segments as they are.
    assert_eq!(send("/x/../mcp").await, (404, "not found".to_string()));
    // Fragments are not part of a request target: Envoy refuses them.
    let (status, _) = send("/mcp#frag").await;
    assert_eq!(status, 400, "/mcp#frag");
    // So is an asterisk-form target on a POST.
    let (status, _) = send("*").await;
    assert_eq!(status, 400, "*");
    assert_eq!(
        s.rec.received().len(),
        before,
        "no request reached the backend: {:?}",
        s.rec
            .received()
            .iter()
            .skip(before)
            .map(|r| &r.path)
            .collect::<Vec<_>>()
    );
    s.still_healthy().await;
}

// ----- origins -----------------------------------------------------------------------------

async fn origins_with_an_allow_list(engine: Engine) {
    let s = setup(engine).await;
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}"#;
    let post = |host: &'static str, origin: Option<&'static str>| {
        let s = &s;
        async move {
            let mut h = vec![
                ("content-type", "application/json"),
                ("accept", ACCEPT_BOTH),
                ("host", host),
            ];
            if let Some(o) = origin {
                h.push(("origin", o));
            }
            s.send("/mcp", &h, Some(ping.to_vec())).await
        }
    };
    // DNS rebinding: a page on evil.com that resolves to the gateway.
    let a = post("evil.com", Some("http://evil.com")).await;
    assert_answer(&a, 403, -32600, Value::Null);
    assert!(a.body.contains("Origin not allowed"));
    // Not in the list, even local.
    let a = post("localhost", Some("http://localhost:1975")).await;
    assert_answer(&a, 403, -32600, Value::Null);
    let a = post("localhost", Some("null")).await;
    assert_answer(&a, 403, -32600, Value::Null);
    // The allowed origin: served, with CORS headers.
    let a = post("mcp.example.com", Some("https://app.example.com")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(a
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("mcp-session-id")));
    // Origins compare exactly (scheme, host, port).
    for o in [
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com.evil.com",
    ] {
        let a = s
            .send(
                "/mcp",
                &[
                    ("content-type", "application/json"),
                    ("accept", ACCEPT_BOTH),
                    ("origin", o),
                ],
                Some(ping.to_vec()),
            )
            .await;
        assert_answer(&a, 403, -32600, Value::Null);
    }
    // Preflight.
    let pre = |origin: &'static str| {
        let s = &s;
        async move {
            s.send_method(
                reqwest::Method::OPTIONS,
                "/mcp",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
                None,
            )
            .await
        }
    };
    let a = pre("https://app.example.com").await;
    assert_eq!(a.status, 204);
    assert!(a
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("POST")));
    let a = pre("http://evil.com").await;
    assert_answer(&a, 403, -32600, Value::Null);
    // No Origin: not a browser, not affected.
    let a = post("evil.com", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(wait_log(&s.envoy, &["refused Origin", "evil.com"])
        .await
        .is_some());
    assert!(counter(&s.envoy, "mcpgw_errors_total{kind=\"origin\"}") >= 1.0);
    s.still_healthy().await;
}

async fn origins_without_an_allow_list_allow_only_local_pages_on_a_local_gateway(engine: Engine) {
    let s = setup_with(engine, |c| c["allowed_origins"] = json!([]), |y| y, None).await;
    let local = format!("127.0.0.1:{}", s.envoy.port);
    let cases: Vec<(&str, &str, u16)> = vec![
        ("evil.com", "http://evil.com", 403),
        // Rebinding to a loopback address: the page is still evil.com.
        (&local, "http://evil.com", 403),
        // A local page, but the gateway is reached under a public name.
        ("evil.com", "http://localhost:3000", 403),
        (&local, "http://localhost:3000", 200),
        (&local, "http://127.0.0.1:5173", 200),
        ("localhost", "http://[::1]:8080", 200),
    ];
    for (host, origin, want) in cases {
        let a = s
            .send(
                "/mcp",
                &[
                    ("content-type", "application/json"),
                    ("accept", ACCEPT_BOTH),
                    ("host", host),
                    ("origin", origin),
                ],
                Some(init().to_string().into_bytes()),
            )
            .await;
        if want == 403 {
            assert_answer(&a, 403, -32600, Value::Null);
        } else {
            assert_eq!(a.status, want, "{host} {origin}: {}", a.body);
        }
    }
    s.still_healthy().await;
}

// ----- slow clients --------------------------------------------------------------------------

/// A client that sends the headers, then trickles the body. The test Envoy
/// sets no `request_timeout`, so only the idle timeout bounds it: a byte
/// every 500 ms is served. With the HCM's `request_timeout` (the shipped
/// configs and `mcpgw` set 30 s) the request is cut at that bound (Envoy's
/// 408), and the VM is unaffected.
async fn slow_bodies_are_bounded_by_request_timeout(engine: Engine) {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let trickle = |port: u16, sid: String, gap: Duration| async move {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: {ACCEPT_BOTH}\r\nmcp-session-id: {sid}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await.expect("head");
        let started = Instant::now();
        for chunk in body.chunks(4) {
            tokio::time::sleep(gap).await;
            if sock.write_all(chunk).await.is_err() {
                break; // Envoy gave up on us
            }
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(BOUND, sock.read_to_end(&mut out)).await;
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    };

    // As configured by default: served, however slowly (10 chunks, 5 s).
    let s = setup(engine).await;
    let sid = s.session().await;
    let (out, took) = trickle(s.envoy.port, sid, Duration::from_millis(500)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
        "{out}"
    );
    assert!(took >= Duration::from_secs(4));
    s.still_healthy().await;
    drop(s);

    // With request_timeout: 2s: cut at 2 s.
    let s = setup_with(
        engine,
        |_| {},
        |y| {
            let out = y.replace(
                "stream_idle_timeout: 300s",
                "stream_idle_timeout: 300s\n          request_timeout: 2s",
            );
            assert_ne!(out, y);
            out
        },
        None,
    )
    .await;
    let sid = s.session().await;
    let (out, took) = trickle(s.envoy.port, sid, Duration::from_millis(500)).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(2) + BOUND / 2,
        "{took:?}"
    );
    s.still_healthy().await;
}

/// `request_timeout` stops once the whole request has been received, so it
/// does not cut the gateway's fan-out wait (initialize, lists) nor a long
/// routed call: setting it low is safe.
async fn request_timeout_does_not_cut_fanouts_or_long_calls(engine: Engine) {
    use mcpgw_e2e::faulty::Fault;
    let s = setup_with(
        engine,
        |_| {},
        |y| {
            y.replace(
                "stream_idle_timeout: 300s",
                "stream_idle_timeout: 300s\n          request_timeout: 2s",
            )
        },
        None,
    )
    .await;
    s.rec
        .set("initialize", Fault::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    let a = s.post(None, &init()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        wait_log(&s.envoy, &["session started with backends: rec, good"])
            .await
            .is_some(),
        "rec joined after 3 s"
    );
    let sid = a.header("mcp-session-id").expect("session").to_string();
    s.rec
        .set("tools/call", Fault::Delay(Duration::from_secs(3)));
    let a = s
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rec__echo","arguments":{"text":"slow"}}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["result"]["content"][0]["text"], "rec: slow");
    s.rec.set("initialize", Fault::None);
    s.still_healthy().await;
}

/// With the default `max_request_bytes` (4 MiB) above Envoy's buffer limit
/// (1 MiB when `per_connection_buffer_limit_bytes` is not set, as in this
/// test config), a 2 MiB body is refused by Envoy itself while mcpgw holds
/// it: still 413, but Envoy's plain text. The shipped configs set the buffer
/// limit above `max_request_bytes` so that the JSON-RPC answer wins.
async fn a_body_over_envoys_buffer_limit_gets_envoys_413(engine: Engine) {
    let s = setup_with(
        engine,
        |c| {
            c.as_object_mut().map(|o| o.remove("max_request_bytes"));
        },
        |y| y,
        None,
    )
    .await;
    let sid = s.session().await;
    let pad = "x".repeat(2 << 20);
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rec__echo","arguments":{"text":pad}}});
    let a = s.post(Some(&sid), &body).await;
    assert_eq!(
        (a.status, a.header("content-type"), a.body.as_str()),
        (413, Some("text/plain"), "Payload Too Large"),
    );
    assert_eq!(s.rec.received_rpc("tools/call").len(), 0);
    s.still_healthy().await;
}
