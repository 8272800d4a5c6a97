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
