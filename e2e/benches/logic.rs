//! Micro-benchmarks of mcpgw's pure logic, natively (no Envoy, no wasm):
//! the session codec, the tools/list merge, the SSE rewrite, and whole
//! requests through `Exchange` (what the filter does per request, minus the
//! proxy-wasm host calls and V8).
//!
//! `cargo bench -p mcpgw-e2e --bench logic` (add `-- --quick` for a short run,
//! or a name filter such as `-- exchange`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mcpgw_core::gateway::config::{self, Config};
use mcpgw_core::gateway::host::{
    Attribute, BodyAction, CallId, CallResponse, Configure, Family, HeadersAction, Host, HostError,
    Level, LogField, MetaValue, MetricId, Outbound, ResponseBodyAction,
};
use mcpgw_core::gateway::merge::{merge_list, ListOptions, ListPage};
use mcpgw_core::gateway::session::{caps, BackendSession, Session};
use mcpgw_core::gateway::stream::{self, SseRewrite, StreamCtx};
use mcpgw_core::gateway::{Exchange, Gateway};
use mcpgw_core::protocol::mcp::{ListKind, Version};
use mcpgw_e2e::bench::backend::tools_list_result;
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NOW_MS: u64 = 1_700_000_000_000;

/// A host that answers at once and records nothing (dispatch hands out ids).
struct NullHost {
    counter: Cell<u8>,
    next_token: CallId,
}

impl NullHost {
    fn new() -> NullHost {
        NullHost {
            counter: Cell::new(0),
            next_token: 1,
        }
    }
}

impl Host for NullHost {
    fn now_ms(&self) -> u64 {
        NOW_MS
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        for b in buf.iter_mut() {
            let c = self.counter.get().wrapping_add(1);
            self.counter.set(c);
            *b = c.wrapping_mul(31).wrapping_add(7);
        }
        Ok(())
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn dispatch(&mut self, _call: &Outbound) -> Result<CallId, HostError> {
        self.next_token += 1;
        Ok(self.next_token)
    }
    fn shared_get(&self, _key: &str) -> (Option<Vec<u8>>, u32) {
        (None, 0)
    }
    fn shared_set(&self, _key: &str, _value: &[u8], _cas: u32) -> Result<bool, HostError> {
        Ok(true)
    }
    fn metadata(&self, _namespace: &str, _path: &[&str]) -> Option<MetaValue> {
        None
    }
    fn attribute(&self, _attribute: Attribute) -> Option<String> {
        None
    }
    fn set_log_field(&self, field: LogField, value: &str) {
        black_box((field, value));
    }
    fn record(&self, metric: MetricId, value: u64) {
        black_box((metric, value));
    }
    fn record_labelled(&self, family: &Family, labels: &[&str], value: u64) {
        black_box((family, labels, value));
    }
}

/// Hands out metric ids.
struct NullConfigure(u32);

impl Configure for NullConfigure {
    fn define_metric(&mut self, _family: &Family, _labels: &[&str]) -> Option<MetricId> {
        self.0 += 1;
        Some(MetricId(self.0))
    }
}

fn gateway(cfg: Config) -> Arc<Gateway> {
    Arc::new(Gateway::new(cfg, &mut NullConfigure(0)))
}

fn compile(json: &str) -> Config {
    match config::compile(json.as_bytes(), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    }
}

/// Two backends, like the end-to-end benchmark.
fn two_backends() -> Arc<Gateway> {
    gateway(compile(&format!(
        r#"{{"session":{{"key":"{KEY}","ttl":"24h"}},"backends":[
            {{"name":"b0","cluster":"b0","authority":"127.0.0.1:9001"}},
            {{"name":"b1","cluster":"b1","authority":"127.0.0.1:9002"}}]}}"#
    )))
}

fn session() -> Session {
    Session {
        sid: [7; 16],
        created_ms: NOW_MS - 1000,
        version: Version::V2025_06_18,
        principal: None,
        backends: ["b0", "b1"]
            .iter()
            .map(|n| BackendSession {
                name: n.to_string(),
                version: Version::V2025_06_18,
                session_id: Some(format!("{n}-00000000deadbeef-1a2b")),
                caps: caps::TOOLS,
            })
            .collect(),
    }
}

