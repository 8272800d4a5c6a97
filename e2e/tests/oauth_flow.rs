//! One complete OAuth flow with a real client library: the official Python
//! SDK's `OAuthClientProvider` (e2e/python/oauth_flow.py) against mcpgw as the
//! protected resource and a small local authorization server
//! (e2e/python/oauth_as.py: RFC 8414 metadata, RFC 7591 registration,
//! authorization code + PKCE S256, RFC 8707 resource, RFC 9207 `iss`).
//!
//! Envoy's `jwt_authn` verifies the tokens with the authorization server's
//! own JWKS, fetched from its `jwks_uri` through an Envoy cluster
//! (`remote_jwks`), as in production (envoy/envoy-oauth.yaml); nothing here
//! hands the key to Envoy.
//!
//! The SDK checks that the protected-resource metadata's `resource` is the
//! URL it connects to, so the listener port is chosen before Envoy starts
//! and `auth.resource` is `http://127.0.0.1:<that port>/mcp`.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use mcpgw_e2e::backends::{self, Kind, TestServer};
use mcpgw_e2e::envoy::{
    free_port, render_opts, workspace_root, Cluster, Engine, Envoy, RenderOpts,
};
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
mcpgw_e2e::per_engine!(python_sdk_oauth_client_full_flow,);

const REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";

