//! OAuth 2.1 protected resource (MCP authorization spec, RFC 9728, RFC 8707)
//! and per-tool authorization.
//!
//! Envoy's `jwt_authn` filter, in front of mcpgw, verifies tokens (signature,
//! issuer, expiry, audience) and is configured to let failures through
//! (`allow_missing_or_failed`) so that mcpgw can answer with the MCP-shaped
//! 401. mcpgw trusts a token only when `jwt_authn` left its verified payload
//! in the stream's dynamic metadata; the payload itself is read from the
//! header `jwt_authn` forwards (`forward_payload_header`), and only after its
//! issuer and subject are confirmed against that metadata, so a client-sent
//! header never counts. A host that cannot read inside the metadata's payload
//! (an Envoy dynamic module: the ABI reads a namespace's top-level keys only)
//! sees that the payload is there, and takes the forwarded header as it
//! stands: `jwt_authn` removes every provider's payload header from the
//! request before it verifies, and adds it only for a token it verified; a
//! repeated header is refused.
//!
//! What mcpgw adds: the protected-resource metadata documents, the
//! `WWW-Authenticate` challenges (401, and 403 step-up with the scopes that
//! would allow the call), an audience double-check, and the principal that
//! sessions are bound to and the policy (`policy`) decides for.

use super::crypto::Keyring;
use super::host::{header, Host, LocalResponse, MetaValue};
use crate::protocol::http::{is_safe_header_value, path_only};
use crate::protocol::jsonrpc::{error_json, INVALID_REQUEST};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// The canonical URI of this MCP server (RFC 8707 resource indicator).
    pub resource: String,
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Scopes named in the 401 challenge (what a client should ask for first).
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_documentation: Option<String>,
    /// Accepted `aud` values; defaults to `[resource]`.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub jwt: RawJwt,
    /// Issuer metadata served at `/.well-known/oauth-authorization-server` and
    /// `/.well-known/openid-configuration` for 2025-03-26 clients.
    #[serde(default)]
    pub authorization_server_metadata: Option<RawAsMetadata>,
    /// Allowed CORS origins for the metadata documents (default `*`).
    #[serde(default)]
    pub metadata_cors_origin: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(default = "default_jwt_filter")]
    pub filter: String,
    #[serde(default = "default_metadata_key")]
    pub metadata_key: String,
    #[serde(default = "default_payload_header")]
    pub payload_header: String,
}

impl Default for RawJwt {
    fn default() -> Self {
        RawJwt {
            filter: default_jwt_filter(),
            metadata_key: default_metadata_key(),
            payload_header: default_payload_header(),
        }
    }
}

