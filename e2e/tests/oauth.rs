//! OAuth at the gateway with Envoy's real `jwt_authn` in front of mcpgw:
//! tokens signed here (RS256 and ES256) against a local JWKS.

use jsonwebtoken::Algorithm;
use mcpgw_e2e::backends::{self, Kind, TestServer};
use mcpgw_e2e::client::{Answer, Raw, ACCEPT_BOTH};
use mcpgw_e2e::envoy::{render_with, Cluster, Engine, Envoy};
use mcpgw_e2e::faulty::wait_log;
use mcpgw_e2e::jwt::{self, now};
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::{json, Value};
mcpgw_e2e::per_engine!(
    tokens_are_checked_and_challenged,
    per_tool_authorization_and_step_up,
    sessions_cannot_be_replayed_by_another_user,
    metadata_endpoints_and_cors,
    claims_come_from_metadata_when_no_payload_is_forwarded,
);

const ISSUER: &str = "https://auth.test";
const RESOURCE: &str = "https://mcp.test/mcp";
const PRM_URL: &str = "https://mcp.test/.well-known/oauth-protected-resource/mcp";

struct OAuthStack {
    _alpha: TestServer,
    _beta: TestServer,
    envoy: Envoy,
}

/// A token with standard claims, `extra` merged over them.
fn token(alg: Algorithm, extra: Value) -> String {
    jwt::token(alg, ISSUER, RESOURCE, extra)
}

fn forged() -> String {
    jwt::forged(
        &json!({"iss": ISSUER, "sub": "mallory", "aud": RESOURCE, "exp": now() + 600, "scope": "mcp beta:all"}),
    )
}

impl OAuthStack {
    async fn start(engine: Engine) -> OAuthStack {
        Self::start_with(engine, true).await
    }

    /// `payload_header: false` is how Envoy Gateway configures jwt_authn (it
    /// cannot forward the payload): mcpgw reads the claims from the metadata.
    async fn start_with(engine: Engine, payload_header: bool) -> OAuthStack {
        let alpha = backends::spawn(Kind::Alpha).await;
        let beta = backends::spawn(Kind::Beta).await;
        let plugin = json!({
            "session": {"key": SESSION_KEY},
            "allowed_origins": ["https://app.test"],
            "auth": {
                "resource": RESOURCE,
                "authorization_servers": [ISSUER],
                "scopes": ["mcp"],
                "scopes_supported": ["mcp", "beta:all"],
                "resource_name": "mcpgw test",
                "authorization_server_metadata": {"issuer": ISSUER, "authorization_endpoint": format!("{ISSUER}/authorize"), "token_endpoint": format!("{ISSUER}/token")}
            },
            "authorization": {"rules": [
                {"name": "mcp users", "when": {"scopes": ["mcp"]}, "target": {"tools": [{"backend": "alpha", "regex": "echo|count|whoami"}]}},
                {"name": "beta", "when": {"scopes": ["beta:all"]}, "target": {"backends": ["beta"]}},
                {"name": "admins", "when": {"claims": {"groups": "admins"}}}
            ]},
            "backends": [
                {"name": "alpha", "cluster": "alpha", "authority": format!("127.0.0.1:{}", alpha.port())},
                {"name": "beta", "cluster": "beta"}
            ]
        });
        let jwt_authn = jwt::jwt_authn_filter(ISSUER, RESOURCE, payload_header);
        let yaml = render_with(
            engine,
            &plugin.to_string(),
            &[
                Cluster {
                    name: "alpha".into(),
                    port: alpha.port(),
                },
                Cluster {
                    name: "beta".into(),
                    port: beta.port(),
                },
            ],
            &[],
            &jwt_authn,
        );
        let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
            .await
            .expect("envoy");
        OAuthStack {
            _alpha: alpha,
            _beta: beta,
            envoy,
        }
    }

    fn raw(&self) -> Raw {
        Raw::new(&self.envoy.url())
    }

    async fn post(&self, token: Option<&str>, session: Option<&str>, body: Value) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
        ];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        if let Some(s) = session {
            headers.push(("mcp-session-id", s));
            headers.push(("mcp-protocol-version", "2025-11-25"));
        }
        self.raw()
            .send(reqwest::Method::POST, &headers, Some(body.to_string()))
            .await
    }

    async fn session(&self, token: &str) -> String {
        let a = self
            .post(Some(token), None, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.header("mcp-session-id").expect("session").to_string()
    }
}

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
}

