//! Sealed tokens: everything the gateway must remember between requests
//! travels inside the ids it hands out (session ids, rewritten request and
//! event ids, list cursors), encrypted and authenticated with
//! XChaCha20-Poly1305.
//!
//! Key material is derived once, at configure time (HKDF-SHA256 from the
//! configured 32-byte secret); sealing or opening a token then costs one AEAD
//! pass over a few hundred bytes. A 24-byte random nonce makes random nonces
//! safe for any realistic number of tokens per key.
//!
//! Token layout (base64url, no padding): `version(1) | nonce(24) | ciphertext | tag(16)`.
//! The purpose of a token is bound as associated data, so a session id can
//! never be replayed as a cursor or a request id and vice versa.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

const TOKEN_VERSION: u8 = 1;
pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// What a token is for; part of the authenticated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    Session = 1,
    RequestId = 2,
    EventId = 3,
    Cursor = 4,
    TaskId = 5,
    /// The 2026-07-28 MRTR `requestState` the gateway wraps a backend's in.
    RequestState = 6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    NotBase64,
    WrongLength(usize),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::NotBase64 => f.write_str("is not valid base64"),
            KeyError::WrongLength(n) => write!(f, "decodes to {n} bytes, need exactly 32"),
        }
    }
}

/// Decode a configured key: standard or URL-safe base64, padded or not.
pub fn decode_key(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
        .map_err(|_| KeyError::NotBase64)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength(bytes.len()))
}

/// The current key first, then older keys still accepted for opening.
pub struct Keyring {
    keys: Vec<XChaCha20Poly1305>,
    /// Secret for deterministic nonces (see [`Keyring::synthetic_nonce`]).
    nonce_key: [u8; 32],
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl Keyring {
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Keyring {
        let okm = |secret: &[u8; 32], info: &[u8]| {
            let hk = Hkdf::<Sha256>::new(Some(b"mcpgw token salt v1"), secret);
            let mut okm = [0u8; 32];
            // 32 bytes is far below HKDF's 255*32 limit: this cannot fail.
            let _ = hk.expand(info, &mut okm);
            okm
        };
        let derive =
            |secret: &[u8; 32]| XChaCha20Poly1305::new(&okm(secret, b"mcpgw sealed tokens").into());
        let mut keys = vec![derive(current)];
        keys.extend(previous.iter().map(derive));
        Keyring {
            keys,
            nonce_key: okm(current, b"mcpgw synthetic nonces"),
        }
    }

    /// A nonce derived from the data it protects (SIV style): sealing the same
    /// plaintext twice gives the same token, which reveals only that equality.
    /// Used where one backend id must map to one client id every time.
    pub fn synthetic_nonce(&self, parts: &[&[u8]]) -> [u8; NONCE_LEN] {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(self.nonce_key);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        let digest = h.finalize();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(digest.get(..NONCE_LEN).unwrap_or(&[0; NONCE_LEN]));
        nonce
    }

    /// Seal `plaintext` for `purpose` with the current key.
    pub fn seal(&self, purpose: Purpose, nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> String {
        let aad = [TOKEN_VERSION, purpose as u8];
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let ct = key
            .encrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        raw.push(TOKEN_VERSION);
        raw.extend_from_slice(nonce);
        raw.extend_from_slice(&ct);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Open a token sealed for `purpose` by any key of the ring. Any damage
    /// (truncation, flipped bit, other purpose, unknown key) gives `None`.
    pub fn open(&self, purpose: Purpose, token: &str) -> Option<Vec<u8>> {
        self.open_up_to(purpose, token, 16 * 1024)
    }

    /// [`Keyring::open`] for tokens up to `max_len` characters.
    pub fn open_up_to(&self, purpose: Purpose, token: &str, max_len: usize) -> Option<Vec<u8>> {
        if token.len() > max_len {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        let (&version, rest) = raw.split_first()?;
        if version != TOKEN_VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let aad = [TOKEN_VERSION, purpose as u8];
        self.keys.iter().find_map(|k| {
            k.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                .ok()
        })
    }
}

/// A small, bounds-checked binary codec for token plaintexts.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// Length-prefixed (u16) byte string; longer input is an error upstream.
    pub fn str(&mut self, v: &str) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf
            .extend_from_slice(v.as_bytes().get(..usize::from(len)).unwrap_or_default());
        self
    }
}

impl Writer {
    /// Length-prefixed (u32) byte string, for values that may exceed 64 KiB.
    pub fn long_str(&mut self, v: &str) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(
            v.as_bytes()
                .get(..usize::try_from(len).unwrap_or(0))
                .unwrap_or_default(),
        );
        self
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    pub fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub fn str(&mut self) -> Option<&'a str> {
        let len = u16::from_be_bytes(self.array::<2>()?);
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }
    pub fn long_str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(u32::from_be_bytes(self.array::<4>()?)).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ring(k: u8) -> Keyring {
        Keyring::new(&[k; 32], &[])
    }

    #[test]
    fn seal_open_round_trip() {
        let r = ring(1);
        let t = r.seal(Purpose::Session, &[7; 24], b"hello");
        assert_eq!(r.open(Purpose::Session, &t).unwrap(), b"hello");
        assert!(r.open(Purpose::Cursor, &t).is_none(), "purpose is bound");
        assert!(ring(2).open(Purpose::Session, &t).is_none(), "wrong key");
    }

    #[test]
    fn tamper_is_detected() {
        let r = ring(1);
        let t = r.seal(Purpose::Session, &[7; 24], b"hello world");
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut m = raw.clone();
                m[i] ^= 1 << bit;
                assert!(r
                    .open(Purpose::Session, &URL_SAFE_NO_PAD.encode(&m))
                    .is_none());
            }
        }
        for cut in 0..t.len() {
            assert!(r.open(Purpose::Session, &t[..cut]).is_none());
        }
        assert!(r.open(Purpose::Session, "not base64 !").is_none());
    }

    #[test]
    fn rotation_accepts_previous_key() {
        let old = ring(1);
        let t = old.seal(Purpose::Session, &[3; 24], b"x");
        let rotated = Keyring::new(&[2; 32], &[[1; 32]]);
        assert_eq!(rotated.open(Purpose::Session, &t).unwrap(), b"x");
        let t2 = rotated.seal(Purpose::Session, &[3; 24], b"y");
        assert!(old.open(Purpose::Session, &t2).is_none());
    }

    #[test]
    fn key_decoding() {
        use base64::engine::general_purpose::STANDARD;
        let k = STANDARD.encode([9u8; 32]);
        assert_eq!(decode_key(&k).unwrap(), [9; 32]);
        assert_eq!(
            decode_key(&URL_SAFE_NO_PAD.encode([9u8; 32])).unwrap(),
            [9; 32]
        );
        assert_eq!(decode_key("AAAA"), Err(KeyError::WrongLength(3)));
        assert_eq!(decode_key("***"), Err(KeyError::NotBase64));
    }

    #[test]
    fn reader_is_bounds_checked() {
        let mut w = Writer::default();
        w.u8(1).u64(2).str("abc");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u64(), Some(2));
        assert_eq!(r.str(), Some("abc"));
        assert!(r.is_empty());
        assert_eq!(Reader::new(&[0, 9, b'a']).str(), None);
        assert_eq!(Reader::new(&[1, 2]).u64(), None);
    }
}
