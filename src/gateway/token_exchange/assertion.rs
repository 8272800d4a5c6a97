//! The JWT the gateway signs as its actor token (RFC 7523 style client
//! assertion): `iss`/`sub` name the gateway, `aud` the token service, a fresh
//! `jti` each time. Signed with RustCrypto's `rsa`, `p256`, `p384` and `hmac`
//! (pure Rust, no RNG of their own: randomness comes from the host), in JWS
//! compact form.

use crate::gateway::host::Host;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use sha2::{Sha256, Sha384, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        Some(match s {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }
}

enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Secret(Vec<u8>),
}

/// A parsed signing key and its algorithm. Its `Debug` shows no key material.
pub struct SigningKey {
    alg: Algorithm,
    key: Key,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.alg.name())
    }
}

impl SigningKey {
    /// `text`: a PEM private key (RSA: PKCS#8 or PKCS#1; EC: PKCS#8 or
    /// SEC1) for RS/PS/ES, the shared secret itself for HS.
    pub fn new(alg: Algorithm, text: &str) -> Result<SigningKey, String> {
        use Algorithm::*;
        let pem = text.trim();
        let key = match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::pkcs8::DecodePrivateKey;
                let k = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                    .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
                    .map_err(|_| {
                        format!("is not a PEM RSA private key (\"-----BEGIN PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\"), as {} needs", alg.name())
                    })?;
                if rsa::traits::PublicKeyParts::size(&k) < 256 {
                    return Err("the RSA key is shorter than 2048 bits".into());
                }
                Key::Rsa(Box::new(k))
            }
            ES256 => {
                use p256::pkcs8::DecodePrivateKey;
                let k = p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                    .ok()
                    .or_else(|| p256::SecretKey::from_sec1_pem(pem).ok().map(Into::into))
                    .ok_or("is not a PEM P-256 private key, as ES256 needs")?;
                Key::P256(k)
            }
            ES384 => {
                use p384::pkcs8::DecodePrivateKey;
                let k = p384::ecdsa::SigningKey::from_pkcs8_pem(pem)
                    .ok()
                    .or_else(|| p384::SecretKey::from_sec1_pem(pem).ok().map(Into::into))
                    .ok_or("is not a PEM P-384 private key, as ES384 needs")?;
                Key::P384(k)
            }
            HS256 | HS384 | HS512 => {
                if text.len() < 32 {
                    return Err(format!(
                        "an {} secret must be at least 32 bytes",
                        alg.name()
                    ));
                }
                Key::Secret(text.as_bytes().to_vec())
            }
        };
        Ok(SigningKey { alg, key })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The signature over `input`; `None` when the host has no randomness
    /// (RSA blinding and PSS salts need it).
    fn sign(&self, input: &[u8], host: &dyn Host) -> Option<Vec<u8>> {
        use Algorithm::*;
        let mut rng = HostRng {
            host,
            failed: false,
        };
        let sig = match (&self.key, self.alg) {
            (Key::Rsa(k), RS256) => rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Key::Rsa(k), RS384) => rsa::pkcs1v15::SigningKey::<Sha384>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Key::Rsa(k), RS512) => rsa::pkcs1v15::SigningKey::<Sha512>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Key::Rsa(k), PS256) => rsa::pss::BlindedSigningKey::<Sha256>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Key::Rsa(k), PS384) => rsa::pss::BlindedSigningKey::<Sha384>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Key::Rsa(k), PS512) => rsa::pss::BlindedSigningKey::<Sha512>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Key::P256(k), _) => {
                let s: p256::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            (Key::P384(k), _) => {
                let s: p384::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            (Key::Secret(k), HS256) => hmac_sign::<Hmac<Sha256>>(k, input)?,
            (Key::Secret(k), HS384) => hmac_sign::<Hmac<Sha384>>(k, input)?,
            (Key::Secret(k), HS512) => hmac_sign::<Hmac<Sha512>>(k, input)?,
            _ => return None,
        };
        (!rng.failed).then_some(sig)
    }
}

fn hmac_sign<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    let mut m = <M as Mac>::new_from_slice(key).ok()?;
    m.update(input);
    Some(m.finalize().into_bytes().to_vec())
}

/// The host's randomness as a `rand_core` RNG; a failure is remembered and
/// the signature discarded.
struct HostRng<'a> {
    host: &'a dyn Host,
    failed: bool,
}

impl rand_core::RngCore for HostRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.host.random(dest).is_err() {
            self.failed = true;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for HostRng<'_> {}

/// What goes into one assertion.
pub struct Claims<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub audience: &'a str,
    pub key_id: Option<&'a str>,
    pub now_ms: u64,
    pub lifetime_ms: u64,
}

/// A signed assertion, or `None` without randomness.
pub fn sign(key: &SigningKey, c: &Claims<'_>, host: &dyn Host) -> Option<String> {
    let mut jti = [0u8; 16];
    host.random(&mut jti).ok()?;
    let mut header = serde_json::json!({"alg": key.alg.name(), "typ": "JWT"});
    if let (Some(kid), Some(h)) = (c.key_id, header.as_object_mut()) {
        h.insert("kid".into(), kid.into());
    }
    let iat = c.now_ms / 1000;
    let claims = serde_json::json!({
        "iss": c.issuer,
        "sub": c.subject,
        "aud": c.audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + c.lifetime_ms.div_ceil(1000),
        "jti": URL_SAFE_NO_PAD.encode(jti),
    });
    let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.sign(out.as_bytes(), host)?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Some(out)
}
