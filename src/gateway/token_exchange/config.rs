//! A backend's `token_exchange` block: the JSON users write and its compiled
//! form. Secrets (`client_secret`, actor tokens, signing keys) come from
//! `${VAR}` references, expanded once here.

use super::assertion::{Algorithm, SigningKey};
use crate::gateway::config::{expand, parse_duration, RESERVED_HEADERS};
use crate::protocol::http::is_safe_header_value;
use serde::Deserialize;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenExchange {
    /// The Envoy cluster of the token endpoint.
    pub cluster: String,
    /// The token endpoint's URL (its host and path are what is sent).
    pub token_endpoint: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default = "access_token_type")]
    pub subject_token_type: String,
    #[serde(default = "access_token_type")]
    pub requested_token_type: String,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client_auth: Option<RawClientAuth>,
    #[serde(default)]
    pub actor_token: Option<RawActorToken>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub value_prefix: Option<String>,
    #[serde(default)]
    pub step_up_scopes: Vec<String>,
    #[serde(default)]
    pub cache: RawCache,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub method: ClientAuthMethod,
}

/// How the gateway authenticates to the token endpoint (RFC 6749 2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMethod {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActorToken {
    /// A static actor token.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    /// A JWT the gateway signs for each exchange (RFC 7523).
    #[serde(default)]
    pub client_assertion_jwt: Option<RawAssertion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssertion {
    pub issuer: String,
    pub subject: String,
    /// Defaults to the token endpoint URL.
    #[serde(default)]
    pub audience: Option<String>,
    /// PEM (RSA or EC, PKCS#8 or PKCS#1/SEC1), or the shared secret for HS*.
    pub private_key: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default = "default_lifetime")]
    pub lifetime: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    #[serde(default = "default_max_ttl")]
    pub max_ttl: String,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_entries: default_max_entries(),
            max_ttl: default_max_ttl(),
        }
    }
}

fn default_timeout() -> String {
    "5s".into()
}
fn access_token_type() -> String {
    ACCESS_TOKEN_TYPE.into()
}
fn default_algorithm() -> String {
    "RS256".into()
}
fn default_lifetime() -> String {
    "5m".into()
}
fn default_max_entries() -> usize {
    4096
}
fn default_max_ttl() -> String {
    "1h".into()
}

/// The compiled `token_exchange` of one backend.
#[derive(Debug)]
pub struct TokenExchange {
    pub cluster: String,
    pub url: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub subject_token_type: String,
    pub requested_token_type: String,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// Space-separated, as sent (`None` when no scope is requested).
    pub scope: Option<String>,
    pub client: Option<ClientAuth>,
    pub actor: Option<Actor>,
    /// Lower-case header name the exchanged token goes in.
    pub header: String,
    pub value_prefix: String,
    pub step_up_scopes: Vec<String>,
    pub max_entries: usize,
    pub max_ttl_ms: u64,
}

#[derive(Debug)]
pub struct ClientAuth {
    pub id: String,
    pub secret: String,
    pub method: ClientAuthMethod,
}

#[derive(Debug)]
pub enum Actor {
    Static { token: String, token_type: String },
    Assertion(Box<Assertion>),
}

#[derive(Debug)]
pub struct Assertion {
    pub issuer: String,
    pub subject: String,
    pub audience: String,
    pub key: SigningKey,
    pub key_id: Option<String>,
    pub lifetime_ms: u64,
}

/// A configuration problem: (field under the block, what to do).
pub type Problem = (String, String);

fn problem(f: &str, p: impl Into<String>) -> Problem {
    (f.to_string(), p.into())
}