fn default_jwt_filter() -> String {
    "envoy.filters.http.jwt_authn".into()
}
fn default_metadata_key() -> String {
    "jwt_payload".into()
}
fn default_payload_header() -> String {
    "x-mcpgw-jwt-payload".into()
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawAsMetadata {
    /// Fetched from `cluster` (through Envoy) and cached.
    Fetch(RawAsFetch),
    /// The document itself.
    Inline(Map<String, Value>),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsFetch {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    #[serde(default = "default_cache")]
    pub cache: String,
}

fn default_cache() -> String {
    "1h".into()
}

#[derive(Debug)]
pub enum AsMetadata {
    Inline(String),
    Fetch {
        cluster: String,
        path: String,
        authority: String,
        cache_ms: u64,
    },
}

/// The compiled `auth` section.
#[derive(Debug)]
pub struct Auth {
    pub resource: String,
    /// Absolute URL of our protected resource metadata document.
    pub metadata_url: String,
    /// Paths serving it.
    pub metadata_paths: Vec<String>,
    pub metadata_json: String,
    pub challenge_scope: Option<String>,
    pub audiences: Vec<String>,
    pub jwt_filter: String,
    pub metadata_key: String,
    pub payload_header: String,
    pub as_metadata: Option<AsMetadata>,
    pub metadata_cors_origin: String,
    /// Claims read from the metadata when no payload header is forwarded.
    pub claim_names: Vec<String>,
}

pub fn compile(raw: &RawAuth, mcp_path: &str) -> Result<Auth, (String, String)> {
    let err = |f: &str, p: &str| (format!("auth.{f}"), p.to_string());
    let (origin, rpath) = split_url(&raw.resource).ok_or_else(|| {
        err(
            "resource",
            "must be the absolute https URL clients use for this MCP server, e.g. \"https://mcp.example.com/mcp\"",
        )
    })?;
    if raw.authorization_servers.is_empty() {
        return Err(err(
            "authorization_servers",
            "needs at least one issuer URL, e.g. [\"https://auth.example.com\"]",
        ));
    }
    for (i, s) in raw.authorization_servers.iter().enumerate() {
        if split_url(s).is_none() {
            return Err(err(
                &format!("authorization_servers[{i}]"),
                "must be an absolute URL",
            ));
        }
    }
    for (i, s) in raw.scopes.iter().chain(&raw.scopes_supported).enumerate() {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(err(
                &format!("scopes[{i}]"),
                "scopes are visible ASCII without quotes or spaces",
            ));
        }
    }
    // RFC 9728 section 3.1: the well-known name goes between host and path.
    let metadata_url = format!("{origin}/.well-known/oauth-protected-resource{rpath}");
    let mut metadata_paths = vec![format!("/.well-known/oauth-protected-resource{rpath}")];
    for p in [
        "/.well-known/oauth-protected-resource".to_string(),
        format!("/.well-known/oauth-protected-resource{mcp_path}"),
    ] {
        if !metadata_paths.contains(&p) {
            metadata_paths.push(p);
        }
    }
    let mut doc = Map::new();
    doc.insert("resource".into(), Value::String(raw.resource.clone()));
    doc.insert(
        "authorization_servers".into(),
        Value::Array(
            raw.authorization_servers
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ),
    );
    let supported = if raw.scopes_supported.is_empty() {
        &raw.scopes
    } else {
        &raw.scopes_supported
    };
    if !supported.is_empty() {
        doc.insert(
            "scopes_supported".into(),
            Value::Array(supported.iter().cloned().map(Value::String).collect()),
        );
    }
    doc.insert(
        "bearer_methods_supported".into(),
        Value::Array(vec![Value::String("header".into())]),
    );
    if let Some(n) = &raw.resource_name {
        doc.insert("resource_name".into(), Value::String(n.clone()));
    }
    if let Some(d) = &raw.resource_documentation {
        doc.insert("resource_documentation".into(), Value::String(d.clone()));
    }
    let as_metadata = match &raw.authorization_server_metadata {
        None => None,
        Some(RawAsMetadata::Inline(m)) => {
            Some(AsMetadata::Inline(Value::Object(m.clone()).to_string()))
        }
        Some(RawAsMetadata::Fetch(f)) => {
            if !f.path.starts_with('/')
                || !is_safe_header_value(&f.authority)
                || f.cluster.is_empty()
            {
                return Err(err(
                    "authorization_server_metadata",
                    "needs {\"cluster\", \"path\" (absolute), \"authority\"} or the metadata document itself",
                ));
            }
            Some(AsMetadata::Fetch {
                cluster: f.cluster.clone(),
                path: f.path.clone(),
                authority: f.authority.clone(),
                cache_ms: super::config::parse_duration(&f.cache)
                    .map_err(|p| err("authorization_server_metadata.cache", &p))?,
            })
        }
    };
    if let Some(o) = &raw.metadata_cors_origin {
        if o != "*" && (split_url(o).is_none() || o.trim_end_matches('/').matches('/').count() > 2)
        {
            return Err(err(
                "metadata_cors_origin",
                "must be \"*\" or one origin such as \"https://app.example.com\" (scheme and host, no path)",
            ));
        }
    }
    let challenge = (!raw.scopes.is_empty()).then(|| raw.scopes.join(" "));
    let payload_header = raw.jwt.payload_header.to_ascii_lowercase();
    // The policy's and the audit log's claims are added by `config`.
    let claim_names: Vec<String> = ["iss", "sub", "aud", "scope", "scp", "client_id", "azp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(Auth {
        resource: raw.resource.clone(),
        metadata_url,
        metadata_paths,
        metadata_json: Value::Object(doc).to_string(),
        challenge_scope: challenge,
        audiences: raw
            .audiences
            .clone()
            .unwrap_or_else(|| vec![raw.resource.clone()]),
        jwt_filter: raw.jwt.filter.clone(),
        metadata_key: raw.jwt.metadata_key.clone(),
        payload_header,
        as_metadata,
        metadata_cors_origin: raw
            .metadata_cors_origin
            .clone()
            .unwrap_or_else(|| "*".into()),
        claim_names,
    })
}