fn bench_session(c: &mut Criterion) {
    let gw = two_backends();
    let keys = &gw.cfg.keys;
    let s = session();
    let token = s.seal(keys, &[3; 24]);
    let mut g = c.benchmark_group("session");
    g.bench_function("seal (2 backends)", |b| {
        b.iter(|| black_box(&s).seal(keys, black_box(&[3; 24])))
    });
    g.bench_function("open (2 backends)", |b| {
        b.iter(|| Session::open(keys, black_box(&token), NOW_MS, 86_400_000))
    });
    g.finish();
}

fn bench_merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    // 2,000 tools of about 1 KB (the end-to-end large list): filtered and prefixed.
    let cfg = compile(&format!(
        r#"{{"session":{{"key":"{KEY}"}},"prefix":"always","backends":[
            {{"name":"big","cluster":"big","tools":{{"exclude_regex":["7$"]}}}}]}}"#
    ));
    let list = tools_list_result(2000, 1000);
    let opts = ListOptions {
        seal_task: &|_, t| t.to_string(),
        allowed: &|_| true,
    };
    g.throughput(Throughput::Bytes(list.len() as u64));
    g.bench_function("tools/list 2000 tools ~2 MB, filtered + prefixed", |b| {
        b.iter(|| {
            let pages = [ListPage {
                backend: 0,
                result: black_box(&list),
            }];
            merge_list(&cfg, ListKind::Tools, &pages, &opts)
        })
    });
    // Two backends of 1,000 tools each, prefixed (when multiplexed).
    let cfg2 = compile(&format!(
        r#"{{"session":{{"key":"{KEY}"}},"backends":[
            {{"name":"a","cluster":"a"}},{{"name":"b","cluster":"b"}}]}}"#
    ));
    let half = tools_list_result(1000, 1000);
    g.throughput(Throughput::Bytes(2 * half.len() as u64));
    g.bench_function("tools/list 2 x 1000 tools, prefixed", |b| {
        b.iter(|| {
            let pages = [
                ListPage {
                    backend: 0,
                    result: black_box(&half),
                },
                ListPage {
                    backend: 1,
                    result: black_box(&half),
                },
            ];
            merge_list(&cfg2, ListKind::Tools, &pages, &opts)
        })
    });
    g.finish();
}

const CALL_RESULT: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok: benchmark answer"}],"isError":false}}"#;

fn sse_stream() -> String {
    let mut s = String::new();
    s.push_str("id: e1\nretry: 1000\ndata:\n\n");
    for i in 0..3 {
        s.push_str(&format!("id: e{}\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":1,\"progress\":{i}}}}}\n\n", i + 2));
    }
    s.push_str(&format!("id: e9\nevent: message\ndata: {CALL_RESULT}\n\n"));
    s
}

fn bench_stream(c: &mut Criterion) {
    let gw = two_backends();
    let host = NullHost::new();
    let ctx = StreamCtx {
        backend: 0,
        sid: [7; 16],
        method: Some("tools/call".into()),
        request_id: Some("7".into()),
        era: None,
    };
    let mut g = c.benchmark_group("stream");
    let with_ids = sse_stream();
    let without_ids: String = with_ids
        .lines()
        .filter(|l| !l.starts_with("id: "))
        .map(|l| format!("{l}\n"))
        .collect();
    g.throughput(Throughput::Bytes(with_ids.len() as u64));
    g.bench_function("SSE tools/call answer, 5 events with ids (sealed)", |b| {
        b.iter(|| {
            let mut rw = SseRewrite::new(1 << 20);
            let mut out = Vec::with_capacity(1024);
            let _ = rw.feed(&gw, &host, &ctx, black_box(with_ids.as_bytes()), &mut out);
            out
        })
    });
    g.throughput(Throughput::Bytes(without_ids.len() as u64));
    g.bench_function("SSE tools/call answer, 5 events without ids", |b| {
        b.iter(|| {
            let mut rw = SseRewrite::new(1 << 20);
            let mut out = Vec::with_capacity(1024);
            let _ = rw.feed(
                &gw,
                &host,
                &ctx,
                black_box(without_ids.as_bytes()),
                &mut out,
            );
            out
        })
    });
    g.throughput(Throughput::Bytes(CALL_RESULT.len() as u64));
    g.bench_function("JSON tools/call answer (rewrite_message)", |b| {
        b.iter(|| {
            let mut a = stream::Answer::default();
            stream::rewrite_message(&gw, &ctx, black_box(CALL_RESULT), &mut a)
        })
    });
    g.finish();
}