fn python() -> String {
    std::env::var("MCPGW_PYTHON").unwrap_or_else(|_| {
        workspace_root()
            .join(".venv/bin/python")
            .display()
            .to_string()
    })
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// The test's authorization server, a child process killed on drop (it also
/// exits by itself when its stdin, held by `child`, closes).
struct AuthServer {
    _child: Child,
    issuer: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    /// Start it, allowing tokens for `resource` only.
    async fn start(resource: &str) -> AuthServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("oauth_as.log");
        let mut child = Command::new(python())
            .arg(workspace_root().join("e2e/python/oauth_as.py"))
            .arg("--key")
            .arg(workspace_root().join("testdata/oauth/rsa.pem"))
            .args(["--kid", "test-rsa", "--resource", resource])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start oauth_as.py (./build.sh test installs Python in .venv)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "oauth_as.py did not start within 20s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
        .expect("read oauth_as.py stdout");
        let issuer = serde_json::from_str::<Value>(&line).unwrap_or_else(|_| {
            panic!(
                "oauth_as.py: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })["issuer"]
            .as_str()
            .expect("issuer")
            .to_string();
        AuthServer {
            _child: child,
            issuer,
            log,
            _dir: dir,
        }
    }

    fn port(&self) -> u16 {
        self.issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("issuer port")
    }

    async fn get(&self, path: &str) -> Value {
        http()
            .get(format!("{}{path}", self.issuer))
            .send()
            .await
            .expect("authorization server")
            .json()
            .await
            .expect("json")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

struct FlowStack {
    _alpha: TestServer,
    auth_server: AuthServer,
    envoy: Envoy,
    resource: String,
}

impl FlowStack {
    async fn start(engine: Engine) -> FlowStack {
        let alpha = backends::spawn(Kind::Alpha).await;
        let mut failures = Vec::new();
        // The listener port is picked (bound, read, released) before Envoy
        // binds it; if something else takes it meanwhile, try another.
        for _ in 0..3 {
            let port = free_port();
            let resource = format!("http://127.0.0.1:{port}/mcp");
            let auth_server = AuthServer::start(&resource).await;
            // Configure jwt_authn from the issuer's metadata, as an operator would.
            let as_md = auth_server
                .get("/.well-known/oauth-authorization-server")
                .await;
            let jwks_uri = as_md["jwks_uri"].as_str().expect("jwks_uri").to_string();
            let issuer = auth_server.issuer.clone();
            let plugin = json!({
                "session": {"key": SESSION_KEY},
                "prefix": "always",
                "auth": {
                    "resource": resource,
                    "authorization_servers": [issuer],
                    "scopes": ["mcp"],
                    "resource_name": "mcpgw OAuth flow test"
                },
                "authorization": {"rules": [
                    {"name": "mcp users", "when": {"scopes": ["mcp"]}, "target": {"backends": ["alpha"]}}
                ]},
                "backends": [
                    {"name": "alpha", "cluster": "alpha", "authority": format!("127.0.0.1:{}", alpha.port())}
                ]
            });
            let jwt_authn = format!(
                r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                test_as:
                  issuer: "{issuer}"
                  audiences: ["{resource}"]
                  remote_jwks:
                    http_uri: {{uri: "{jwks_uri}", cluster: oauth_as, timeout: 5s}}
                    cache_duration: 300s
                  payload_in_metadata: jwt_payload
                  forward_payload_header: x-mcpgw-jwt-payload
                  forward: false
              rules:
              - match: {{prefix: /}}
                requires: {{requires_any: {{requirements: [{{provider_name: test_as}}, {{allow_missing_or_failed: {{}}}}]}}}}
"#
            );
            let yaml = render_opts(
                &plugin.to_string(),
                &[
                    Cluster {
                        name: "alpha".into(),
                        port: alpha.port(),
                    },
                    Cluster {
                        name: "oauth_as".into(),
                        port: auth_server.port(),
                    },
                ],
                &[],
                &jwt_authn,
                &RenderOpts {
                    listener_port: port,
                    engine: Some(engine),
                    ..Default::default()
                },
            );
            match tokio::task::spawn_blocking(move || Envoy::try_start(&yaml))
                .await
                .expect("envoy start")
            {
                Ok(envoy) => {
                    assert_eq!(envoy.port, port);
                    return FlowStack {
                        _alpha: alpha,
                        auth_server,
                        envoy,
                        resource,
                    };
                }
                Err(e) if e.contains("cannot bind") => failures.push(e),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free listener port in 3 tries:\n{}", failures.join("\n"));
    }

    /// Fail if the filter ever crashed or panicked.
    fn assert_vm_healthy(&self) {
        self.envoy.assert_log_clean();
    }
}

/// Run the Python client; its JSON report.
async fn run_client(url: &str) -> Value {
    let script = workspace_root().join("e2e/python/oauth_flow.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(python())
            .arg(&script)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("oauth_flow.py timed out")
    .expect("run oauth_flow.py (./build.sh test installs Python in .venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oauth_flow.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("json report")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

async fn python_sdk_oauth_client_full_flow(engine: Engine) {
    let stack = FlowStack::start(engine).await;
    let resource = stack.resource.clone();
    let issuer = stack.auth_server.issuer.clone();
    let origin = resource.trim_end_matches("/mcp").to_string();
    let prm_url = format!("{origin}/.well-known/oauth-protected-resource/mcp");

    let r = run_client(&resource).await;
    let events = stack.auth_server.get("/_test/events").await;
    let context = format!(
        "client report: {r:#}\nauthorization server: {events:#}\n{}",
        stack.auth_server.log()
    );

    // ----- the wire, as the client saw it --------------------------------
    let wire = r["wire"].as_array().expect("wire");
    eprintln!("wire (client side):");
    for w in wire {
        eprintln!(
            "  [{}] {} {}{} -> {}{}",
            s(&w["by"]),
            s(&w["method"]),
            s(&w["url"]),
            if w["bearer"].is_string() {
                " (Bearer)"
            } else {
                ""
            },
            w["status"],
            w["www_authenticate"]
                .as_str()
                .map(|h| format!(", WWW-Authenticate: {h}"))
                .unwrap_or_default()
        );
    }
    let access_token = s(&r["tokens"]["access_token"]).to_string();
    assert!(!access_token.is_empty(), "no token stored\n{context}");
    let expected = [
        ("sdk", "POST", resource.as_str(), 401),
        ("sdk", "GET", prm_url.as_str(), 200),
        (
            "sdk",
            "GET",
            &format!("{issuer}/.well-known/oauth-authorization-server"),
            200,
        ),
        ("sdk", "POST", &format!("{issuer}/register"), 201),
        ("browser", "GET", &format!("{issuer}/authorize"), 302),
        ("sdk", "POST", &format!("{issuer}/token"), 200),
        ("sdk", "POST", resource.as_str(), 200),
    ];
    assert!(wire.len() > expected.len(), "{context}");
    for (i, (by, method, url, status)) in expected.iter().enumerate() {
        let w = &wire[i];
        assert_eq!(
            (
                s(&w["by"]),
                s(&w["method"]),
                s(&w["url"]),
                w["status"].as_u64()
            ),
            (*by, *method, *url, Some(*status)),
            "exchange {i}\n{context}"
        );
    }
    // 1. No token: the 401 names the metadata (RFC 9728 section 5.1) and the scope.
    assert_eq!(wire[0]["bearer"], Value::Null);
    assert_eq!(
        s(&wire[0]["www_authenticate"]),
        format!("Bearer resource_metadata=\"{prm_url}\", scope=\"mcp\"")
    );
    // 5. The authorization server sent the browser back to the client.
    assert!(
        s(&wire[4]["location"]).starts_with(&format!("{REDIRECT_URI}?")),
        "{context}"
    );
    assert_eq!(
        r["authorization_response"],
        json!(["code", "iss", "state"]),
        "{context}"
    );
    // 7. onwards: every later request goes to the gateway with the new token
    // and succeeds; the client never went back to the authorization server.
    for w in &wire[6..] {
        assert!(s(&w["url"]).starts_with(&origin), "{w}\n{context}");
        assert_eq!(s(&w["bearer"]), access_token, "{w}");
        assert!(w["status"].as_u64().is_some_and(|c| c < 300), "{w}");
    }
    let posts = wire[6..]
        .iter()
        .filter(|w| w["method"] == "POST" && w["url"] == resource.as_str())
        .count();
    assert!(
        posts >= 4,
        "initialize, initialized, tools/list, tools/call\n{context}"
    );

    // ----- discovery, as the SDK understood it ---------------------------
    let prm = &r["protected_resource_metadata"];
    assert_eq!(prm["resource"], resource.as_str(), "{context}");
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    assert_eq!(prm["scopes_supported"], json!(["mcp"]));
    assert_eq!(r["auth_server_url"], issuer.as_str());
    assert_eq!(r["resource_param"], resource.as_str());

    // ----- registration (RFC 7591) ---------------------------------------
    let client_id = s(&r["client_info"]["client_id"]).to_string();
    let regs = events["registrations"].as_array().expect("registrations");
    assert_eq!(regs.len(), 1, "{context}");
    assert_eq!(regs[0]["client_id"], client_id.as_str());
    assert_eq!(regs[0]["token_endpoint_auth_method"], "none");
    assert_eq!(regs[0]["request"]["redirect_uris"], json!([REDIRECT_URI]));
    assert_eq!(regs[0]["request"]["scope"], "mcp");
    assert_eq!(r["client_info"]["token_endpoint_auth_method"], "none");

    // ----- authorization request: PKCE S256 and the resource -------------
    let asked = &r["authorization_request"];
    assert_eq!(asked["response_type"], "code");
    assert_eq!(asked["client_id"], client_id.as_str());
    assert_eq!(asked["redirect_uri"], REDIRECT_URI);
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["resource"], resource.as_str());
    assert_eq!(asked["scope"], "mcp");
    let auths = events["authorizations"].as_array().expect("authorizations");
    assert_eq!(auths.len(), 1, "{context}");
    assert_eq!(auths[0]["code_challenge_method"], "S256");
    assert_eq!(auths[0]["code_challenge"], asked["code_challenge"]);
    assert_eq!(s(&auths[0]["code_challenge"]).len(), 43);
    assert_eq!(auths[0]["resource"], resource.as_str());
    assert_eq!(auths[0]["client_id"], client_id.as_str());
    assert_eq!(auths[0]["state_sent"], true);

    // ----- token request: the verifier matched, one token issued ---------
    let tokens = events["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 1, "{context}");
    assert_eq!(tokens[0]["pkce"], "S256 verified");
    assert_eq!(tokens[0]["resource_sent"], resource.as_str());
    assert_eq!(tokens[0]["access_token"], access_token.as_str());
    assert_eq!(events["errors"], json!([]), "{context}");

    // ----- the token the client used -------------------------------------
    let jwks: JwkSet = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("testdata/oauth/jwks.json"))
            .expect("jwks.json"),
    )
    .expect("jwks");
    let header = decode_header(&access_token).expect("jwt header");
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some("test-rsa"));
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&resource]);
    validation.set_issuer(&[&issuer]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let claims = decode::<Value>(
        &access_token,
        &DecodingKey::from_jwk(jwks.find("test-rsa").expect("test-rsa")).expect("key"),
        &validation,
    )
    .expect("token verifies with the test key")
    .claims;
    assert_eq!(
        claims["aud"],
        resource.as_str(),
        "RFC 8707: aud is the resource"
    );
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "mcp");
    assert_eq!(claims["client_id"], client_id.as_str());

    // ----- jwt_authn verified it with the issuer's JWKS ------------------
    let as_requests = events["requests"].as_array().expect("requests");
    assert!(
        as_requests
            .iter()
            .any(|q| q["method"] == "GET" && q["path"] == "/jwks.json"),
        "Envoy fetched the JWKS from the authorization server\n{context}"
    );
    assert!(
        !wire.iter().any(|w| s(&w["url"]).ends_with("/jwks.json")),
        "the client itself never needs the JWKS"
    );
    let stats = stack
        .envoy
        .admin_get("/stats?filter=jwt_authn")
        .unwrap_or_default();
    let stat = |name: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("http.mcp.jwt_authn.{name}: ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert!(
        stat("jwks_fetch_success").is_some_and(|n| n >= 1),
        "{stats}"
    );
    assert_eq!(stat("jwks_fetch_failed"), Some(0), "{stats}");
    assert_eq!(stat("denied"), Some(0), "{stats}");

    // ----- MCP through the gateway ---------------------------------------
    assert_eq!(r["server_name"], "mcpgw");
    assert_eq!(r["protocol_version"], "2025-11-25");
    assert!(
        r["tools"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("alpha__echo"))),
        "{context}"
    );
    assert_eq!(
        r["echo"],
        json!({"content": [{"type": "text", "text": "alpha: through OAuth"}], "isError": false}),
        "{context}"
    );
    stack.assert_vm_healthy();
}
