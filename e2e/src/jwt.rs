//! Access tokens for the OAuth tests, signed with the test keys in
//! `testdata/oauth` (their public halves are `testdata/oauth/jwks.json`).

use crate::envoy::workspace_root;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn key(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("testdata/oauth").join(name)).expect("test key")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The test JWKS (RS256 `test-rsa`, ES256 `test-ec`).
pub fn jwks() -> String {
    std::fs::read_to_string(workspace_root().join("testdata/oauth/jwks.json")).expect("jwks")
}

/// A token from `issuer` for `audience`, valid for 10 minutes, with scope
/// `mcp` unless `extra` (merged over the standard claims) says otherwise.
pub fn token(alg: Algorithm, issuer: &str, audience: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": issuer, "sub": "alice", "aud": audience,
        "iat": now(), "exp": now() + 600, "scope": "mcp",
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    sign(alg, &claims)
}

/// Sign `claims` with the RS256 or ES256 test key.
pub fn sign(alg: Algorithm, claims: &Value) -> String {
    let (kid, key) = match alg {
        Algorithm::ES256 => (
            "test-ec",
            EncodingKey::from_ec_pem(&key("ec.pem")).expect("ec key"),
        ),
        _ => (
            "test-rsa",
            EncodingKey::from_rsa_pem(&key("rsa.pem")).expect("rsa key"),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).expect("sign")
}

/// A token signed with a key the JWKS does not hold.
pub fn forged(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa".into());
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(&key("other-rsa.pem")).expect("key"),
    )
    .expect("sign")
}

/// Envoy's `jwt_authn` for `issuer` with the test JWKS inline, as an
/// `http_filters` list item (10 spaces): verified payloads go to the
/// `jwt_payload` metadata (and, with `payload_header`, the header mcpgw
/// reads), failures pass on to mcpgw, which answers the MCP 401.
pub fn jwt_authn_filter(issuer: &str, audience: &str, payload_header: bool) -> String {
    let jwks_inline = serde_json::to_string(
        &serde_json::from_str::<Value>(&jwks())
            .expect("json")
            .to_string(),
    )
    .expect("yaml string");
    let forward_payload = if payload_header {
        "                  forward_payload_header: x-mcpgw-jwt-payload\n"
    } else {
        ""
    };
    format!(
        r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                test:
                  issuer: {issuer}
                  audiences: [{audience}]
                  local_jwks: {{inline_string: {jwks_inline}}}
                  payload_in_metadata: jwt_payload
{forward_payload}                  forward: false
              rules:
              - match: {{prefix: /}}
                requires: {{requires_any: {{requirements: [{{provider_name: test}}, {{allow_missing_or_failed: {{}}}}]}}}}
"#
    )
}