fn headers(session: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "127.0.0.1:10000"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("content-length", "100"),
        ("user-agent", "mcpgw-bench"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "2b1c7c43-6a55-4a55-8ad4-7d3e0e2f1a90"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(s) = session {
        h.push(("mcp-session-id".into(), s.into()));
        h.push(("mcp-protocol-version".into(), "2025-06-18".into()));
    }
    h
}

fn response_headers(ct: &str) -> Vec<(String, String)> {
    [
        (":status", "200"),
        ("content-type", ct),
        ("content-length", "110"),
        ("date", "Sat, 21 Nov 2026 18:00:00 GMT"),
        ("x-envoy-upstream-service-time", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// One `tools/call` through the gateway logic, request to answer, as the
/// adapter drives it. Returns whether it went the expected way.
fn tools_call(
    gw: &Arc<Gateway>,
    host: &mut NullHost,
    req_headers: &[(String, String)],
    body: &[u8],
    resp_headers: &[(String, String)],
    resp_body: &[u8],
) -> bool {
    let mut ex = Exchange::new(Arc::clone(gw));
    if ex.on_request_headers(host, req_headers, false) != HeadersAction::NeedBody {
        return false;
    }
    let forwarded = matches!(ex.on_request_body(host, body), BodyAction::Forward { .. });
    ex.on_response_start(host);
    let _ = ex.on_response_headers(host, resp_headers);
    let r = ex.on_response_body(host, resp_body, true);
    ex.on_done(host);
    forwarded && !matches!(r, ResponseBodyAction::Buffer)
}

fn bench_exchange(c: &mut Criterion) {
    let gw = two_backends();
    let token = session().seal(&gw.cfg.keys, &[3; 24]);
    let req_headers = headers(Some(&token));
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"b0__echo","arguments":{"text":"hello"}}}"#;
    let json_headers = response_headers("application/json");
    let sse_headers = response_headers("text/event-stream");
    let sse_body = format!("event: message\ndata: {CALL_RESULT}\n\n");
    let mut host = NullHost::new();
    assert!(
        tools_call(
            &gw,
            &mut host,
            &req_headers,
            body,
            &json_headers,
            CALL_RESULT.as_bytes()
        ),
        "tools/call did not route"
    );
    let mut g = c.benchmark_group("exchange");
    g.bench_function("tools/call, JSON answer (whole request)", |b| {
        b.iter(|| {
            tools_call(
                &gw,
                &mut host,
                &req_headers,
                black_box(body),
                &json_headers,
                CALL_RESULT.as_bytes(),
            )
        })
    });
    g.bench_function("tools/call, SSE answer (whole request)", |b| {
        b.iter(|| {
            tools_call(
                &gw,
                &mut host,
                &req_headers,
                black_box(body),
                &sse_headers,
                sse_body.as_bytes(),
            )
        })
    });
    // The parts: request headers alone (session open, header checks).
    g.bench_function("tools/call, request headers only", |b| {
        b.iter(|| {
            let mut ex = Exchange::new(Arc::clone(&gw));
            ex.on_request_headers(&mut host, black_box(&req_headers), false)
        })
    });
    g.bench_function("tools/call, request headers + body", |b| {
        b.iter_batched(
            || {
                let mut ex = Exchange::new(Arc::clone(&gw));
                let mut h = NullHost::new();
                let _ = ex.on_request_headers(&mut h, &req_headers, false);
                ex
            },
            |mut ex| ex.on_request_body(&mut NullHost::new(), black_box(body)),
            BatchSize::SmallInput,
        )
    });

    // The large list through the fan-out path: request, dispatch, the
    // backend's 2 MB answer, merge, the gateway's own answer.
    let big = gateway(compile(&format!(
        r#"{{"session":{{"key":"{KEY}"}},"prefix":"always","backends":[
            {{"name":"big","cluster":"big","tools":{{"exclude_regex":["7$"]}}}}]}}"#
    )));
    let mut s = session();
    s.backends.truncate(1);
    if let Some(b) = s.backends.first_mut() {
        b.name = "big".into();
    }
    let big_token = s.seal(&big.cfg.keys, &[3; 24]);
    let big_headers = headers(Some(&big_token));
    let list_body = br#"{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{}}"#;
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{}}}"#,
        tools_list_result(2000, 1000)
    );
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function(
        "tools/list fan-out, 2000 tools ~2 MB (whole request)",
        |b| {
            b.iter_batched(
                || CallResponse {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: answer.as_bytes().to_vec(),
                },
                |resp| {
                    let mut h = NullHost::new();
                    let mut ex = Exchange::new(Arc::clone(&big));
                    let _ = ex.on_request_headers(&mut h, &big_headers, false);
                    let _ = ex.on_request_body(&mut h, list_body);
                    let token = h.next_token;
                    let r = ex.on_call_response(&mut h, token, resp);
                    ex.on_done(&mut h);
                    r
                },
                BatchSize::LargeInput,
            )
        },
    );
    g.finish();
}

