//! Token exchange (RFC 8693) through real Envoy with `jwt_authn`: a local
//! token service (`mcpgw_e2e::sts`) and backends that accept only tokens it
//! issued (verified against its JWKS) and report their claims. One Envoy for
//! the whole journey: two users, reuse until expiry, single flight across
//! concurrent misses, refusal, a slow then a down token service, and no token
//! in any log; with each build of mcpgw (proxy-wasm and the dynamic module).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mcpgw_e2e::backends::{self, Kind, TestServer};
use mcpgw_e2e::client::{Answer, Raw, ACCEPT_BOTH};
use mcpgw_e2e::envoy::{render_with, workspace_root, Cluster, Engine, Envoy};
use mcpgw_e2e::stack::SESSION_KEY;
use mcpgw_e2e::sts::{self, Mode, TokenService, CLIENT_ID, CLIENT_SECRET};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://auth.test";
const RESOURCE: &str = "https://mcp.test/mcp";
/// Exchanged tokens live 2 s (reused 1.8 s): expiry without long sleeps.
const LIFETIME_S: u64 = 2;

fn key(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("testdata/oauth").join(name)).expect("test key")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn client_token(sub: &str) -> String {
    let claims = json!({"iss": ISSUER, "sub": sub, "aud": RESOURCE, "iat": now(), "exp": now() + 600, "scope": "mcp"});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa".into());
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key("rsa.pem").as_bytes()).expect("key"),
    )
    .expect("sign")
}

struct Stack {
    sts: TokenService,
    envoy: Envoy,
    /// Every Authorization value the exchanging backends received.
    seen: Arc<Mutex<Vec<String>>>,
    raw: Raw,
    _servers: Vec<TestServer>,
}

