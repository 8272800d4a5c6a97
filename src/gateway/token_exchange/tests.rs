//! Token exchange through the hooks with the fake host: what goes to the
//! token service, what reaches backends, the cache, single flight, and the
//! failures the client sees.

use super::cache::{reuse_ms, Key, Lookup, TokenCache};
use super::codec::{self, Failure};
use crate::gateway::host::{header, CallResponse, Flow, Level};
use crate::gateway::testing::{gateway_with, json_response, FakeHost};
use crate::gateway::{Exchange, Gateway};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const ISS: &str = "https://auth.example.com";
const AUTH: &str = r#","auth":{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes":["mcp"]}"#;
const EXCHANGED: &str = "exchanged-token-for-alpha";

fn te(extra: &str) -> String {
    format!(
        r#"{{"cluster":"sts","token_endpoint":"https://sts.example.com/oauth2/token","audience":"https://alpha.example.com","scopes":["alpha:read"],"client_auth":{{"client_id":"mcpgw","client_secret":"${{TOKEN}}"}}{extra}}}"#
    )
}

/// `alpha` exchanges, `beta` does not.
fn gw(te_extra: &str) -> Arc<Gateway> {
    let backends = format!(
        r#"[{{"name":"alpha","cluster":"c_alpha","token_exchange":{}}},{{"name":"beta","cluster":"c_beta"}}]"#,
        te(te_extra)
    );
    Arc::new(gateway_with(&backends, AUTH))
}

/// A client token (unsigned: jwt_authn's verdict is the metadata).
fn client_token(sub: &str) -> String {
    let p = URL_SAFE_NO_PAD.encode(
        json!({"iss": ISS, "sub": sub, "aud": "https://mcp.example.com/mcp", "scope": "mcp"})
            .to_string(),
    );
    format!("eyJhbGciOiJSUzI1NiJ9.{p}.c2ln")
}

/// A stream of `sub`'s: what jwt_authn leaves, and the request headers.
fn host_for(sub: &str, stream: u64) -> FakeHost {
    let mut h = FakeHost::default();
    h.stream = Some(stream);
    let jwt = "envoy.filters.http.jwt_authn";
    h.set_metadata(jwt, &["jwt_payload", "iss"], ISS);
    h.set_metadata(jwt, &["jwt_payload", "sub"], sub);
    h.set_metadata(jwt, &["jwt_payload", "aud"], "https://mcp.example.com/mcp");
    h.set_metadata(jwt, &["jwt_payload", "scope"], "mcp");
    h
}

fn headers(sub: &str, session: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "localhost:1975"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    h.push((
        "authorization".into(),
        format!("Bearer {}", client_token(sub)),
    ));
    if let Some(s) = session {
        h.push(("mcp-session-id".into(), s.into()));
    }
    h
}

fn post(
    gw: &Arc<Gateway>,
    host: &mut FakeHost,
    sub: &str,
    session: Option<&str>,
    msg: Value,
) -> (Exchange, Flow) {
    host.request_headers = headers(sub, session);
    host.request_body = msg.to_string().into_bytes();
    let mut ex = Exchange::new(gw.clone());
    assert_eq!(ex.request_headers(host, false), Flow::Stop);
    let size = host.request_body.len();
    let flow = ex.request_body(host, size, true);
    (ex, flow)
}

fn token_ok(token: &str, expires_in: u64) -> CallResponse {
    json_response(&json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}).to_string())
}