/// Compile one backend's block; `env` resolves `${VAR}`. Fields in errors
/// are relative to the block (`client_auth.client_secret`).
pub fn compile(
    raw: &RawTokenExchange,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TokenExchange, Problem> {
    if raw.cluster.is_empty() || !is_safe_header_value(&raw.cluster) || raw.cluster.contains(' ') {
        return Err(problem(
            "cluster",
            "must be the name of the Envoy cluster of the token endpoint",
        ));
    }
    let (https, host, path) = split_endpoint(&raw.token_endpoint).ok_or_else(|| {
        problem(
            "token_endpoint",
            "must be the token endpoint's absolute URL, like \"https://sts.example.com/oauth2/token\"",
        )
    })?;
    let _ = https;
    let authority = match &raw.authority {
        Some(a) if a.is_empty() || !is_safe_header_value(a) || a.contains(['/', ' ', '@']) => {
            return Err(problem(
                "authority",
                "must be host[:port], like \"sts.example.com\"",
            ));
        }
        Some(a) => a.clone(),
        None => host,
    };
    let timeout_ms = parse_duration(&raw.timeout).map_err(|p| problem("timeout", p))?;
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err(problem("timeout", "must be more than 0 and at most 60s"));
    }
    for (f, v) in [
        ("subject_token_type", &raw.subject_token_type),
        ("requested_token_type", &raw.requested_token_type),
    ] {
        if !v.starts_with("urn:") || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(problem(f, "must be a token type URI such as \"urn:ietf:params:oauth:token-type:access_token\""));
        }
    }
    if raw.audience.is_none() && raw.resource.is_none() {
        return Err(problem(
            "audience",
            "set `audience` and/or `resource` so the token service issues a token for this backend only",
        ));
    }
    for (f, v) in [("audience", &raw.audience), ("resource", &raw.resource)] {
        if v.as_ref()
            .is_some_and(|v| v.is_empty() || v.chars().any(char::is_control))
        {
            return Err(problem(
                f,
                "must be a non-empty string without control characters",
            ));
        }
    }
    for (i, s) in raw.scopes.iter().chain(&raw.step_up_scopes).enumerate() {
        if !is_scope_token(s) {
            let f = if i < raw.scopes.len() {
                format!("scopes[{i}]")
            } else {
                format!("step_up_scopes[{}]", i - raw.scopes.len())
            };
            return Err((
                f,
                "scopes are visible ASCII without spaces, quotes or backslashes".into(),
            ));
        }
    }
    let client = match &raw.client_auth {
        None => None,
        Some(c) => {
            if c.client_id.is_empty() || c.client_id.chars().any(char::is_control) {
                return Err(problem(
                    "client_auth.client_id",
                    "must be the gateway's client id at the token service",
                ));
            }
            let secret = expand(&c.client_secret, env)
                .map_err(|p| problem("client_auth.client_secret", p))?;
            if secret.is_empty() {
                return Err(problem(
                    "client_auth.client_secret",
                    "is empty; reference the secret with \"${VAR}\"",
                ));
            }
            Some(ClientAuth {
                id: c.client_id.clone(),
                secret,
                method: c.method,
            })
        }
    };
    let actor = match &raw.actor_token {
        None => None,
        Some(a) => Some(compile_actor(a, &raw.token_endpoint, env)?),
    };
    let header = raw
        .header
        .as_deref()
        .unwrap_or("authorization")
        .to_ascii_lowercase();
    if header.is_empty()
        || !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(problem("header", "must be an HTTP header name"));
    }
    if reserved(&header) {
        return Err(problem(
            "header",
            "is managed by the gateway; use \"authorization\" or a header of your own",
        ));
    }
    let value_prefix = raw.value_prefix.clone().unwrap_or_else(|| {
        if header == "authorization" {
            "Bearer ".into()
        } else {
            String::new()
        }
    });
    if !value_prefix.is_empty() && !is_safe_header_value(&value_prefix) {
        return Err(problem("value_prefix", "must be visible ASCII"));
    }
    if raw.cache.max_entries == 0 || raw.cache.max_entries > 1_000_000 {
        return Err(problem(
            "cache.max_entries",
            "must be between 1 and 1000000",
        ));
    }
    let max_ttl_ms = parse_duration(&raw.cache.max_ttl).map_err(|p| problem("cache.max_ttl", p))?;
    let scope = (!raw.scopes.is_empty()).then(|| raw.scopes.join(" "));
    Ok(TokenExchange {
        cluster: raw.cluster.clone(),
        url: raw.token_endpoint.clone(),
        authority,
        path,
        timeout_ms,
        subject_token_type: raw.subject_token_type.clone(),
        requested_token_type: raw.requested_token_type.clone(),
        audience: raw.audience.clone(),
        resource: raw.resource.clone(),
        scope,
        client,
        actor,
        header,
        value_prefix,
        step_up_scopes: raw.step_up_scopes.clone(),
        max_entries: raw.cache.max_entries,
        max_ttl_ms,
    })
}

fn compile_actor(
    a: &RawActorToken,
    token_endpoint: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Actor, Problem> {
    match (&a.token, &a.client_assertion_jwt) {
        (Some(t), None) => {
            let token = expand(t, env).map_err(|p| problem("actor_token.token", p))?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(problem("actor_token.token", "is empty; reference it with \"${VAR}\""));
            }
            let token_type = a.token_type.clone().unwrap_or_else(access_token_type);
            if !token_type.starts_with("urn:") {
                return Err(problem("actor_token.token_type", "must be a token type URI"));
            }
            Ok(Actor::Static { token, token_type })
        }
        (None, Some(j)) => {
            if a.token_type.is_some() {
                return Err(problem(
                    "actor_token.token_type",
                    "applies to a static `token` only (a signed assertion is a JWT)",
                ));
            }
            let f = |n: &str| format!("actor_token.client_assertion_jwt.{n}");
            for (n, v) in [("issuer", &j.issuer), ("subject", &j.subject)] {
                if v.is_empty() {
                    return Err((f(n), "must not be empty".into()));
                }
            }
            let alg = Algorithm::parse(&j.algorithm).ok_or_else(|| {
                (
                    f("algorithm"),
                    "must be one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, HS256, HS384, HS512".to_string(),
                )
            })?;
            let pem = expand(&j.private_key, env).map_err(|p| (f("private_key"), p))?;
            let key = SigningKey::new(alg, &pem).map_err(|p| (f("private_key"), p))?;
            let lifetime_ms = parse_duration(&j.lifetime).map_err(|p| (f("lifetime"), p))?;
            if !(1000..=3_600_000).contains(&lifetime_ms) {
                return Err((f("lifetime"), "must be between 1s and 1h".into()));
            }
            Ok(Actor::Assertion(Box::new(Assertion {
                issuer: j.issuer.clone(),
                subject: j.subject.clone(),
                audience: j.audience.clone().unwrap_or_else(|| token_endpoint.to_string()),
                key,
                key_id: j.key_id.clone(),
                lifetime_ms,
            })))
        }
        _ => Err(problem(
            "actor_token",
            "set exactly one of `token` (a static actor token) or `client_assertion_jwt` (a JWT the gateway signs)",
        )),
    }
}

/// Headers the exchanged token cannot be put in: those the gateway sets
/// itself, and the client's cookies (never forwarded).
fn reserved(header: &str) -> bool {
    RESERVED_HEADERS.contains(&header) || header == "cookie"
}

fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// `(https, host[:port], path)` of an absolute http(s) URL.
pub fn split_endpoint(url: &str) -> Option<(bool, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let https = match scheme {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    if !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains('#') {
        return None;
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some((https, host.to_string(), path.to_string()))
}
