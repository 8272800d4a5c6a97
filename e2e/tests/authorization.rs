//! The authorization policy with real Envoy: `jwt_authn` verifies tokens
//! (signed here with the test keys), mcpgw decides for every tool, prompt,
//! resource and template, Envoy's local rate limit sees the MCP attributes
//! mcpgw exposes, and the audit records go through Envoy's access log.
//! One Envoy for the whole file: the scenarios run in order on it.

use jsonwebtoken::Algorithm;
use mcpgw_e2e::backends::{self, Kind};
use mcpgw_e2e::client::{Answer, Raw, ACCEPT_BOTH};
use mcpgw_e2e::envoy::{render_opts, Cluster, Engine, Envoy, RenderOpts};
use mcpgw_e2e::fixture;
use mcpgw_e2e::jwt;
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://auth.test";
const RESOURCE: &str = "https://mcp.test/mcp";
const LIMITED: &str = "mcpgw_rate_limited_total{backend=\"alpha\",tool=\"alpha__whoami\"}";

fn token(extra: Value) -> String {
    jwt::token(Algorithm::RS256, ISSUER, RESOURCE, extra)
}

struct Stack {
    envoy: Envoy,
}

impl Stack {
    async fn post(&self, token: &str, session: Option<&str>, body: Value) -> Answer {
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
            ("authorization", auth.as_str()),
        ];
        if let Some(s) = session {
            headers.push(("mcp-session-id", s));
            headers.push(("mcp-protocol-version", "2025-11-25"));
        }
        Raw::new(&self.envoy.url())
            .send(reqwest::Method::POST, &headers, Some(body.to_string()))
            .await
    }

    /// A 2026-07-28 request (no session): routing headers and `_meta` added.
    async fn post_modern(&self, token: &str, mut body: Value) -> Answer {
        let auth = format!("Bearer {token}");
        let method = body["method"].as_str().unwrap_or_default().to_string();
        let name = body["params"]["name"]
            .as_str()
            .or(body["params"]["uri"].as_str())
            .map(str::to_string);
        body["params"]["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        });
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
            ("authorization", auth.as_str()),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method.as_str()),
        ];
        if let Some(n) = &name {
            headers.push(("mcp-name", n.as_str()));
        }
        Raw::new(&self.envoy.url())
            .send(reqwest::Method::POST, &headers, Some(body.to_string()))
            .await
    }

    async fn session(&self, token: &str) -> String {
        let a = self
            .post(token, None, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.header("mcp-session-id").expect("session").to_string()
    }

    /// The names (or URIs) a list shows this caller.
    async fn list(&self, token: &str, sid: &str, method: &str, key: &str) -> Vec<String> {
        let a = self
            .post(
                token,
                Some(sid),
                json!({"jsonrpc":"2.0","id":2,"method":method}),
            )
            .await;
        assert_eq!(a.status, 200, "{method}: {}", a.body);
        let mut names: Vec<String> = a.json()["result"][key]
            .as_array()
            .unwrap_or_else(|| panic!("{method}: {}", a.body))
            .iter()
            .map(|i| {
                ["uriTemplate", "uri", "name"]
                    .iter()
                    .find_map(|k| i[*k].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }

    /// Requests Envoy sent to `cluster` so far.
    fn upstream_requests(&self, cluster: &str) -> u64 {
        let stats = self
            .envoy
            .admin_get("/stats?filter=upstream_rq_total")
            .unwrap_or_default();
        let key = format!("cluster.{cluster}.upstream_rq_total: ");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A counter, by its Prometheus name and labels as shown by Envoy.
    fn counter(&self, series: &str) -> u64 {
        let text = self
            .envoy
            .admin_get("/stats/prometheus")
            .unwrap_or_default()
            // The module's stats carry Envoy's prefix for module metrics.
            .replace(mcpgw_module::names::PROMETHEUS_PREFIX, "");
        text.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }
}

fn call(id: u64, name: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}})
}

mcpgw_e2e::per_engine!(callers_see_and_use_exactly_their_grant);

async fn callers_see_and_use_exactly_their_grant(engine: Engine) {
    let alpha = backends::spawn(Kind::Alpha).await;
    let fx = fixture::spawn().await;
    let plugin = json!({
        "session": {"key": SESSION_KEY},
        "auth": {
            "resource": RESOURCE,
            "authorization_servers": [ISSUER],
            "scopes": ["mcp"],
        },
        "authorization": {"rules": [
            {"name": "alpha tools", "when": {"scopes": ["mcp"]},
             "target": {"tools": [{"backend": "alpha", "regex": "echo|whoami"}]}},
            {"name": "small adds", "when": {"scopes": ["mcp"]},
             "target": {"tools": [{"backend": "alpha", "name": "add"}]},
             "cel": "request.mcp.params.arguments.a < 100"},
            {"name": "adds", "when": {"scopes": ["mcp", "math"]},
             "target": {"tools": [{"backend": "alpha", "name": "add"}]}},
            {"name": "blue team", "when": {"claims": {"team": "blue"}},
             "target": {"prompts": [{"backend": "fx", "name": "test_simple_prompt"}],
                        "resources": [{"backend": "fx", "prefix": "test://static-"},
                                      {"backend": "fx", "template": "test://template/{id}/data"}]}},
            {"name": "admins", "when": {"claims": {"groups": "admins"}}}
        ]},
        "audit": {"arguments": [{"backend": "alpha", "tool": "add", "names": ["a"]}]},
        "rate_limit_headers": true,
        "backends": [
            {"name": "alpha", "cluster": "alpha"},
            {"name": "fx", "cluster": "fx", "authority": format!("127.0.0.1:{}", fx.port())}
        ]
    });
    let jwt_authn = jwt::jwt_authn_filter(ISSUER, RESOURCE, true);
    // Two calls of alpha__whoami per second, for everyone.
    let rate_limit = r#"          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: mcp_rate_limit
              token_bucket: {max_tokens: 1000000, tokens_per_fill: 1000000, fill_interval: 1s}
              filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}}
              filter_enforced: {default_value: {numerator: 100, denominator: HUNDRED}}
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              descriptors:
              - entries: [{key: mcp_tool, value: alpha__whoami}]
                token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 1s}
              rate_limits:
              - actions: [{request_headers: {header_name: x-mcpgw-tool, descriptor_key: mcp_tool}}]