fn init_answer(req: &Value) -> CallResponse {
    json_response(
        &json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}})
            .to_string(),
    )
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let v = v.replace('+', " ");
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    out.push(
                        u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16)
                            .unwrap(),
                    );
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            (k.to_string(), String::from_utf8(out).unwrap())
        })
        .collect()
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Initialize as `sub`, answering the token service with `sts`; the session id.
fn initialize(gw: &Arc<Gateway>, host: &mut FakeHost, sub: &str, sts: CallResponse) -> String {
    let (mut ex, flow) = post(
        gw,
        host,
        sub,
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    assert_eq!(flow, Flow::Stop);
    // beta's call is out at once; alpha's waits for the exchange.
    let clusters: Vec<String> = host.calls.iter().map(|(_, c)| c.cluster.clone()).collect();
    assert_eq!(clusters, ["sts", "c_beta"]);
    let (sts_id, _) = host.call_to("sts");
    let (beta_id, beta) = host.call_to("c_beta");
    let beta_req: Value = serde_json::from_slice(&beta.body).unwrap();
    ex.call_done(host, beta_id, init_answer(&beta_req));
    assert!(host.sent.is_empty(), "alpha still to come");
    ex.call_done(host, sts_id, sts);
    if let Some((alpha_id, alpha)) = host
        .calls
        .iter()
        .find(|(_, c)| c.cluster == "c_alpha")
        .cloned()
    {
        assert_eq!(
            header(&alpha.headers, "authorization"),
            Some(format!("Bearer {EXCHANGED}").as_str())
        );
        let req: Value = serde_json::from_slice(&alpha.body).unwrap();
        ex.call_done(host, alpha_id, init_answer(&req));
    }
    let r = host.sent.last().expect("answered").clone();
    ex.stream_done(host);
    host.calls.clear();
    host.sent.clear();
    header(&r.headers, "mcp-session-id")
        .map(str::to_string)
        .unwrap_or_default()
}

fn call_tool(gw: &Arc<Gateway>, host: &mut FakeHost, sub: &str, sid: &str) -> (Exchange, Flow) {
    post(
        gw,
        host,
        sub,
        Some(sid),
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}),
    )
}

#[test]
fn the_exchange_request_and_the_backend_credential() {
    let gw = gw("");
    let mut host = host_for("alice", 1);
    let sid = initialize(&gw, &mut host, "alice", token_ok(EXCHANGED, 3600));
    assert!(!sid.is_empty());
    // The cached token serves the routed call: no second exchange.
    let (mut ex, flow) = call_tool(&gw, &mut host, "alice", &sid);
    assert_eq!(flow, Flow::Continue);
    assert!(host.calls.is_empty(), "{:?}", host.calls);
    assert_eq!(
        header(&host.request_headers, "authorization"),
        Some(format!("Bearer {EXCHANGED}").as_str()),
        "the client's token is replaced"
    );
    ex.stream_done(&mut host);
    assert_eq!(
        host.counter("mcpgw.token_exchanges_total;.;backend=.=alpha;.;outcome=.=ok"),
        1
    );
    assert_eq!(
        host.counter("mcpgw.token_cache_lookups_total;.;backend=.=alpha;.;outcome=.=hit"),
        1
    );
    assert_eq!(
        host.counter("mcpgw.token_cache_lookups_total;.;backend=.=alpha;.;outcome=.=miss"),
        1
    );
}

