//! The narrow interface between the gateway logic and whatever runs it.
//!
//! The logic never calls the proxy directly: it receives request data, asks
//! the host for time, randomness, side calls and shared state through
//! [`Host`], and returns decisions ([`HeadersAction`], [`BodyAction`], ...)
//! that the adapter applies. The proxy-wasm adapter implements it over
//! hostcalls; tests implement it with a fake.

/// Log levels, mapped by adapters to the proxy's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// An HTTP request the gateway sends on its own (fan-out), to an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub cluster: String,
    /// Including the pseudo-headers `:method`, `:path`, `:authority`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// The answer to an [`Outbound`] call; `status` 0 means no HTTP answer at all
/// (connection failure, reset or timeout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CallResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Case-insensitive header lookup in a pair list.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The entries of a proxy-wasm "pairs" buffer (how proxies hand over header
/// maps and lists): a little-endian count, then a (key size, value size) per
/// entry, then each key and value followed by a NUL. `None` unless the bytes
/// are exactly such a buffer; the sizes are checked, never trusted.
pub fn decode_pairs(b: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let word = |i: usize| -> Option<usize> {
        let w: [u8; 4] = b.get(i..i.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(w)).ok()
    };
    let count = word(0)?;
    // Each entry takes at least 10 bytes: no allocation beyond the input's size.
    if count > b.len() / 10 {
        return None;
    }
    let mut pos = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let k = word(4 + i * 8)?;
        let v = word(8 + i * 8)?;
        let key = b.get(pos..pos.checked_add(k)?)?;
        pos += k;
        if b.get(pos) != Some(&0) {
            return None;
        }
        pos += 1;
        let value = b.get(pos..pos.checked_add(v)?)?;
        pos += v;
        if b.get(pos) != Some(&0) {
            return None;
        }
        pos += 1;
        out.push((key, value));
    }
    (pos == b.len()).then_some(out)
}

/// A header map from a pairs buffer, as text. Bytes that are not UTF-8
/// (obs-text, legal in HTTP/1.1 values) become U+FFFD: such a value can never
/// match a session id, token or media type, and it is never written back.
pub fn decode_header_pairs(b: &[u8]) -> Vec<(String, String)> {
    decode_pairs(b)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

/// Everything the logic needs from the proxy.
pub trait Host {
    /// Wall-clock time, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Cryptographically secure random bytes.
    fn random(&self, buf: &mut [u8]) -> Result<(), HostError>;
    fn log(&self, level: Level, message: &str);
    /// Start an asynchronous call; the answer comes back through
    /// `Exchange::on_call_response` with the returned token.
    fn dispatch(&mut self, call: &Outbound) -> Result<u32, HostError>;
    /// Process-wide shared key/value store (all workers of one proxy):
    /// value and a compare-and-swap version (0 when absent).
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, u32);
    /// Set if the version still matches; `Ok(false)` on a CAS mismatch.
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError>;
    /// A stream property by path (e.g. dynamic metadata another filter set).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Publish a value for this stream (Envoy: filter state `wasm.<name>`,
    /// readable by access logs).
    fn set_property(&self, name: &str, value: &str);
    /// Add to a counter or record a histogram sample.
    fn metric(&self, kind: MetricKind, name: &str, value: u64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// A change to the request or response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Set(String, String),
    Remove(String),
}

/// A response the gateway produces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn json(status: u16, body: String) -> LocalResponse {
        LocalResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into_bytes(),
        }
    }

    pub fn empty(status: u16) -> LocalResponse {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> LocalResponse {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Decision after the request headers.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadersAction {
    /// Not ours, or routed without looking at a body: apply and continue.
    Continue(Vec<HeaderOp>),
    /// Hold the request until the whole body is here.
    NeedBody,
    /// Side calls were dispatched; wait for them.
    Wait,
    Respond(LocalResponse),
}

/// Decision once the whole request body is known.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyAction {
    /// Send upstream with these header changes and (if `Some`) a new body.
    Forward {
        headers: Vec<HeaderOp>,
        body: Option<Vec<u8>>,
    },
    /// Side calls were dispatched; wait for them.
    Wait,
    Respond(LocalResponse),
}

/// Decision on an upstream response's headers.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseHeadersAction {
    Continue(Vec<HeaderOp>),
    /// Hold the body: it is rewritten as a whole at the end.
    Buffer(Vec<HeaderOp>),
    /// Replace the upstream response entirely.
    Replace(LocalResponse),
}

/// Decision on a chunk of an upstream response body.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseBodyAction {
    /// Pass the chunk unchanged.
    Continue,
    /// Replace the chunk with these bytes (possibly none, while an event is incomplete).
    Replace(Vec<u8>),
    /// Keep buffering until the end of the stream.
    Buffer,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = u32::try_from(pairs.len()).unwrap().to_le_bytes().to_vec();
        for (k, v) in pairs {
            b.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
            b.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
        }
        for (k, v) in pairs {
            b.extend(*k);
            b.push(0);
            b.extend(*v);
            b.push(0);
        }
        b
    }

    #[test]
    fn pairs_round_trip_and_reject_bad_sizes() {
        let pairs: &[(&[u8], &[u8])] =
            &[(b":status", b"200"), (b"x-note", b"caf\xe9"), (b"e", b"")];
        let b = encode(pairs);
        assert_eq!(decode_pairs(&b).unwrap(), pairs.to_vec());
        assert_eq!(
            decode_pairs(&encode(&[])).unwrap(),
            Vec::<(&[u8], &[u8])>::new()
        );
        for cut in 0..b.len() {
            assert_eq!(decode_pairs(&b[..cut]), None, "cut at {cut}");
        }
        let mut huge = b.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pairs(&huge), None);
        let mut long = b.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pairs(&long), None);
        let mut extra = b;
        extra.push(0);
        assert_eq!(decode_pairs(&extra), None);
    }

    #[test]
    fn header_values_that_are_not_utf8_become_replacement_characters() {
        let b = encode(&[(b"x-note", b"caf\xe9"), (b"mcp-session-id", b"abc")]);
        let h = decode_header_pairs(&b);
        assert_eq!(header(&h, "x-note"), Some("caf\u{fffd}"));
        assert_eq!(header(&h, "mcp-session-id"), Some("abc"));
        assert!(decode_header_pairs(b"junk").is_empty());
    }
}