"#;
    let yaml = render_opts(
        &plugin.to_string(),
        &[
            Cluster {
                name: "alpha".into(),
                port: alpha.port(),
            },
            Cluster {
                name: "fx".into(),
                port: fx.port(),
            },
        ],
        &[],
        &jwt_authn,
        &RenderOpts {
            engine: Some(engine),
            filters_after: rate_limit.into(),
            audit_log: true,
            ..Default::default()
        },
    );
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy");
    let s = Stack { envoy };

    // A caller with scope `mcp`: alpha's echo, whoami and add (some adds).
    let user = token(json!({"sub": "alice", "client_id": "agent-1"}));
    let usid = s.session(&user).await;
    assert_eq!(
        s.list(&user, &usid, "tools/list", "tools").await,
        ["alpha__add", "alpha__echo", "alpha__whoami"]
    );
    for (method, key) in [
        ("prompts/list", "prompts"),
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
    ] {
        assert!(
            s.list(&user, &usid, method, key).await.is_empty(),
            "{method}"
        );
    }
    let ok = s
        .post(
            &user,
            Some(&usid),
            call(3, "alpha__echo", json!({"text": "x"})),
        )
        .await;
    assert_eq!(
        ok.json()["result"]["content"][0]["text"],
        "alpha: x",
        "{}",
        ok.body
    );
    // The argument condition allows and refuses by value.
    let small = s
        .post(
            &user,
            Some(&usid),
            call(4, "alpha__add", json!({"a": 1, "b": 2})),
        )
        .await;
    assert_eq!(
        small.json()["result"]["structuredContent"]["sum"],
        3,
        "{}",
        small.body
    );
    let before = s.upstream_requests("alpha");
    let big = s
        .post(
            &user,
            Some(&usid),
            call(5, "alpha__add", json!({"a": 500, "b": 2})),
        )
        .await;
    assert_eq!(big.status, 403, "{}", big.body);
    // The smallest set of scopes that would allow it, added to the token's.
    assert!(
        big.header("www-authenticate")
            .unwrap_or_default()
            .contains("scope=\"mcp math\""),
        "{:?}",
        big.header("www-authenticate")
    );
    assert_eq!(big.json()["id"], 5);
    let refused = [
        json!({"jsonrpc":"2.0","id":6,"method":"prompts/get","params":{"name":"fx__test_simple_prompt"}}),
        json!({"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"fx+test://static-text"}}),
        json!({"jsonrpc":"2.0","id":8,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"fx+test://template/{id}/data"},"argument":{"name":"id","value":"1"}}}),
        call(9, "fx__test_simple_text", json!({})),
    ];
    let fx_before = s.upstream_requests("fx");
    for r in &refused {
        let a = s.post(&user, Some(&usid), r.clone()).await;
        assert_eq!(a.status, 403, "{r}: {}", a.body);
    }
    // Nothing refused reached a backend.
    assert_eq!(s.upstream_requests("alpha"), before);
    assert_eq!(s.upstream_requests("fx"), fx_before);

    // The same caller as a 2026-07-28 client (stateless): the same list,
    // private to it, and the same decisions.
    let a = s
        .post_modern(
            &user,
            json!({"jsonrpc":"2.0","id":20,"method":"tools/list","params":{}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut names: Vec<String> = a.json()["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", a.body))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, ["alpha__add", "alpha__echo", "alpha__whoami"]);
    assert_eq!(a.json()["result"]["cacheScope"], "private", "{}", a.body);
    let ok = s
        .post_modern(&user, call(21, "alpha__add", json!({"a": 1, "b": 2})))
        .await;
    assert_eq!(
        ok.json()["result"]["structuredContent"]["sum"],
        3,
        "{}",
        ok.body
    );
    let (alpha_before, fx_before) = (s.upstream_requests("alpha"), s.upstream_requests("fx"));
    for r in [
        call(22, "alpha__add", json!({"a": 500, "b": 2})),
        json!({"jsonrpc":"2.0","id":23,"method":"resources/read","params":{"uri":"fx+test://static-text"}}),
        call(24, "fx__test_simple_text", json!({})),
    ] {
        let a = s.post_modern(&user, r.clone()).await;
        assert_eq!(a.status, 403, "{r}: {}", a.body);
        assert_eq!(a.json()["id"], r["id"], "{}", a.body);
    }
    assert_eq!(s.upstream_requests("alpha"), alpha_before);
    assert_eq!(s.upstream_requests("fx"), fx_before);

    // The blue team (no `mcp` scope): the fixture's one prompt, its static
    // resources and its template, no tools.
    let blue = token(json!({"sub": "bob", "scope": "", "team": "blue"}));
    let bsid = s.session(&blue).await;
    assert!(s.list(&blue, &bsid, "tools/list", "tools").await.is_empty());
    assert_eq!(
        s.list(&blue, &bsid, "prompts/list", "prompts").await,
        ["fx__test_simple_prompt"]
    );
    assert_eq!(
        s.list(&blue, &bsid, "resources/list", "resources").await,
        ["fx+test://static-binary", "fx+test://static-text"]
    );
    assert_eq!(
        s.list(
            &blue,
            &bsid,
            "resources/templates/list",
            "resourceTemplates"
        )
        .await,
        ["fx+test://template/{id}/data"]
    );
    let a = s.post(&blue, Some(&bsid), json!({"jsonrpc":"2.0","id":10,"method":"resources/read","params":{"uri":"fx+test://template/7/data"}})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("fx+test://template/7/data"), "{}", a.body);
    let a = s.post(&blue, Some(&bsid), json!({"jsonrpc":"2.0","id":11,"method":"prompts/get","params":{"name":"fx__test_simple_prompt"}})).await;
    assert!(a.json()["result"]["messages"].is_array(), "{}", a.body);
    for r in [
        json!({"jsonrpc":"2.0","id":12,"method":"resources/read","params":{"uri":"fx+test://watched-resource"}}),
        json!({"jsonrpc":"2.0","id":13,"method":"prompts/get","params":{"name":"fx__test_prompt_with_arguments","arguments":{"arg1":"a","arg2":"b"}}}),
        call(14, "alpha__echo", json!({"text": "x"})),
    ] {
        assert_eq!(
            s.post(&blue, Some(&bsid), r.clone()).await.status,
            403,
            "{r}"
        );
    }

    // Admins: everything, every kind.
    let admin = token(json!({"sub": "root", "scope": "", "groups": ["ops", "admins"]}));
    let asid = s.session(&admin).await;
    assert!(s.list(&admin, &asid, "tools/list", "tools").await.len() > 6);
    assert!(s.list(&admin, &asid, "prompts/list", "prompts").await.len() >= 4);
    assert_eq!(
        s.list(&admin, &asid, "resources/list", "resources")
            .await
            .len(),
        3
    );

    // The rate limit trips on the third whoami in a second, with a JSON-RPC
    // error and a retry hint, and recovers.
    let limited_before = s.counter(LIMITED);
    let mut limited = None;
    for i in 0..4 {
        let a = s
            .post(&user, Some(&usid), call(20 + i, "alpha__whoami", json!({})))
            .await;
        if a.json()["error"]["code"] == -32029 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let limited = limited.expect("the third call within a second is limited");
    assert_eq!(limited.status, 200);
    let retry = limited.json()["error"]["data"]["retryAfter"]
        .as_u64()
        .expect("retry hint");
    assert!((1..=2).contains(&retry), "{}", limited.body);
    assert_eq!(
        limited.header("retry-after"),
        Some(retry.to_string().as_str())
    );
    assert!(s.counter(LIMITED) > limited_before);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let a = s
            .post(&user, Some(&usid), call(30, "alpha__whoami", json!({})))
            .await;
        if a.json()["result"].is_object() {
            break;
        }
        assert!(Instant::now() < deadline, "still limited: {}", a.body);
    }

    // The audit log: one record per call, get, read and denial, field by field.
    let records = wait_for_audit(&s.envoy, |r| r.iter().any(|x| x["jsonrpc_id"] == "30")).await;
    let small_add = find(&records, |r| r["jsonrpc_id"] == "4");
    assert_eq!(small_add["caller_issuer"], ISSUER);
    assert_eq!(small_add["caller_subject"], "alice");
    assert_eq!(small_add["caller_client_id"], "agent-1");
    assert_eq!(small_add["method"], "tools/call");
    assert_eq!(small_add["backend"], "alpha");
    assert_eq!(small_add["kind"], "tool");
    assert_eq!(small_add["resource"], "add");
    assert_eq!(small_add["decision"], "allow");
    assert_eq!(small_add["rule"], "small adds");
    assert_eq!(small_add["outcome"], "ok");
    assert_eq!(small_add["status"], 200);
    assert!(small_add["session"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(small_add["time"]
        .as_str()
        .is_some_and(|t| t.starts_with("20")));
    assert!(small_add["duration_ms"].as_u64().is_some());
    let args: Value =
        serde_json::from_str(small_add["arguments"].as_str().expect("arguments")).expect("json");
    assert_eq!(
        args,
        json!({"a": 1, "b": "[redacted]"}),
        "only listed argument values are kept"
    );
    let big_add = find(&records, |r| r["jsonrpc_id"] == "5");
    assert_eq!(
        (
            &big_add["decision"],
            &big_add["rule"],
            &big_add["outcome"],
            &big_add["status"]
        ),
        (
            &json!("deny"),
            &json!("default"),
            &json!("denied"),
            &json!(403)
        )
    );
    let echo = find(&records, |r| r["jsonrpc_id"] == "3");
    let echo_args: Value =
        serde_json::from_str(echo["arguments"].as_str().expect("arguments")).expect("json");
    assert_eq!(echo_args, json!({"text": "[redacted]"}));
    let read = find(&records, |r| r["jsonrpc_id"] == "10");
    assert_eq!(
        (
            &read["kind"],
            &read["resource"],
            &read["caller_subject"],
            &read["rule"]
        ),
        (
            &json!("resource"),
            &json!("test://template/7/data"),
            &json!("bob"),
            &json!("blue team")
        )
    );
    let denied_template = find(&records, |r| r["jsonrpc_id"] == "8");
    assert_eq!(
        (&denied_template["kind"], &denied_template["decision"]),
        (&json!("resource template"), &json!("deny"))
    );
    let limited_record = find(&records, |r| r["outcome"] == "rate_limited");
    assert_eq!(limited_record["resource"], "whoami");
    // Lists and initialize have no audit record.
    assert!(records
        .iter()
        .all(|r| r["method"] != "tools/list" && r["method"] != "initialize"));
    s.envoy.assert_log_clean();
    drop(alpha);
    drop(fx);
}

fn find(records: &[Value], f: impl Fn(&Value) -> bool) -> &Value {
    records
        .iter()
        .find(|r| f(r))
        .unwrap_or_else(|| panic!("no such audit record in {records:#?}"))
}

/// The audit records once `done` holds for them (Envoy flushes the file every 100 ms).
async fn wait_for_audit(envoy: &Envoy, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = envoy.audit_log();
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "audit log incomplete: {records:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