#[test]
fn the_form_sent_to_the_token_service() {
    let gw =
        gw(r#","resource":"https://alpha.example.com/mcp","actor_token":{"token":"actor-secret"}"#);
    let mut host = host_for("alice", 1);
    let (_ex, flow) = post(
        &gw,
        &mut host,
        "alice",
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    assert_eq!(flow, Flow::Stop);
    let (_, sts) = host.call_to("sts");
    assert_eq!(header(&sts.headers, ":path"), Some("/oauth2/token"));
    assert_eq!(header(&sts.headers, ":authority"), Some("sts.example.com"));
    assert_eq!(
        header(&sts.headers, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        header(&sts.headers, "authorization"),
        Some(format!("Basic {}", STANDARD.encode("mcpgw:s3cret")).as_str())
    );
    let f = form(&sts.body);
    assert_eq!(
        field(&f, "grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(
        field(&f, "subject_token"),
        Some(client_token("alice").as_str())
    );
    assert_eq!(
        field(&f, "subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(field(&f, "audience"), Some("https://alpha.example.com"));
    assert_eq!(field(&f, "resource"), Some("https://alpha.example.com/mcp"));
    assert_eq!(field(&f, "scope"), Some("alpha:read"));
    assert_eq!(field(&f, "actor_token"), Some("actor-secret"));
    assert_eq!(
        field(&f, "actor_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(field(&f, "client_secret"), None, "basic auth by default");
}

#[test]
fn client_secret_post_and_a_signed_actor_assertion() {
    let key = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/oauth/ec.pem"
    ))
    .to_string();
    let key_json = serde_json::to_string(&key).unwrap();
    let backends = format!(
        r#"[{{"name":"alpha","cluster":"c_alpha","token_exchange":{{"cluster":"sts","token_endpoint":"https://sts.example.com/token","audience":"a","client_auth":{{"client_id":"gw id","client_secret":"p&ss","method":"post"}},"actor_token":{{"client_assertion_jwt":{{"issuer":"mcpgw","subject":"gateway","private_key":{key_json},"algorithm":"ES256","key_id":"k1","lifetime":"2m"}}}}}}}}]"#
    );
    let gw = Arc::new(gateway_with(&backends, AUTH));
    let mut host = host_for("alice", 1);
    let _ = post(
        &gw,
        &mut host,
        "alice",
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let (_, sts) = host.call_to("sts");
    assert_eq!(header(&sts.headers, "authorization"), None);
    let f = form(&sts.body);
    assert_eq!(field(&f, "client_id"), Some("gw id"));
    assert_eq!(field(&f, "client_secret"), Some("p&ss"));
    assert_eq!(
        field(&f, "actor_token_type"),
        Some("urn:ietf:params:oauth:token-type:jwt")
    );
    let jwt = field(&f, "actor_token").unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let head: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(head, json!({"alg":"ES256","typ":"JWT","kid":"k1"}));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "mcpgw");
    assert_eq!(claims["sub"], "gateway");
    assert_eq!(claims["aud"], "https://sts.example.com/token");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    // The signature verifies with the key's public half.
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePrivateKey;
    let sk = p256::ecdsa::SigningKey::from_pkcs8_pem(&key).unwrap();
    let sig =
        p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    sk.verifying_key()
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .unwrap();
}

#[test]
fn rsa_and_hmac_assertions_verify() {
    use super::assertion::{sign, Algorithm, Claims, SigningKey};
    use rsa::signature::Verifier;
    let pem = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/oauth/rsa.pem"
    ))
    .to_string();
    let host = FakeHost::default();
    let c = Claims {
        issuer: "i",
        subject: "s",
        audience: "a",
        key_id: None,
        now_ms: 1_700_000_000_000,
        lifetime_ms: 60_000,
    };
    use rsa::pkcs8::DecodePrivateKey;
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    for alg in [Algorithm::RS256, Algorithm::PS384] {
        let jwt = sign(&SigningKey::new(alg, &pem).unwrap(), &c, &host).unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let public = private.to_public_key();
        match alg {
            Algorithm::RS256 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public)
                .verify(
                    input.as_bytes(),
                    &rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap(),
                )
                .unwrap(),
            _ => rsa::pss::VerifyingKey::<sha2::Sha384>::new(public)
                .verify(
                    input.as_bytes(),
                    &rsa::pss::Signature::try_from(sig.as_slice()).unwrap(),
                )
                .unwrap(),
        }
    }
    let secret = "a shared secret of at least 32 bytes!";
    let jwt = sign(
        &SigningKey::new(Algorithm::HS256, secret).unwrap(),
        &c,
        &host,
    )
    .unwrap();
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(input.as_bytes());
    m.verify_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap())
        .unwrap();
    // Keys that do not fit the algorithm are refused with the reason.
    assert!(SigningKey::new(Algorithm::ES256, &pem)
        .unwrap_err()
        .contains("P-256"));
    assert!(SigningKey::new(Algorithm::HS256, "short")
        .unwrap_err()
        .contains("32 bytes"));
}

#[test]
fn tokens_are_reused_until_shortly_before_expiry_then_exchanged_again() {
    let gw = gw("");
    let mut host = host_for("alice", 1);
    let sid = initialize(&gw, &mut host, "alice", token_ok(EXCHANGED, 100));
    // 100 s: reused for 90 s.
    host.now.set(host.now.get() + 89_000);
    let (mut ex, flow) = call_tool(&gw, &mut host, "alice", &sid);
    assert_eq!(flow, Flow::Continue);
    ex.stream_done(&mut host);
    host.now.set(host.now.get() + 2_000);
    let (mut ex, flow) = call_tool(&gw, &mut host, "alice", &sid);
    assert_eq!(flow, Flow::Stop, "waits for a fresh exchange");
    let (id, _) = host.call_to("sts");
    ex.call_done(&mut host, id, token_ok("fresh", 100));
    assert_eq!(host.resumed, 1);
    assert_eq!(
        header(&host.request_headers, "authorization"),
        Some("Bearer fresh")
    );
    assert_eq!(reuse_ms(Some(3600), 600_000), 600_000, "max_ttl caps");
    assert_eq!(reuse_ms(Some(2), 3_600_000), 1_800);
    assert_eq!(reuse_ms(None, 3_600_000), 60_000);
}

#[test]
fn two_users_get_their_own_tokens() {
    let gw = gw("");
    let mut alice = host_for("alice", 1);
    let sid_a = initialize(&gw, &mut alice, "alice", token_ok(EXCHANGED, 3600));
    let mut bob = host_for("bob", 2);
    let (mut ex, _) = post(
        &gw,
        &mut bob,
        "bob",
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let (id, sts) = bob.call_to("sts");
    assert_eq!(
        field(&form(&sts.body), "subject_token"),
        Some(client_token("bob").as_str())
    );
    ex.call_done(&mut bob, id, token_ok("bobs-token", 3600));
    let (_, alpha) = bob.call_to("c_alpha");
    assert_eq!(
        header(&alpha.headers, "authorization"),
        Some("Bearer bobs-token")
    );
    let (_, flow) = call_tool(&gw, &mut alice, "alice", &sid_a);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        header(&alice.request_headers, "authorization"),
        Some(format!("Bearer {EXCHANGED}").as_str())
    );
}

#[test]
fn concurrent_misses_share_one_exchange() {
    let gw = gw("");
    let mut a = host_for("alice", 1);
    let sid = initialize(&gw, &mut a, "alice", token_ok(EXCHANGED, 1));
    // The 1 s token is stale at once (reused 0.9 s).
    a.now.set(a.now.get() + 1_000);
    let mut b = host_for("alice", 2);
    b.now.set(a.now.get());
    let (mut ex_a, flow_a) = call_tool(&gw, &mut a, "alice", &sid);
    let (mut ex_b, flow_b) = call_tool(&gw, &mut b, "alice", &sid);
    assert_eq!((flow_a, flow_b), (Flow::Stop, Flow::Stop));
    assert_eq!(a.calls.len(), 1, "the leader exchanges");
    assert!(b.calls.is_empty(), "the follower does not");
    let deadline = b
        .wakes
        .last()
        .and_then(|(id, at)| (*id == 2).then_some(*at))
        .flatten();
    assert!(
        deadline.is_some_and(|d| d > b.now.get()),
        "a bounded wait: {:?}",
        b.wakes
    );
    let (id, _) = a.call_to("sts");
    ex_a.call_done(&mut a, id, token_ok("shared", 3600));
    assert_eq!(a.wakes, vec![(2, None)], "the follower is woken");
    ex_b.woken(&mut b);
    assert_eq!(b.resumed, 1);
    assert_eq!(
        header(&b.request_headers, "authorization"),
        Some("Bearer shared")
    );
    assert_eq!(
        b.counter("mcpgw.token_cache_lookups_total;.;backend=.=alpha;.;outcome=.=shared"),
        1
    );
}

#[test]
fn a_leader_that_ends_first_hands_over_to_its_follower() {
    let gw = gw("");
    let mut a = host_for("alice", 1);
    let sid = initialize(&gw, &mut a, "alice", token_ok(EXCHANGED, 1));
    a.now.set(a.now.get() + 1_000);
    let mut b = host_for("alice", 2);
    b.now.set(a.now.get());
    let (mut ex_a, _) = call_tool(&gw, &mut a, "alice", &sid);
    let (mut ex_b, _) = call_tool(&gw, &mut b, "alice", &sid);
    ex_a.stream_done(&mut a);
    assert_eq!(a.wakes, vec![(2, None)]);
    ex_b.woken(&mut b);
    let (id, _) = b.call_to("sts");
    ex_b.call_done(&mut b, id, token_ok("b-led", 3600));
    assert_eq!(
        header(&b.request_headers, "authorization"),
        Some("Bearer b-led")
    );
}

#[test]
fn refused_exchanges_answer_with_an_error_naming_the_backend() {
    let gw = gw("");
    let mut host = host_for("alice", 1);
    let sid = initialize(&gw, &mut host, "alice", token_ok(EXCHANGED, 1));
    host.now.set(host.now.get() + 5_000);
    let (mut ex, _) = call_tool(&gw, &mut host, "alice", &sid);
    let (id, _) = host.call_to("sts");
    let refused = CallResponse {
        status: 400,
        headers: vec![],
        body: br#"{"error":"invalid_target","error_description":"alpha is not for alice"}"#
            .to_vec(),
    };
    ex.call_done(&mut host, id, refused);
    let r = host.sent.last().unwrap();
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["id"], 7);
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("backend alpha") && m.contains("invalid_target"),
        "{m}"
    );
    assert_eq!(host.resumed, 0, "never forwarded");
    ex.stream_done(&mut host);
    assert_eq!(
        host.counter("mcpgw.errors_total;.;kind=.=token_exchange"),
        1
    );
    assert_eq!(
        host.counter("mcpgw.token_exchanges_total;.;backend=.=alpha;.;outcome=.=refused"),
        1
    );
    // Remembered for a second: no second call to the token service.
    let (_, _) = call_tool(&gw, &mut host, "alice", &sid);
    assert!(
        host.calls
            .iter()
            .filter(|(_, c)| c.cluster == "sts")
            .count()
            == 1
    );
}