async fn tokens_are_checked_and_challenged(engine: Engine) {
    let s = OAuthStack::start(engine).await;
    // No token: the challenge points at the metadata and names the scope.
    let a = s.post(None, None, initialize()).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some(format!("Bearer resource_metadata=\"{PRM_URL}\", scope=\"mcp\"").as_str())
    );
    // Rejected tokens: expired, wrong issuer, wrong audience, unknown signing key.
    let expired = token(
        Algorithm::RS256,
        json!({"iat": now() - 7200, "exp": now() - 3600}),
    );
    let wrong_iss = token(Algorithm::RS256, json!({"iss": "https://evil.test"}));
    let wrong_aud = token(Algorithm::RS256, json!({"aud": "https://other.test/mcp"}));
    for (what, t) in [
        ("expired", expired),
        ("issuer", wrong_iss),
        ("audience", wrong_aud),
        ("signature", forged()),
    ] {
        let a = s.post(Some(&t), None, initialize()).await;
        assert_eq!(a.status, 401, "{what}: {}", a.body);
        let www = a.header("www-authenticate").unwrap_or_default().to_string();
        assert!(
            www.contains("error=\"invalid_token\"") && www.contains(PRM_URL),
            "{what}: {www}"
        );
    }
    // A client cannot smuggle its own "verified" payload past jwt_authn.
    let fake_payload = base64_url(
        &json!({"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "scope": "mcp beta:all"})
            .to_string(),
    );
    let a = s
        .raw()
        .send(
            reqwest::Method::POST,
            &[
                ("content-type", "application/json"),
                ("accept", ACCEPT_BOTH),
                ("x-mcpgw-jwt-payload", &fake_payload),
            ],
            Some(initialize().to_string()),
        )
        .await;
    assert_eq!(a.status, 401);
    // RS256 and ES256 tokens both work.
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let a = s
            .post(Some(&token(alg, json!({}))), None, initialize())
            .await;
        assert_eq!(a.status, 200, "{alg:?}: {}", a.body);
        assert!(a.header("mcp-session-id").is_some());
    }
}

fn base64_url(s: &str) -> String {
    use std::fmt::Write;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..(c.len() + 1) {
            let _ = out.write_char(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn per_tool_authorization_and_step_up(engine: Engine) {
    let s = OAuthStack::start(engine).await;
    let t = token(Algorithm::RS256, json!({}));
    let sid = s.session(&t).await;
    let list = s
        .post(
            Some(&t),
            Some(&sid),
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        )
        .await;
    let mut names: Vec<String> = list.json()["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["alpha__count", "alpha__echo", "alpha__whoami"]);

    let call = |name: &str| json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":name,"arguments":{"text":"x"}}});
    let ok = s.post(Some(&t), Some(&sid), call("alpha__echo")).await;
    assert_eq!(ok.json()["result"]["content"][0]["text"], "alpha: x");
    // The client's token stays at the gateway.
    let who = s.post(Some(&t), Some(&sid), call("alpha__whoami")).await;
    let who: Value = serde_json::from_str(
        who.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("{}"),
    )
    .expect("json");
    assert_eq!(who["authorization"], Value::Null);

    // Not allowed: 403 with a step-up challenge naming what would allow it.
    let denied = s.post(Some(&t), Some(&sid), call("beta__echo")).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(
        denied.header("www-authenticate"),
        Some(format!("Bearer error=\"insufficient_scope\", scope=\"mcp beta:all\", resource_metadata=\"{PRM_URL}\"").as_str())
    );
    let denied = s.post(Some(&t), Some(&sid), call("alpha__add")).await;
    assert_eq!(denied.status, 403);

    // After stepping up (same user, more scope) the same session works.
    let stepped = token(Algorithm::ES256, json!({"scope": "mcp beta:all"}));
    let ok = s.post(Some(&stepped), Some(&sid), call("beta__echo")).await;
    assert_eq!(
        ok.json()["result"]["content"][0]["text"],
        "beta: x",
        "{}",
        ok.body
    );
    // A claim rule: admins reach everything.
    let admin = token(
        Algorithm::RS256,
        json!({"sub": "root", "scope": "", "groups": ["ops", "admins"]}),
    );
    let asid = s.session(&admin).await;
    let ok = s.post(Some(&admin), Some(&asid), json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"alpha__add","arguments":{"a":1,"b":2}}})).await;
    assert_eq!(
        ok.json()["result"]["structuredContent"]["sum"],
        3,
        "{}",
        ok.body
    );
}

async fn sessions_cannot_be_replayed_by_another_user(engine: Engine) {
    let s = OAuthStack::start(engine).await;
    let alice = token(Algorithm::RS256, json!({"sub": "alice"}));
    let bob = token(Algorithm::ES256, json!({"sub": "bob"}));
    let sid = s.session(&alice).await;
    let ping = json!({"jsonrpc":"2.0","id":9,"method":"ping"});
    assert_eq!(
        s.post(Some(&alice), Some(&sid), ping.clone()).await.status,
        200
    );
    let replay = s.post(Some(&bob), Some(&sid), ping.clone()).await;
    assert_eq!(replay.status, 404, "{}", replay.body);
    // Without a token, still a 401 first.
    assert_eq!(s.post(None, Some(&sid), ping).await.status, 401);
}

async fn metadata_endpoints_and_cors(engine: Engine) {
    let s = OAuthStack::start(engine).await;
    let base = s.envoy.url().replace("/mcp", "");
    let http = reqwest::Client::new();
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .header("origin", "https://elsewhere.test")
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*")
        );
        let doc: Value = r.json().await.expect("json");
        assert_eq!(doc["resource"], RESOURCE);
        assert_eq!(doc["authorization_servers"], json!([ISSUER]));
        assert_eq!(doc["scopes_supported"], json!(["mcp", "beta:all"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["resource_name"], "mcpgw test");
    }
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.expect("get");
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.expect("json");
        assert_eq!(doc["token_endpoint"], format!("{ISSUER}/token"));
    }
    // Preflight and the challenge are readable by an allowed browser origin.
    let r = http
        .request(reqwest::Method::OPTIONS, s.envoy.url())
        .header("origin", "https://app.test")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-session-id",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.test")
    );
    let r = http
        .post(s.envoy.url())
        .header("origin", "https://app.test")
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .body(initialize().to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    assert!(r
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .contains("www-authenticate"));
    // Another origin is refused outright.
    let r = http
        .post(s.envoy.url())
        .header("origin", "https://evil.test")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
}