/// The authorization decision per call and per listed item: scope rules
/// alone, and with CEL conditions (on headers and claims, and on the call's
/// arguments, which are parsed from `params` first).
fn bench_policy(c: &mut Criterion) {
    use mcpgw_core::gateway::auth::Principal;
    use mcpgw_core::gateway::policy::{self, Access, Caller, RawPolicy, Resource};
    let compile = |v: serde_json::Value| {
        let raw: RawPolicy = serde_json::from_value(v).expect("policy");
        policy::compile(&raw, &["github", "docs"]).expect("compile")
    };
    let scopes = compile(serde_json::json!({"rules": [
        {"action": "deny", "target": {"tools": [{"backend": "github", "regex": "delete_.*"}]}},
        {"when": {"scopes": ["issues:read"]}, "target": {"tools": [{"backend": "github", "regex": "(get|list)_.*"}]}},
        {"when": {"claims": {"groups": "admins"}}}
    ]}));
    let with_cel = compile(serde_json::json!({"rules": [
        {"when": {"scopes": ["issues:read"]}, "target": {"tools": [{"backend": "github", "regex": "(get|list)_.*"}]},
         "cel": "request.headers['x-tenant-id'] == 't-123' && request.auth.jwt.claims.tenant == 'acme'"},
        {"when": {"scopes": ["issues:read"]}, "target": {"tools": [{"backend": "github", "name": "create_issue"}]},
         "cel": "request.mcp.params.arguments.repo.startsWith('acme/') && size(request.mcp.params.arguments.title) < 200"}
    ]}));
    let mut claims = serde_json::Map::new();
    claims.insert("tenant".into(), "acme".into());
    claims.insert("sub".into(), "alice".into());
    let p = Principal {
        issuer: "https://auth.example.com".into(),
        subject: "alice".into(),
        scopes: vec!["mcp".into(), "issues:read".into()],
        claims,
    };
    let headers = vec![
        ("x-tenant-id".to_string(), "t-123".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
        (
            "accept".to_string(),
            "application/json, text/event-stream".to_string(),
        ),
    ];
    let caller = Caller {
        principal: Some(&p),
        http_method: "POST",
        path: "/mcp",
        host: "mcp.example.com",
        headers: &headers,
    };
    let params = serde_json::value::RawValue::from_string(
        r#"{"name":"github__create_issue","arguments":{"repo":"acme/widgets","title":"Broken","body":"It broke."}}"#
            .to_string(),
    )
    .expect("params");
    let access = |name: &'static str| Access {
        resource: Resource::tool("github", name),
        method: "tools/call",
        params: Some(&params),
    };
    let mut g = c.benchmark_group("policy");
    g.bench_function("call/scope_rules", |b| {
        b.iter(|| black_box(scopes.authorize(&caller, &access("list_issues"))))
    });
    g.bench_function("call/cel_headers_claims", |b| {
        b.iter(|| black_box(with_cel.authorize(&caller, &access("list_issues"))))
    });
    g.bench_function("call/cel_arguments", |b| {
        b.iter(|| black_box(with_cel.authorize(&caller, &access("create_issue"))))
    });
    let names: Vec<String> = (0..100).map(|i| format!("list_thing_{i}")).collect();
    g.throughput(Throughput::Elements(100));
    g.bench_function("list_100_tools/scope_rules", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|n| scopes.may_use(&caller, Resource::tool("github", n)))
                .count()
        })
    });
    g.bench_function("list_100_tools/cel", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|n| with_cel.may_use(&caller, Resource::tool("github", n)))
                .count()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_session,
    bench_merge,
    bench_stream,
    bench_exchange,
    bench_policy
);
criterion_main!(benches);