impl Stack {
    async fn start(engine: Engine) -> Stack {
        let sts = TokenService::start(ISSUER, RESOURCE, LIFETIME_S).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let verifying = |kind| {
            let layer = sts::verifier(&sts.jwks(), Arc::clone(&seen));
            backends::spawn_wrapped(kind, 0, move |r| r.layer(axum::middleware::from_fn(layer)))
        };
        let alpha = verifying(Kind::Alpha).await.expect("alpha");
        let beta = verifying(Kind::Beta).await.expect("beta");
        let plain = backends::spawn(Kind::Beta).await;
        let endpoint = format!("http://127.0.0.1:{}/token", sts.port());
        let exchange = |audience: &str, actor: bool| {
            let mut te = json!({
                "cluster": "sts",
                "token_endpoint": endpoint,
                "audience": audience,
                "scopes": ["tools"],
                "timeout": "1s",
                "client_auth": {"client_id": CLIENT_ID, "client_secret": "${STS_CLIENT_SECRET}"},
            });
            if actor {
                te["actor_token"] = json!({"client_assertion_jwt": {
                    "issuer": "https://mcpgw.test", "subject": "mcpgw-gateway",
                    "private_key": "${ACTOR_KEY}", "algorithm": "ES256", "key_id": "test-ec"}});
            }
            te
        };
        let plugin = json!({
            "session": {"key": SESSION_KEY},
            "auth": {"resource": RESOURCE, "authorization_servers": [ISSUER], "scopes": ["mcp"]},
            "backends": [
                {"name": "alpha", "cluster": "alpha", "token_exchange": exchange("https://alpha.test", true)},
                {"name": "beta", "cluster": "beta", "token_exchange": exchange("https://beta.test", false)},
                {"name": "plain", "cluster": "plain"}
            ]
        });
        let jwks = serde_json::to_string(&key("jwks.json").replace('\n', "")).expect("yaml string");
        // `forward: true`: mcpgw needs the client's token to exchange it
        // (and removes it before anything goes upstream).
        let jwt_authn = format!(
            r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                test:
                  issuer: {ISSUER}
                  audiences: [{RESOURCE}]
                  local_jwks: {{inline_string: {jwks}}}
                  payload_in_metadata: jwt_payload
                  forward_payload_header: x-mcpgw-jwt-payload
                  forward: true
              rules:
              - match: {{prefix: /}}
                requires: {{requires_any: {{requirements: [{{provider_name: test}}, {{allow_missing_or_failed: {{}}}}]}}}}
"#
        );
        let cluster = |name: &str, port: u16| Cluster {
            name: name.into(),
            port,
        };
        let yaml = render_with(
            engine,
            &plugin.to_string(),
            &[
                cluster("alpha", alpha.port()),
                cluster("beta", beta.port()),
                cluster("plain", plain.port()),
                cluster("sts", sts.port()),
            ],
            &["STS_CLIENT_SECRET", "ACTOR_KEY"],
            &jwt_authn,
        );
        let actor_key = key("ec.pem");
        let envoy = tokio::task::spawn_blocking(move || {
            // One worker: one token cache, so exchanges can be counted exactly.
            let env = [
                ("STS_CLIENT_SECRET", CLIENT_SECRET),
                ("ACTOR_KEY", actor_key.as_str()),
            ];
            Envoy::try_start_workers(&yaml, &env, 1).unwrap_or_else(|e| panic!("{e}"))
        })
        .await
        .expect("envoy");
        Stack {
            raw: Raw::new(&envoy.url()),
            sts,
            envoy,
            seen,
            _servers: vec![alpha, beta, plain],
        }
    }

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
        self.raw
            .send(reqwest::Method::POST, &headers, Some(body.to_string()))
            .await
    }

    async fn session(&self, token: &str) -> (String, Value) {
        let a = self
            .post(token, None, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        (
            a.header("mcp-session-id").expect("session").to_string(),
            a.json(),
        )
    }

    async fn call(&self, token: &str, sid: &str, tool: &str) -> Value {
        self.post(token, Some(sid), json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":tool,"arguments":{}}}))
            .await
            .json()
    }

    /// What `tool` (a `whoami`) saw.
    async fn whoami(&self, token: &str, sid: &str, tool: &str) -> Value {
        let r = self.call(token, sid, tool).await;
        let text = r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{tool}: {r}"));
        serde_json::from_str(text).expect("whoami json")
    }

    /// A 2026-07-28 request (no session; the routing headers its body implies).
    async fn modern(&self, token: &str, id: u64, method: &str, mut params: Value) -> Value {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        let name = params["name"].as_str().map(str::to_string);
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
            ("authorization", auth.as_str()),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ];
        if let Some(n) = &name {
            headers.push(("mcp-name", n.as_str()));
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let a = self
            .raw
            .send(reqwest::Method::POST, &headers, Some(body.to_string()))
            .await;
        assert_eq!(a.status, 200, "{method}: {}", a.body);
        a.json()
    }

    /// What `tool` (a `whoami`) saw, called by a 2026-07-28 client.
    async fn modern_whoami(&self, token: &str, tool: &str) -> Value {
        let r = self
            .modern(
                token,
                7,
                "tools/call",
                json!({"name": tool, "arguments": {}}),
            )
            .await;
        let text = r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{tool}: {r}"));
        serde_json::from_str(text).expect("whoami json")
    }

    /// A counter from `/stats/prometheus`, e.g. `mcpgw_token_exchanges_total{outcome="ok",backend="alpha"}`.
    fn stat(&self, series: &str) -> u64 {
        let stats = self
            .envoy
            .admin_get("/stats/prometheus")
            .unwrap_or_default();
        stats
            .lines()
            // The dynamic module's stats carry Envoy's prefix for module metrics.
            .filter_map(|l| {
                l.strip_prefix(mcpgw_module::names::PROMETHEUS_PREFIX)
                    .unwrap_or(l)
                    .strip_prefix(&format!("{series} "))
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }
}

/// Wait until tokens issued before now are past their reuse window.
async fn expire() {
    tokio::time::sleep(Duration::from_millis(LIFETIME_S * 1000 + 100)).await;
}

mcpgw_e2e::per_engine!(backends_see_the_user_never_the_users_token);

async fn backends_see_the_user_never_the_users_token(engine: Engine) {
    let s = Stack::start(engine).await;
    let alice = client_token("alice");
    let bob = client_token("bob");

    // initialize fans out: both exchanging backends get their own token.
    let (sid, init) = s.session(&alice).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "mcpgw", "{init}");
    assert_eq!(s.sts.exchanges(), 2, "one exchange per exchanging backend");
    let list = s
        .post(
            &alice,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}),
        )
        .await;
    let list = list.json();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"alpha__whoami")
            && names.contains(&"beta__whoami")
            && names.contains(&"plain__whoami"),
        "{names:?}"
    );
    assert_eq!(s.sts.exchanges(), 2, "the list reused both tokens");

    // Delegation (alpha: the gateway's actor assertion) and impersonation (beta).
    let a = s.whoami(&alice, &sid, "alpha__whoami").await;
    assert_eq!(a["token_claims"]["sub"], "alice", "{a}");
    assert_eq!(a["token_claims"]["aud"], "https://alpha.test");
    assert_eq!(a["token_claims"]["scope"], "tools");
    assert_eq!(a["token_claims"]["act"]["sub"], "mcpgw-gateway", "{a}");
    let b = s.whoami(&alice, &sid, "beta__whoami").await;
    assert_eq!(b["token_claims"]["sub"], "alice");
    assert_eq!(b["token_claims"]["aud"], "https://beta.test");
    assert_eq!(b["token_claims"].get("act"), None, "{b}");
    let p = s.whoami(&alice, &sid, "plain__whoami").await;
    assert_eq!(
        p["authorization"],
        Value::Null,
        "a backend without exchange gets no token at all"
    );

    // A second user sees their own identity.
    let (bsid, _) = s.session(&bob).await;
    let b = s.whoami(&bob, &bsid, "alpha__whoami").await;
    assert_eq!(b["token_claims"]["sub"], "bob");
    let a = s.whoami(&alice, &sid, "alpha__whoami").await;
    assert_eq!(a["token_claims"]["sub"], "alice");

    // A 2026-07-28 client (no session): learning each backend's era, the
    // list fan-out and the routed calls go with the caller's exchanged
    // tokens, as in the session era.
    let list = s.modern(&bob, 5, "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"alpha__whoami") && names.contains(&"beta__whoami"),
        "{names:?}"
    );
    let b = s.modern_whoami(&bob, "beta__whoami").await;
    assert_eq!(b["token_claims"]["sub"], "bob", "{b}");
    assert_eq!(b["token_claims"]["aud"], "https://beta.test");
    let a = s.modern_whoami(&bob, "alpha__whoami").await;
    assert_eq!(a["token_claims"]["sub"], "bob", "{a}");
    assert_eq!(a["token_claims"]["act"]["sub"], "mcpgw-gateway", "{a}");
    let a = s.modern_whoami(&alice, "alpha__whoami").await;
    assert_eq!(a["token_claims"]["sub"], "alice", "{a}");

    // Reused until shortly before expiry, then exchanged again.
    expire().await;
    let before = s.sts.exchanges();
    let first = s.whoami(&alice, &sid, "alpha__whoami").await;
    for _ in 0..3 {
        s.whoami(&alice, &sid, "alpha__whoami").await;
    }
    assert_eq!(s.sts.exchanges(), before + 1, "one exchange, then cached");
    expire().await;
    let fresh = s.whoami(&alice, &sid, "alpha__whoami").await;
    assert_eq!(s.sts.exchanges(), before + 2, "refreshed after expiry");
    assert!(fresh["token_claims"]["jti"] != first["token_claims"]["jti"]);

    // Concurrent misses share one exchange.
    expire().await;
    let before = s.sts.exchanges();
    // Separate clients: separate connections, spread over the workers.
    let clients: Vec<Raw> = (0..8).map(|_| Raw::new(&s.envoy.url())).collect();
    let auth = format!("Bearer {alice}");
    // Distinct JSON-RPC ids: one backend session answers them all.
    let calls = clients.iter().enumerate().map(|(i, c)| {
        let body = json!({"jsonrpc":"2.0","id":100 + i,"method":"tools/call","params":{"name":"alpha__whoami","arguments":{}}}).to_string();
        let headers = [
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
            ("authorization", auth.as_str()),
            ("mcp-session-id", sid.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        async move { c.send(reqwest::Method::POST, &headers, Some(body)).await }
    });
    for a in futures::future::join_all(calls).await {
        let text = a.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let who: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
            panic!(
                "{} {:?} {}\n{}",
                a.status,
                a.headers,
                a.body,
                std::fs::read_to_string(s.envoy.dir.path().join("access.log")).unwrap_or_default()
            )
        });
        assert_eq!(who["token_claims"]["sub"], "alice");
    }
    let made = s.sts.exchanges() - before;
    assert_eq!(made, 1, "one exchange for 8 concurrent calls");
    let stats = s.envoy.admin_get("/stats/prometheus").unwrap_or_default();
    assert!(
        s.stat(r#"mcpgw_token_cache_lookups_total{outcome="shared",backend="alpha"}"#)
            + s.stat(r#"mcpgw_token_cache_lookups_total{outcome="hit",backend="alpha"}"#)
            >= 7,
        "{}",
        stats
            .lines()
            .filter(|l| l.contains("token"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Refused: a JSON-RPC error naming the backend; the others keep working.
    expire().await;
    s.sts.set_mode(Mode::Refuse("invalid_target".into()));
    let r = s.call(&alice, &sid, "alpha__whoami").await;
    let m = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("backend alpha") && m.contains("invalid_target"),
        "{r}"
    );
    assert_eq!(
        s.whoami(&alice, &sid, "plain__whoami").await["authorization"],
        Value::Null
    );

    // Slow: a bounded error (the 1 s timeout), other backends unaffected.
    s.sts.set_mode(Mode::Slow(Duration::from_secs(3)));
    tokio::time::sleep(Duration::from_millis(1100)).await; // the refusal is remembered for 1 s
    let started = Instant::now();
    let r = s.call(&alice, &sid, "beta__whoami").await;
    let took = started.elapsed();
    let m = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("backend beta") && m.contains("did not answer within 1000 ms"),
        "{r}"
    );
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let (_, init) = s.session(&client_token("carol")).await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "mcpgw",
        "a session with the plain backend: {init}"
    );
    s.sts.set_mode(Mode::Issue);

    // Down (connections refused): a prompt error naming the backend; a new
    // session still gets the backends that need no exchange.
    s.sts.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await; // the failure is remembered for 1 s
    let started = Instant::now();
    let r = s.call(&alice, &sid, "beta__whoami").await;
    let took = started.elapsed();
    let m = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("backend beta") && m.contains("token service"),
        "{r}"
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let (dsid, init) = s.session(&client_token("dave")).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "mcpgw", "{init}");
    assert_eq!(
        s.whoami(&client_token("dave"), &dsid, "plain__whoami")
            .await["authorization"],
        Value::Null
    );

    // Metrics.
    assert!(s.stat(r#"mcpgw_token_exchanges_total{outcome="ok",backend="alpha"}"#) >= 4);
    assert!(s.stat(r#"mcpgw_token_exchanges_total{outcome="refused",backend="alpha"}"#) >= 1);
    assert!(s.stat(r#"mcpgw_token_exchanges_total{outcome="unavailable",backend="beta"}"#) >= 1);

    // No backend ever got a client token; no token in Envoy's log or access log.
    let seen = s.seen.lock().expect("seen").clone();
    assert!(!seen.is_empty());
    for client in [&alice, &bob] {
        assert!(
            seen.iter().all(|v| !v.contains(client.as_str())),
            "a backend got a client token"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // access log flush
    let logs = s.envoy.log()
        + &std::fs::read_to_string(s.envoy.dir.path().join("access.log")).unwrap_or_default();
    assert!(
        logs.contains("token exchange for alice failed (refused)"),
        "the refusal is logged"
    );
    let secrets: Vec<String> = [alice.clone(), bob.clone(), CLIENT_SECRET.to_string()]
        .into_iter()
        .chain(s.sts.issued())
        .collect();
    for secret in &secrets {
        for part in secret.split('.').filter(|p| p.len() > 16) {
            assert!(!logs.contains(part), "a token value is in the logs");
        }
    }
    s.envoy.assert_log_clean();
}