/// Envoy Gateway's jwt_authn forwards no payload: the proxy-wasm build reads
/// the claims from the metadata. The dynamic module cannot read inside it
/// (the ABI reads a namespace's top-level keys only): it refuses the valid
/// token with a 401 and says what to configure.
async fn claims_come_from_metadata_when_no_payload_is_forwarded(engine: Engine) {
    let s = OAuthStack::start_with(engine, false).await;
    let t = token(Algorithm::RS256, json!({}));
    if engine == Engine::Module {
        let a = s.post(Some(&t), None, initialize()).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let logged = wait_log(&s.envoy, &["forward_payload_header"]).await;
        assert!(logged.is_some(), "{}", s.envoy.filter_log().join("\n"));
        return;
    }
    let sid = s.session(&t).await;
    let call = |name: &str| json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":name,"arguments":{"text":"x"}}});
    let ok = s.post(Some(&t), Some(&sid), call("alpha__echo")).await;
    assert_eq!(
        ok.json()["result"]["content"][0]["text"],
        "alpha: x",
        "{}",
        ok.body
    );
    assert_eq!(
        s.post(Some(&t), Some(&sid), call("beta__echo"))
            .await
            .status,
        403
    );
    // A list claim (groups) read from the metadata still matches its rule.
    let admin = token(
        Algorithm::ES256,
        json!({"sub": "root", "scope": "", "groups": ["ops", "admins"]}),
    );
    let asid = s.session(&admin).await;
    let ok = s.post(Some(&admin), Some(&asid), call("beta__echo")).await;
    assert_eq!(
        ok.json()["result"]["content"][0]["text"],
        "beta: x",
        "{}",
        ok.body
    );
    // Audience and replay checks hold the same way.
    let wrong_aud = token(Algorithm::RS256, json!({"aud": "https://other.test/mcp"}));
    assert_eq!(
        s.post(Some(&wrong_aud), None, initialize()).await.status,
        401
    );
    let bob = token(Algorithm::RS256, json!({"sub": "bob"}));
    assert_eq!(
        s.post(
            Some(&bob),
            Some(&sid),
            json!({"jsonrpc":"2.0","id":9,"method":"ping"})
        )
        .await
        .status,
        404
    );
}
