//! A backend's token exchange in the input formats -> the filter's
//! `token_exchange` block ([`TokenExchange`]).
//!
//! Both inputs use the shape of Envoy AI Gateway's MCPRoute
//! `backendRefs[].securityPolicy.tokenExchange`: `stsEndpoint`,
//! `subjectTokenType`, `audience`, `resource`, `scopes`,
//! `requestedTokenType`, `actorToken` (`secretRef`, or `clientAssertionJWT`
//! with `issuer`, `subject`, `privateKeyRef`, `signingAlgorithm`,
//! `lifetime` in seconds), `clientAuth` (`clientID`, `clientSecretRef`),
//! `cache.ttl`; plus mcpgw's own `timeout`, `header`, `valuePrefix`,
//! `stepUpScopes`, `cache.maxEntries`, `clientAuth.method`. A servers file has
//! no Secrets: there `clientAuth.clientSecret`, `actorToken.token` and
//! `clientAssertionJWT.privateKey` are `${VAR}` references instead.

use crate::model::{parse_url, CaSource, TokenExchange};
use serde_json::{json, Map, Value};

/// Where a secret comes from: `Ok("${VAR}")` for the filter.
/// Arguments: the field (for messages), the `*Ref` object, and the key the
/// Secret must hold (`clientSecret`, `token`, `privateKey`).
pub type SecretRef<'a> = dyn FnMut(&str, &Value, &str) -> Result<String, String> + 'a;

const KNOWN: &[&str] = &[
    "stsEndpoint",
    "subjectTokenType",
    "audience",
    "resource",
    "scopes",
    "requestedTokenType",
    "actorToken",
    "clientAuth",
    "cache",
    "timeout",
    "header",
    "valuePrefix",
    "stepUpScopes",
];

pub fn parse(at: &str, v: &Value, secret_ref: &mut SecretRef<'_>) -> Result<TokenExchange, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("{at}: must be an object with at least stsEndpoint and audience"))?;
    for k in o.keys() {
        if !KNOWN.contains(&k.as_str()) {
            return Err(format!(
                "{at}.{k}: unknown field (see README, token exchange)"
            ));
        }
    }
    let str_of = |k: &str| o.get(k).and_then(Value::as_str);
    let url = str_of("stsEndpoint").ok_or_else(|| {
        format!("{at}.stsEndpoint: required: the token endpoint's URL (https://...)")
    })?;
    let endpoint = parse_url(url).map_err(|e| format!("{at}.stsEndpoint: {e}"))?;
    let mut b = Map::new();
    b.insert("token_endpoint".into(), json!(url));
    for (from, to) in [
        ("subjectTokenType", "subject_token_type"),
        ("requestedTokenType", "requested_token_type"),
        ("audience", "audience"),
        ("resource", "resource"),
        ("timeout", "timeout"),
        ("header", "header"),
        ("valuePrefix", "value_prefix"),
    ] {
        if let Some(x) = o.get(from) {
            let s = x
                .as_str()
                .ok_or_else(|| format!("{at}.{from}: must be a string"))?;
            b.insert(to.into(), json!(s));
        }
    }
    for (from, to) in [("scopes", "scopes"), ("stepUpScopes", "step_up_scopes")] {
        if let Some(x) = o.get(from) {
            let list: Option<Vec<&str>> = x
                .as_array()
                .and_then(|a| a.iter().map(Value::as_str).collect());
            let list = list.ok_or_else(|| format!("{at}.{from}: must be a list of strings"))?;
            b.insert(to.into(), json!(list));
        }
    }
    if let Some(c) = o.get("clientAuth") {
        let cat = format!("{at}.clientAuth");
        let id = c
            .get("clientID")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{cat}.clientID: required"))?;
        let secret = match (c.get("clientSecretRef"), c.get("clientSecret")) {
            (Some(r), None) => secret_ref(&format!("{cat}.clientSecretRef"), r, "clientSecret")?,
            (None, Some(Value::String(s))) => s.clone(),
            _ => return Err(format!("{cat}: set clientSecretRef (a Secret with key clientSecret), or in a servers file clientSecret: \"${{VAR}}\"")),
        };
        let mut ca = Map::new();
        ca.insert("client_id".into(), json!(id));
        ca.insert("client_secret".into(), json!(secret));
        if let Some(m) = c.get("method") {
            ca.insert("method".into(), m.clone());
        }
        b.insert("client_auth".into(), Value::Object(ca));
    }
    if let Some(a) = o.get("actorToken") {
        let aat = format!("{at}.actorToken");
        let actor = match (
            a.get("secretRef"),
            a.get("token"),
            a.get("clientAssertionJWT"),
        ) {
            (Some(r), None, None) => {
                json!({"token": secret_ref(&format!("{aat}.secretRef"), r, "token")?})
            }
            (None, Some(Value::String(t)), None) => json!({"token": t}),
            (None, None, Some(j)) => {
                let jat = format!("{aat}.clientAssertionJWT");
                let field = |k: &str| j.get(k).and_then(Value::as_str);
                let key = match (j.get("privateKeyRef"), j.get("privateKey")) {
                    (Some(r), None) => secret_ref(&format!("{jat}.privateKeyRef"), r, "privateKey")?,
                    (None, Some(Value::String(k))) => k.clone(),
                    _ => return Err(format!("{jat}: set privateKeyRef (a Secret with key privateKey), or in a servers file privateKey: \"${{VAR}}\"")),
                };
                let mut c = Map::new();
                for k in ["issuer", "subject"] {
                    let v = field(k).ok_or_else(|| format!("{jat}.{k}: required"))?;
                    c.insert(k.into(), json!(v));
                }
                c.insert("private_key".into(), json!(key));
                if let Some(alg) = field("signingAlgorithm") {
                    c.insert("algorithm".into(), json!(alg));
                }
                if let Some(aud) = field("audience") {
                    c.insert("audience".into(), json!(aud));
                }
                if let Some(kid) = field("keyID") {
                    c.insert("key_id".into(), json!(kid));
                }
                if let Some(l) = j.get("lifetime") {
                    let secs = l
                        .as_u64()
                        .ok_or_else(|| format!("{jat}.lifetime: seconds, a whole number"))?;
                    c.insert("lifetime".into(), json!(format!("{secs}s")));
                }
                json!({"client_assertion_jwt": c})
            }
            _ => {
                return Err(format!(
                    "{aat}: set exactly one of secretRef or clientAssertionJWT"
                ))
            }
        };
        b.insert("actor_token".into(), actor);
    }
    if let Some(c) = o.get("cache") {
        let mut cache = Map::new();
        if let Some(ttl) = c.get("ttl").and_then(Value::as_str) {
            cache.insert("max_ttl".into(), json!(ttl));
        }
        if let Some(n) = c.get("maxEntries").and_then(Value::as_u64) {
            cache.insert("max_entries".into(), json!(n));
        }
        b.insert("cache".into(), Value::Object(cache));
    }
    Ok(TokenExchange {
        block: b,
        endpoint,
        ca: CaSource::System,
    })
}