#[test]
fn refusals_with_step_up_scopes_get_the_mcp_challenge() {
    let gw = gw(r#","step_up_scopes":["alpha:use"]"#);
    let mut host = host_for("alice", 1);
    let sid = initialize(&gw, &mut host, "alice", token_ok(EXCHANGED, 1));
    host.now.set(host.now.get() + 5_000);
    let (mut ex, _) = call_tool(&gw, &mut host, "alice", &sid);
    let (id, _) = host.call_to("sts");
    let refused = CallResponse {
        status: 403,
        headers: vec![],
        body: br#"{"error":"access_denied"}"#.to_vec(),
    };
    ex.call_done(&mut host, id, refused);
    let r = host.sent.last().unwrap();
    assert_eq!(r.status, 403);
    let www = header(&r.headers, "www-authenticate").unwrap();
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("scope=\"mcp alpha:use\""), "{www}");
    assert!(www.contains("resource_metadata="), "{www}");
}

#[test]
fn a_down_token_service_fails_its_backend_only() {
    let gw = gw("");
    let mut host = host_for("alice", 1);
    let (mut ex, _) = post(
        &gw,
        &mut host,
        "alice",
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let (sts, _) = host.call_to("sts");
    let (beta, call) = host.call_to("c_beta");
    let req: Value = serde_json::from_slice(&call.body).unwrap();
    ex.call_done(&mut host, beta, init_answer(&req));
    ex.call_done(&mut host, sts, CallResponse::default());
    let r = host.sent.last().unwrap();
    assert_eq!(r.status, 200, "a session with beta");
    assert!(header(&r.headers, "mcp-session-id").is_some());
    assert!(host.logged("backend alpha: token exchange for alice failed (unavailable)"));
    assert!(host.logged("initialize: backend alpha: token exchange failed: the token service did not answer within 5000 ms"));
    assert!(host.calls.iter().all(|(_, c)| c.cluster != "c_alpha"));
}

#[test]
fn a_client_token_never_reaches_a_backend_nor_the_log() {
    let gw = gw("");
    let mut host = host_for("alice", 1);
    let sid = initialize(&gw, &mut host, "alice", token_ok(EXCHANGED, 3600));
    let (mut ex, _) = call_tool(&gw, &mut host, "alice", &sid);
    let client = client_token("alice");
    assert!(host
        .request_headers
        .iter()
        .all(|(_, v)| !v.contains(&client)));
    ex.stream_done(&mut host);
    for (_, m) in host.logs.borrow().iter() {
        assert!(!m.contains(&client) && !m.contains(EXCHANGED), "{m}");
    }
    let _ = Level::Info;
}

#[test]
fn the_response_codec() {
    let ok = codec::response(&token_ok("t", 60), 5000).unwrap();
    assert_eq!((ok.access_token.as_str(), ok.lifetime_s), ("t", Some(60)));
    // No expires_in: the JWT's own exp - iat.
    let jwt = format!(
        "h.{}.s",
        URL_SAFE_NO_PAD.encode(json!({"iat": 100, "exp": 400}).to_string())
    );
    let r = codec::response(
        &json_response(&json!({"access_token": jwt}).to_string()),
        5000,
    )
    .unwrap();
    assert_eq!(r.lifetime_s, Some(300));
    let r = |status: u16, body: &str| {
        codec::response(
            &CallResponse {
                status,
                headers: vec![],
                body: body.as_bytes().to_vec(),
            },
            5000,
        )
    };
    assert!(matches!(
        r(401, r#"{"error":"invalid_client"}"#),
        Err(Failure::ClientRejected { .. })
    ));
    assert!(matches!(
        r(400, r#"{"error":"unauthorized_client"}"#),
        Err(Failure::ClientRejected { .. })
    ));
    assert!(
        matches!(r(400, r#"{"error":"invalid_grant"}"#), Err(Failure::Refused { error, .. }) if error == "invalid_grant")
    );
    assert!(matches!(r(503, ""), Err(Failure::Unavailable(_))));
    assert!(matches!(r(429, ""), Err(Failure::Unavailable(_))));
    assert!(matches!(r(200, "{}"), Err(Failure::BadResponse(_))));
    assert!(matches!(
        r(200, r#"{"access_token":"a\r\nb"}"#),
        Err(Failure::BadResponse(_))
    ));
    assert!(matches!(
        r(200, r#"{"access_token":"a","token_type":"DPoP"}"#),
        Err(Failure::BadResponse(_))
    ));
    // Descriptions are logged without anything token-like.
    let Err(Failure::Refused { description, .. }) = r(
        400,
        &format!(
            r#"{{"error":"invalid_request","error_description":"bad subject_token {jwt}eyJhbGciOiJSUzI1NiJ9abcdefghijkl"}}"#
        ),
    ) else {
        panic!()
    };
    assert!(
        !description.contains("eyJhbGciOiJSUzI1NiJ9"),
        "{description}"
    );
    assert_eq!(codec::form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
}

#[test]
fn the_cache_is_bounded_and_single_flight() {
    let c = TokenCache::new(2);
    let k = |b: usize, s: &str| Key::new(b, ISS, s, &["mcp".to_string()]);
    assert_eq!(
        Key::new(0, ISS, "a", &["x".into(), "y".into()]),
        Key::new(0, ISS, "a", &["y".into(), "x".into()])
    );
    assert_ne!(k(0, "a"), k(1, "a"));
    assert_eq!(c.lookup(&k(0, "a"), 0, Some(1), 5000), Lookup::Lead);
    assert_eq!(
        c.lookup(&k(0, "a"), 10, Some(2), 5000),
        Lookup::Follow { deadline_ms: 6000 }
    );
    assert_eq!(
        c.lookup(&k(0, "a"), 10, None, 5000),
        Lookup::Lead,
        "a host that cannot wait leads"
    );
    assert_eq!(c.complete(&k(0, "a"), 20, Ok(("v".into(), 100))), vec![2]);
    assert_eq!(
        c.lookup(&k(0, "a"), 119, Some(3), 5000),
        Lookup::Hit("v".into())
    );
    assert_eq!(
        c.lookup(&k(0, "a"), 120, Some(3), 5000),
        Lookup::Lead,
        "expired"
    );
    c.complete(&k(0, "a"), 120, Ok(("v2".into(), 1000)));
    c.lookup(&k(0, "b"), 120, Some(3), 5000);
    c.complete(&k(0, "b"), 120, Ok(("w".into(), 2000)));
    c.lookup(&k(0, "c"), 130, Some(4), 5000);
    c.complete(&k(0, "c"), 130, Ok(("x".into(), 3000)));
    assert_eq!(c.len(), 2, "bounded");
    assert_eq!(
        c.lookup(&k(0, "b"), 140, Some(5), 5000),
        Lookup::Hit("w".into()),
        "the soonest to expire went"
    );
    // A leader that vanished is taken over after its deadline.
    assert_eq!(c.lookup(&k(1, "a"), 0, Some(1), 1000), Lookup::Lead);
    assert_eq!(c.lookup(&k(1, "a"), 2001, Some(2), 1000), Lookup::Lead);
}

#[test]
fn config_errors_name_the_field() {
    let bad = |te: &str, extra: &str| {
        let backends =
            format!(r#"[{{"name":"alpha","cluster":"c","token_exchange":{te}{extra}}}]"#);
        let json = format!(
            r#"{{"session":{{"key":"{}"}},"backends":{backends}{AUTH}}}"#,
            crate::gateway::testing::KEY
        );
        crate::gateway::compile(json.as_bytes(), &|n| (n == "TOKEN").then(|| "s".into()))
            .unwrap_err()
    };
    let e = bad(r#"{"cluster":"sts","token_endpoint":"https://sts/t"}"#, "");
    assert_eq!(e.field, "backends[0].token_exchange.audience");
    let e = bad(
        r#"{"cluster":"sts","token_endpoint":"sts/t","audience":"a"}"#,
        "",
    );
    assert_eq!(e.field, "backends[0].token_exchange.token_endpoint");
    let e = bad(
        r#"{"cluster":"sts","token_endpoint":"https://sts/t","audience":"a","client_auth":{"client_id":"x","client_secret":"${NOPE}"}}"#,
        "",
    );
    assert_eq!(
        e.field,
        "backends[0].token_exchange.client_auth.client_secret"
    );
    let e = bad(
        r#"{"cluster":"sts","token_endpoint":"https://sts/t","audience":"a","actor_token":{}}"#,
        "",
    );
    assert_eq!(e.field, "backends[0].token_exchange.actor_token");
    let e = bad(
        r#"{"cluster":"sts","token_endpoint":"https://sts/t","audience":"a","actor_token":{"client_assertion_jwt":{"issuer":"i","subject":"s","private_key":"x","algorithm":"ES512"}}}"#,
        "",
    );
    assert_eq!(
        e.field,
        "backends[0].token_exchange.actor_token.client_assertion_jwt.algorithm"
    );
    let e = bad(
        r#"{"cluster":"sts","token_endpoint":"https://sts/t","audience":"a"}"#,
        r#","forward_authorization":true"#,
    );
    assert_eq!(e.field, "backends[0].forward_authorization");
    let e = bad(
        r#"{"cluster":"sts","token_endpoint":"https://sts/t","audience":"a"}"#,
        r#","headers":{"Authorization":"Bearer x"}"#,
    );
    assert_eq!(e.field, "backends[0].headers.authorization");
    // The exchanged token never goes in a header the gateway manages, nor
    // in the client's cookies.
    for h in ["Cookie", "mcp-session-id", "content-length"] {
        let e = bad(
            &format!(
                r#"{{"cluster":"sts","token_endpoint":"https://sts/t","audience":"a","header":"{h}"}}"#
            ),
            "",
        );
        assert_eq!(e.field, "backends[0].token_exchange.header", "{h}");
    }
    // Without `auth`, nothing verified the client's token.
    let json = format!(
        r#"{{"session":{{"key":"{}"}},"backends":[{{"name":"alpha","cluster":"c","token_exchange":{{"cluster":"sts","token_endpoint":"https://sts/t","audience":"a"}}}}]}}"#,
        crate::gateway::testing::KEY
    );
    let e = crate::gateway::compile(json.as_bytes(), &|_| None).unwrap_err();
    assert_eq!(e.field, "backends[0].token_exchange");
    assert!(e.problem.contains("auth"), "{e}");
}

/// A 2026-07-28 `tools/call` of `alpha__echo` by `sub` (no session).
fn modern_call(gw: &Arc<Gateway>, host: &mut FakeHost, sub: &str) -> (Exchange, Flow) {
    let meta = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}});
    let msg = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"alpha__echo","arguments":{},"_meta":meta}});
    let mut h = headers(sub, None);
    for (k, v) in [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "alpha__echo"),
    ] {
        h.push((k.into(), v.into()));
    }
    host.request_headers = h;
    host.request_body = msg.to_string().into_bytes();
    let mut ex = Exchange::new(gw.clone());
    assert_eq!(ex.request_headers(host, false), Flow::Stop);
    let size = host.request_body.len();
    let flow = ex.request_body(host, size, true);
    (ex, flow)
}

#[test]
fn modern_clients_learn_and_call_with_the_exchanged_token() {
    let gw = gw("");
    let mut host = host_for("alice", 1);
    let (mut ex, flow) = modern_call(&gw, &mut host, "alice");
    assert_eq!(flow, Flow::Stop);
    // Learning alpha's era waits for alpha's credential.
    let clusters: Vec<String> = host.calls.iter().map(|(_, c)| c.cluster.clone()).collect();
    assert_eq!(clusters, ["sts"]);
    let (sts, _) = host.call_to("sts");
    ex.call_done(&mut host, sts, token_ok(EXCHANGED, 3600));
    let (discover, call) = host.call_to("c_alpha");
    assert_eq!(header(&call.headers, "mcp-method"), Some("server/discover"));
    assert_eq!(
        header(&call.headers, "authorization"),
        Some(format!("Bearer {EXCHANGED}").as_str())
    );
    let answer = json!({"jsonrpc":"2.0","id":"mcpgw-discover","result":{
        "resultType":"complete","supportedVersions":["2026-07-28"],
        "capabilities":{"tools":{}}}});
    ex.call_done(&mut host, discover, json_response(&answer.to_string()));
    // The routed call goes with the same token; the client's never.
    assert_eq!(host.resumed, 1, "{:?}", host.sent);
    assert_eq!(
        header(&host.request_headers, "authorization"),
        Some(format!("Bearer {EXCHANGED}").as_str())
    );
    let client = client_token("alice");
    for (_, c) in &host.calls {
        assert!(c.headers.iter().all(|(_, v)| !v.contains(&client)));
    }
    ex.stream_done(&mut host);
    assert_eq!(
        host.counter("mcpgw.token_exchanges_total;.;backend=.=alpha;.;outcome=.=ok"),
        1
    );
}

#[test]
fn a_modern_call_whose_exchange_is_refused_names_the_backend() {
    let gw = gw("");
    let mut host = host_for("alice", 1);
    let (mut ex, _) = modern_call(&gw, &mut host, "alice");
    let (sts, _) = host.call_to("sts");
    let refused = CallResponse {
        status: 400,
        headers: vec![],
        body: br#"{"error":"invalid_target"}"#.to_vec(),
    };
    ex.call_done(&mut host, sts, refused);
    assert!(host.calls.iter().all(|(_, c)| c.cluster != "c_alpha"));
    let r = host.sent.last().expect("answered");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["id"], 9, "{v}");
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("backend alpha") && m.contains("invalid_target"),
        "{v}"
    );
    assert_eq!(host.resumed, 0, "never forwarded");
    ex.stream_done(&mut host);
    // One user's refusal says nothing of alpha's era: still to learn.
    assert!(matches!(
        gw.eras.status(0, host.now.get()),
        crate::gateway::modern::eras::Status::Unknown
    ));
}
