//! JWKS discovery for an OAuth issuer given without `jwks` (as in Envoy AI
//! Gateway's MCP announcement): the issuer's authorization server metadata
//! (RFC 8414), then OpenID Connect discovery, fetched at `run` / `render`
//! time; the `jwks_uri` found goes into `jwt_authn`'s remote JWKS.
//!
//! The issuer in the document must be the issuer configured (RFC 8414
//! section 3.3, OpenID Connect Discovery section 4.3), so a misconfigured or
//! hostile metadata endpoint cannot point the gateway at someone else's keys.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The metadata URLs tried, in order: RFC 8414 (well-known name before the
/// issuer's path), OpenID Connect discovery (after it), and the OpenID name
/// before the path (which some providers use).
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed.find("://").map(|i| i + 3) {
        Some(start) => match trimmed.get(start..).and_then(|r| r.find('/')) {
            Some(slash) => trimmed.split_at(start + slash),
            None => (trimmed, ""),
        },
        None => (trimmed, ""),
    };
    let mut out = vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{trimmed}/.well-known/openid-configuration"),
    ];
    let oidc_before = format!("{origin}/.well-known/openid-configuration{path}");
    if !out.contains(&oidc_before) {
        out.push(oidc_before);
    }
    out
}

/// A client trusting the CA bundle at `ca_file` (the one Envoy uses).
fn client(ca_file: &Path) -> Result<reqwest::Client, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read the CA bundle {}: {e}", ca_file.display()))?;
    for c in certs.flatten() {
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: no CA certificate in it (pass --ca-file with the issuer's CA)",
            ca_file.display()
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The issuer's `jwks_uri`, and the document it came from.
pub async fn jwks_uri(issuer: &str, ca_file: &Path) -> Result<(String, String), String> {
    let client = client(ca_file)?;
    let mut failures = Vec::new();
    for url in metadata_urls(issuer) {
        let r = match client
            .get(&url)
            .header("accept", "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{url}: {}", error_chain(&e)));
                continue;
            }
        };
        let status = r.status();
        if !status.is_success() {
            failures.push(format!("{url}: HTTP {}", status.as_u16()));
            continue;
        }
        let doc: serde_json::Value = match r.json().await {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{url}: not a JSON document ({e})"));
                continue;
            }
        };
        let said = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
        if said.trim_end_matches('/') != issuer.trim_end_matches('/') {
            failures.push(format!(
                "{url}: its issuer is \"{said}\", not \"{issuer}\" (RFC 8414 requires them to match)"
            ));
            continue;
        }
        match doc.get("jwks_uri").and_then(|v| v.as_str()) {
            Some(j) if crate::model::parse_url(j).is_ok() => return Ok((j.to_string(), url)),
            _ => failures.push(format!("{url}: no http(s) jwks_uri")),
        }
    }
    Err(format!(
        "cannot discover the JWKS of issuer {issuer} ({}); set spec.securityPolicy.oauth.jwks.remoteJWKS.uri, or pass --ca-file if the issuer uses a private CA",
        failures.join("; ")
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls() {
        assert_eq!(
            metadata_urls("https://auth.example.com"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            metadata_urls("https://idp.example.com/realms/mcp/"),
            [
                "https://idp.example.com/.well-known/oauth-authorization-server/realms/mcp",
                "https://idp.example.com/realms/mcp/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/openid-configuration/realms/mcp",
            ]
        );
    }
}