/// `https://host[:port]` and the path (no trailing slash; empty for root).
fn split_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    // URLs end up in headers (`WWW-Authenticate`): visible ASCII only.
    let visible = url
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\' && b != b'#');
    if !(scheme == "https" || scheme == "http") || rest.is_empty() || !visible {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return None;
    }
    let path = path_only(path).trim_end_matches('/');
    Some((format!("{scheme}://{authority}"), path.to_string()))
}

/// Who is calling, as far as the verified token says.
#[derive(Debug, Clone)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub claims: Map<String, Value>,
}

#[derive(Debug)]
pub enum Authn {
    Ok(Principal),
    /// No bearer token at all.
    Missing,
    /// A token was sent but not accepted (why, for the log).
    Invalid(String),
}

/// Decide who the caller is from what `jwt_authn` left behind.
pub fn authenticate(auth: &Auth, headers: &[(String, String)], host: &dyn Host) -> Authn {
    let bearer = header(headers, "authorization").map(str::trim).filter(|v| {
        v.len() > 7
            && v.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
    });
    // A claim of the verified token, as jwt_authn left it in the metadata.
    let claim = |name: &str| host.metadata(&auth.jwt_filter, &[&auth.metadata_key, name]);
    let md = |name: &str| match claim(name) {
        Some(MetaValue::Str(s)) => Some(s),
        _ => None,
    };
    // The metadata exists only when jwt_authn verified a token on this request.
    let verified_iss = md("iss");
    let opaque = verified_iss.is_none()
        && host
            .metadata(&auth.jwt_filter, &[&auth.metadata_key])
            .is_some();
    if verified_iss.is_none() && !opaque {
        return match bearer {
            Some(_) => Authn::Invalid("token was not accepted by jwt_authn".into()),
            None => Authn::Missing,
        };
    }
    let forwarded: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(&auth.payload_header))
        .map(|(_, v)| v.as_str())
        .collect();
    if forwarded.len() > 1 {
        return Authn::Invalid(format!(
            "{} appears {} times",
            auth.payload_header,
            forwarded.len()
        ));
    }
    // The forwarded payload has every claim with its JSON type; without it
    // (Envoy Gateway cannot forward it) the claims the policy needs are read
    // one by one from the metadata.
    let payload = match forwarded.first().and_then(|p| decode_payload(p)) {
        Some(p) => p,
        None if opaque => {
            return Authn::Invalid(format!(
                "jwt_authn verified a token, but this build reads no claims from metadata: configure jwt_authn's forward_payload_header: {}",
                auth.payload_header
            ))
        }
        None => claims_from_metadata(&auth.claim_names, &claim),
    };
    let iss = payload.get("iss").and_then(Value::as_str).unwrap_or("");
    let sub = payload.get("sub").and_then(Value::as_str).unwrap_or("");
    if let Some(verified_iss) = verified_iss {
        if iss != verified_iss || md("sub").unwrap_or_default() != sub {
            return Authn::Invalid("payload header does not match the verified token".into());
        }
    }
    // RFC 8707: the token must have been issued for this resource.
    let aud_ok = match payload.get("aud") {
        Some(Value::String(a)) => auth.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| auth.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Authn::Invalid(format!("token audience is not {}", auth.resource));
    }
    let mut scopes: Vec<String> = Vec::new();
    for key in ["scope", "scp"] {
        match payload.get(key) {
            Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(a)) => {
                scopes.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    Authn::Ok(Principal {
        issuer: iss.to_string(),
        subject: sub.to_string(),
        scopes,
        claims: payload,
    })
}

/// The claims the policy needs, read one by one from the verified payload in
/// the metadata. A claim the host cannot type (the proxy-wasm build cannot
/// tell numbers and booleans from bytes) is left out.
fn claims_from_metadata(
    names: &[String],
    claim: &dyn Fn(&str) -> Option<MetaValue>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for name in names {
        if let Some(v) = claim(name).and_then(json_value) {
            out.insert(name.clone(), v);
        }
    }
    out
}

/// A metadata value as JSON; whole numbers as integers, so that they equal
/// the integers of a rule's `when.claims`.
fn json_value(v: MetaValue) -> Option<Value> {
    Some(match v {
        MetaValue::Str(s) => Value::String(s),
        MetaValue::Bool(b) => Value::Bool(b),
        MetaValue::Num(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(n as i64),
        MetaValue::Num(n) => Value::Number(serde_json::Number::from_f64(n)?),
        MetaValue::List(items) => Value::Array(items.into_iter().filter_map(json_value).collect()),
        MetaValue::Opaque => return None,
    })
}

fn decode_payload(b64: &str) -> Option<Map<String, Value>> {
    let t = b64.trim();
    let bytes = URL_SAFE_NO_PAD
        .decode(t.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(t))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The digest a session is bound to: the same issuer and subject, and only
/// those, open the session. Keyed, so ids do not reveal who holds them.
pub fn principal_digest(keys: &Keyring, p: &Principal) -> [u8; 16] {
    let n = keys.synthetic_nonce(&[b"principal", p.issuer.as_bytes(), p.subject.as_bytes()]);
    let mut d = [0u8; 16];
    d.copy_from_slice(n.get(..16).unwrap_or(&[0; 16]));
    d
}

impl Auth {
    /// 401 for a request without a usable token.
    pub fn unauthorized(&self, invalid: bool, cors: &[(String, String)]) -> LocalResponse {
        let mut challenge = format!("Bearer resource_metadata=\"{}\"", self.metadata_url);
        if let Some(s) = &self.challenge_scope {
            challenge.push_str(&format!(", scope=\"{s}\""));
        }
        if invalid {
            challenge.push_str(", error=\"invalid_token\", error_description=\"the access token is invalid, expired or not issued for this resource\"");
        }
        let body = error_json(
            None,
            INVALID_REQUEST,
            "Unauthorized: a valid bearer token for this resource is required",
            None,
        );
        let mut r = LocalResponse::json(401, body).with_header("www-authenticate", challenge);
        r.headers.extend(cors.iter().cloned());
        r
    }

    /// Every path the filter answers itself (the discovery documents): a
    /// route that enables the filter per path must send these to it.
    pub fn well_known_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.metadata_paths.iter().map(String::as_str).collect();
        if self.as_metadata.is_some() {
            paths.extend(AS_METADATA_PATHS);
        }
        paths
    }

    /// The protected resource metadata document, if `path` asks for it.
    pub fn serves_metadata(&self, path: &str) -> bool {
        let p = path_only(path);
        self.metadata_paths.iter().any(|m| m == p)
    }

    pub fn metadata_response(&self) -> LocalResponse {
        LocalResponse::json(200, self.metadata_json.clone())
            .with_header(
                "access-control-allow-origin",
                self.metadata_cors_origin.clone(),
            )
            .with_header("cache-control", "max-age=3600")
    }
}

/// Paths under which 2025-03-26 clients look for the authorization server.
pub const AS_METADATA_PATHS: [&str; 2] = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testing::FakeHost;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn raw(json: serde_json::Value) -> RawAuth {
        serde_json::from_value(json).unwrap()
    }

    fn auth(extra: serde_json::Value) -> Auth {
        let mut base = serde_json::json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "scopes": ["mcp"],
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
            b.extend(e);
        }
        compile(&raw(base), "/mcp").unwrap()
    }

    #[test]
    fn metadata_document_and_urls() {
        let a = auth(
            serde_json::json!({"resource_name": "Tools", "scopes_supported": ["mcp", "issues:write"]}),
        );
        assert_eq!(
            a.metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert!(a.serves_metadata("/.well-known/oauth-protected-resource/mcp"));
        assert!(a.serves_metadata("/.well-known/oauth-protected-resource"));
        assert_eq!(
            a.well_known_paths(),
            [
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ]
        );
        let doc: Value = serde_json::from_str(&a.metadata_json).unwrap();
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://auth.example.com");
        assert_eq!(doc["scopes_supported"][1], "issues:write");
        assert_eq!(doc["bearer_methods_supported"][0], "header");
        assert_eq!(doc["resource_name"], "Tools");
        let r = a.unauthorized(true, &[]);
        let www = header(&r.headers, "www-authenticate").unwrap();
        assert!(www.starts_with("Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""));
        assert!(www.contains("scope=\"mcp\"") && www.contains("error=\"invalid_token\""));
        assert!(!a
            .unauthorized(false, &[])
            .headers
            .iter()
            .any(|(_, v)| v.contains("invalid_token")));
    }

    #[test]
    fn config_errors_name_fields() {
        let e = compile(&raw(serde_json::json!({"resource": "mcp.example.com", "authorization_servers": ["https://a"]})), "/mcp").unwrap_err();
        assert_eq!(e.0, "auth.resource");
        // Values that end up in response headers cannot smuggle a line break.
        let e = compile(
            &raw(serde_json::json!({"resource": "https://x/mcp\r\nx-evil: 1", "authorization_servers": ["https://a"]})),
            "/mcp",
        )
        .unwrap_err();
        assert_eq!(e.0, "auth.resource");
        for bad in ["\r\n*", "https://app.example.com/path", "app.example.com"] {
            let e = compile(
                &raw(serde_json::json!({"resource": "https://x/mcp", "authorization_servers": ["https://a"],
                    "metadata_cors_origin": bad})),
                "/mcp",
            )
            .unwrap_err();
            assert_eq!(e.0, "auth.metadata_cors_origin", "{bad:?}");
        }
        for good in ["*", "https://app.example.com", "http://localhost:3000/"] {
            compile(
                &raw(serde_json::json!({"resource": "https://x/mcp", "authorization_servers": ["https://a"],
                    "metadata_cors_origin": good})),
                "/mcp",
            )
            .unwrap_or_else(|e| panic!("{good}: {e:?}"));
        }
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn claims_from_metadata_keep_what_the_host_typed() {
        // As the proxy-wasm adapter reads them from Envoy 1.40 for a verified
        // token (its decoding of Envoy's encoding is tested there).
        let claim = |c: &str| -> Option<MetaValue> {
            let s = |v: &str| Some(MetaValue::Str(v.to_string()));
            match c {
                "iss" => s("https://auth.example.com"),
                "sub" => s("alice"),
                "aud" => s("https://mcp.example.com/mcp"),
                "groups" => Some(MetaValue::List(vec![
                    MetaValue::Str("ops".into()),
                    MetaValue::Str("admins".into()),
                ])),
                "level" => Some(MetaValue::Num(3.0)),
                "ratio" => Some(MetaValue::Num(0.5)),
                "admin" => Some(MetaValue::Bool(true)),
                _ => None,
            }
        };
        let names: Vec<String> = [
            "iss", "sub", "aud", "groups", "exp", "level", "ratio", "admin",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = claims_from_metadata(&names, &claim);
        assert_eq!(m["sub"], "alice");
        assert_eq!(m["groups"], serde_json::json!(["ops", "admins"]));
        assert!(!m.contains_key("exp"), "opaque numbers are skipped");
        assert_eq!(
            m["level"],
            serde_json::json!(3),
            "whole numbers match integer rules"
        );
        assert_eq!(m["ratio"], serde_json::json!(0.5));
        assert_eq!(m["admin"], serde_json::json!(true));
    }

    #[test]
    fn authentication_trusts_only_verified_tokens() {
        let a = auth(serde_json::json!({}));
        let host = FakeHost::default();
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"iss": "https://auth.example.com", "sub": "alice", "aud": "https://mcp.example.com/mcp", "scope": "mcp x"}).to_string(),
        );
        // Nothing at all.
        assert!(matches!(
            authenticate(&a, &headers(&[]), &host),
            Authn::Missing
        ));
        // A token jwt_authn did not accept (no metadata), even with a forged payload header.
        let h = headers(&[
            ("authorization", "Bearer abc"),
            ("x-mcpgw-jwt-payload", &payload),
        ]);
        assert!(matches!(authenticate(&a, &h, &host), Authn::Invalid(_)));
        // Verified.
        let jwt = "envoy.filters.http.jwt_authn";
        host.set_metadata(jwt, &["jwt_payload", "iss"], "https://auth.example.com");
        host.set_metadata(jwt, &["jwt_payload", "sub"], "alice");
        let Authn::Ok(p) = authenticate(&a, &h, &host) else {
            panic!()
        };
        assert_eq!(p.subject, "alice");
        assert_eq!(p.scopes, vec!["mcp", "x"]);
        // A payload header that is not the verified token's.
        let other = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"iss": "https://auth.example.com", "sub": "mallory", "aud": "https://mcp.example.com/mcp"}).to_string(),
        );
        let h2 = headers(&[
            ("authorization", "Bearer abc"),
            ("x-mcpgw-jwt-payload", &other),
        ]);
        assert!(matches!(authenticate(&a, &h2, &host), Authn::Invalid(_)));
        // Without the payload header (Envoy Gateway), the metadata alone suffices.
        host.set_metadata(jwt, &["jwt_payload", "aud"], "https://mcp.example.com/mcp");
        host.set_metadata(jwt, &["jwt_payload", "scope"], "mcp y");
        let Authn::Ok(p) = authenticate(&a, &headers(&[("authorization", "Bearer abc")]), &host)
        else {
            panic!()
        };
        assert_eq!(
            (p.subject.as_str(), p.scopes.clone()),
            ("alice", vec!["mcp".to_string(), "y".to_string()])
        );
        // Wrong audience.
        let aud = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"iss": "https://auth.example.com", "sub": "alice", "aud": "https://other.example.com"}).to_string(),
        );
        let h3 = headers(&[
            ("authorization", "Bearer abc"),
            ("x-mcpgw-jwt-payload", &aud),
        ]);
        assert!(
            matches!(authenticate(&a, &h3, &host), Authn::Invalid(m) if m.contains("audience"))
        );
    }

    #[test]
    fn hosts_that_cannot_read_the_payload_take_the_forwarded_header_as_verified() {
        let a = auth(serde_json::json!({}));
        let host = FakeHost::default();
        let jwt = "envoy.filters.http.jwt_authn";
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"iss": "https://auth.example.com", "sub": "alice", "aud": "https://mcp.example.com/mcp", "scope": "mcp"}).to_string(),
        );
        let h = headers(&[
            ("authorization", "Bearer abc"),
            ("x-mcpgw-jwt-payload", &payload),
        ]);
        // No metadata: jwt_authn verified nothing; the header does not count.
        assert!(matches!(authenticate(&a, &h, &host), Authn::Invalid(_)));
        // Verified (the payload is there, unreadable): the forwarded payload counts.
        host.set_opaque_metadata(jwt, "jwt_payload");
        let Authn::Ok(p) = authenticate(&a, &h, &host) else {
            panic!()
        };
        assert_eq!(p.subject, "alice");
        // A second payload header (one the client sent and one jwt_authn
        // added, if it did not strip the client's) is refused.
        let mut twice = h.clone();
        twice.push(("x-mcpgw-jwt-payload".into(), payload.clone()));
        assert!(
            matches!(authenticate(&a, &twice, &host), Authn::Invalid(m) if m.contains("2 times"))
        );
        // Without the forwarded payload there are no claims to read: refused, saying why.
        assert!(matches!(
            authenticate(&a, &headers(&[("authorization", "Bearer abc")]), &host),
            Authn::Invalid(m) if m.contains("forward_payload_header")
        ));
    }
}
