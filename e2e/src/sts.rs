//! A small RFC 8693 token service for the token-exchange tests.
//!
//! `POST /token` checks the gateway's client credentials (HTTP Basic), verifies
//! the subject token against the test issuer's keys (`testdata/oauth`), an
//! actor token (when sent) against the gateway's key, and issues a JWT for
//! the requested `audience`, signed with its own key (`kid` `sts`, served at
//! `GET /jwks`), with `act` when an actor token came. It counts exchanges and
//! can be told to refuse or to be slow; dropping it stops it (then it is
//! down: connections are refused).

use crate::envoy::workspace_root;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub const STS_ISSUER: &str = "https://sts.test";
pub const CLIENT_ID: &str = "mcpgw";
pub const CLIENT_SECRET: &str = "sts-client-secret-0d1e";

/// What the service does with the next exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Issue,
    /// Answer 400 with this OAuth error.
    Refuse(String),
    /// Wait this long before answering.
    Slow(Duration),
}

struct Inner {
    subject_issuer: String,
    subject_audience: String,
    subject_key: DecodingKey,
    actor_key: DecodingKey,
    signing_key: EncodingKey,
    jwks: Value,
    mode: Mutex<Mode>,
    lifetime_s: AtomicU64,
    exchanges: AtomicUsize,
    /// Every token issued (tests check none of them leaks into logs).
    issued: Mutex<Vec<String>>,
}

pub struct TokenService {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    ct: CancellationToken,
}

fn key_file(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("testdata/oauth").join(name)).expect("test key")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenService {
    /// Accepts subject tokens of `issuer` for `audience`; issues tokens that
    /// live `lifetime_s`.
    pub async fn start(issuer: &str, audience: &str, lifetime_s: u64) -> TokenService {
        use base64::Engine;
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let own = key_file("other-rsa.pem");
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(&own).expect("sts key");
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "sts", "alg": "RS256", "use": "sig",
            "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be())}]});
        let test_jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&key_file("jwks.json")).expect("jwks");
        let jwk = |kid: &str| test_jwks.find(kid).expect("kid");
        let inner = Arc::new(Inner {
            subject_issuer: issuer.to_string(),
            subject_audience: audience.to_string(),
            subject_key: DecodingKey::from_jwk(jwk("test-rsa")).expect("rsa jwk"),
            actor_key: DecodingKey::from_jwk(jwk("test-ec")).expect("ec jwk"),
            signing_key: EncodingKey::from_rsa_pem(own.as_bytes()).expect("sts key"),
            jwks,
            mode: Mutex::new(Mode::Issue),
            lifetime_s: AtomicU64::new(lifetime_s),
            exchanges: AtomicUsize::new(0),
            issued: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/token", post(token))
            .route("/jwks", get(serve_jwks))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ct = CancellationToken::new();
        let stop = ct.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled_owned().await })
                .await;
        });
        TokenService { addr, inner, ct }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Exchange requests received so far.
    pub fn exchanges(&self) -> usize {
        self.inner.exchanges.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.inner.mode.lock() {
            *m = mode;
        }
    }

    /// Every token it issued.
    pub fn issued(&self) -> Vec<String> {
        self.inner
            .issued
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Stops listening: from now on connections are refused (the service is down).
    pub fn stop(&self) {
        self.ct.cancel();
    }

    /// Its JWKS (what backends verify issued tokens with).
    pub fn jwks(&self) -> Value {
        self.inner.jwks.clone()
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

async fn serve_jwks(State(s): State<Arc<Inner>>) -> Json<Value> {
    Json(s.jwks.clone())
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    s.exchanges.fetch_add(1, Ordering::SeqCst);
    let mode = s.mode.lock().map(|m| m.clone()).unwrap_or(Mode::Issue);
    if let Mode::Slow(d) = mode {
        tokio::time::sleep(d).await;
    }
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "bad client credentials",
        );
    }
    let get = |k: &str| form.get(k).map(String::as_str);
    if get("grant_type") != Some("urn:ietf:params:oauth:grant-type:token-exchange")
        || get("subject_token_type") != Some("urn:ietf:params:oauth:token-type:access_token")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "not a token exchange",
        );
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[&s.subject_issuer]);
    v.set_audience(&[&s.subject_audience]);
    let Ok(subject) = decode::<Value>(get("subject_token").unwrap_or(""), &s.subject_key, &v)
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "subject token not valid",
        );
    };
    if let Mode::Refuse(e) = &mode {
        return oauth_error(StatusCode::BAD_REQUEST, e, "refused by the test");
    }
    let mut claims = json!({
        "iss": STS_ISSUER,
        "sub": subject.claims["sub"],
        "aud": get("audience").or(get("resource")).unwrap_or(""),
        "scope": get("scope").unwrap_or(""),
        "iat": now(),
        "exp": now() + s.lifetime_s.load(Ordering::SeqCst),
        "jti": s.exchanges.load(Ordering::SeqCst),
    });
    if let Some(actor) = get("actor_token") {
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        match decode::<Value>(actor, &s.actor_key, &v) {
            Ok(a) if get("actor_token_type") == Some("urn:ietf:params:oauth:token-type:jwt") => {
                claims["act"] = json!({"sub": a.claims["sub"], "iss": a.claims["iss"]});
            }
            _ => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "actor token not valid",
                )
            }
        }
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("sts".into());
    let Ok(token) = encode(&header, &claims, &s.signing_key) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "signing failed",
        );
    };
    if let Ok(mut i) = s.issued.lock() {
        i.push(token.clone());
    }
    Json(json!({
        "access_token": token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": s.lifetime_s.load(Ordering::SeqCst),
    }))
    .into_response()
}

/// What a backend keeps of the tokens it received.
#[derive(Clone, Debug)]
pub struct VerifiedClaims(pub Value);

/// An axum layer for test backends: every request must carry a bearer token
/// the token service issued (verified against its JWKS), else 401; the
/// claims ride in the request extensions (`whoami` reports them) and every
/// `Authorization` value received is recorded in `seen`.
pub fn verifier(
    jwks: &Value,
    seen: Arc<Mutex<Vec<String>>>,
) -> impl Fn(
    axum::extract::Request,
    axum::middleware::Next,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).expect("jwks");
    let key = Arc::new(DecodingKey::from_jwk(set.find("sts").expect("sts key")).expect("jwk"));
    move |mut req: axum::extract::Request, next: axum::middleware::Next| {
        let key = Arc::clone(&key);
        let seen = Arc::clone(&seen);
        Box::pin(async move {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if let Ok(mut s) = seen.lock() {
                s.push(auth.clone());
            }
            let mut v = Validation::new(Algorithm::RS256);
            v.set_issuer(&[STS_ISSUER]);
            v.validate_aud = false;
            let token = auth.strip_prefix("Bearer ").unwrap_or("");
            match decode::<Value>(token, &key, &v) {
                Ok(t) => {
                    req.extensions_mut().insert(VerifiedClaims(t.claims));
                    next.run(req).await
                }
                Err(e) => {
                    (StatusCode::UNAUTHORIZED, format!("token not accepted: {e}")).into_response()
                }
            }
        })
    }
}
