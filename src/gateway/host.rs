//! The host port: everything the core needs from whatever runs it, in the
//! gateway's own terms, and nothing of any particular proxy's API.
//!
//! Three traits, one per phase:
//! - [`Configure`]: while a plugin configuration is being set up (once per
//!   configuration), where the gateway declares its metrics and gets typed
//!   handles back ([`MetricId`]);
//! - [`Host`]: the services a request may use: time, randomness, logs, side
//!   calls to clusters ([`CallId`]s are `u64`; buffered, and on hosts that
//!   can, streaming), process-wide shared data, typed metadata and attribute
//!   reads, access-log fields and metrics;
//! - [`HttpStream`]: the request and response themselves (headers, body,
//!   header changes, local replies whole or streamed, resuming a held
//!   request).
//!
//! An adapter implements them over its host's calls and forwards its host's
//! events to the hooks of [`Exchange`](super::Exchange) (`hooks.rs`), each of
//! which returns a [`Flow`]; everything else (which hook reads a body, size
//! limits, when to hold or buffer, resuming after a side call) is decided
//! here. The proxy-wasm adapter (`crates/proxy-wasm`) is one such adapter; the
//! unit tests drive the core through a fake (`testing.rs`).
//!
//! Driving the core, for any adapter:
//! 1. per plugin configuration: [`compile`](super::compile) the JSON, then
//!    [`Gateway::new`](super::Gateway::new) with the host's [`Configure`];
//! 2. per request: [`Exchange::new`](super::Exchange::new), then one hook per
//!    host event: `request_headers`, `request_body`, `call_done` (a side
//!    call's answer, or status 0 for its failure), `response_headers`,
//!    `response_body`, `stream_done`; map each [`Flow`] to the host's status.
//!    A host that streams side calls ([`Host::can_stream`]) also forwards
//!    `stream_headers`, `stream_data` and `stream_end` of the streams the core
//!    opened, and `downstream_ready` when a client that stopped reading
//!    ([`HttpStream::downstream_blocked`]) reads again.
//!
//! Notes for a native adapter (an Envoy dynamic module): a hook may be
//! re-entered through a callback it makes, so keep per-stream state behind
//! interior mutability; catch panics at every `extern "C"` entry and fail
//! only that request; one configuration serves every worker, and a
//! [`Gateway`](super::Gateway)'s caches (opened sessions, the tool-label cap)
//! take short locks, so keep one `Gateway` per worker (as the wasm build has
//! one per VM) to keep the request path free of shared locks. Such a host can
//! do what proxy-wasm cannot: streaming side calls sharing the [`CallId`]
//! space ([`Host::open_stream`]) and streamed local replies
//! ([`HttpStream::send_headers`], [`HttpStream::send_data`]), which merge
//! several backends' event streams (`fanin.rs`). Their defaults say "cannot",
//! which is what a proxy-wasm host answers.
//!
//! Below the hooks, the logic's own steps return decisions
//! ([`HeadersAction`], [`BodyAction`], ...) that the hooks apply through
//! [`HttpStream`]; the fuzz harness and benchmarks call those steps directly.

/// Log levels, mapped by adapters to the proxy's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// The id of a side call ([`Host::dispatch`]), unique among the calls of one
/// request; its answer comes back with it. Wide enough for every host
/// (proxy-wasm tokens are `u32`, Envoy dynamic-module callout ids `u64`).
pub type CallId = u64;

/// A request's id among the requests of one gateway on one worker, for
/// [`Host::wake`].
pub type StreamId = u64;

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
/// (connection failure, reset or timeout; with a body: the gateway's reason
/// for never sending it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CallResponse {
    /// An answer from its headers (with `:status`) and body.
    pub fn from_parts(headers: Vec<(String, String)>, body: Vec<u8>) -> CallResponse {
        let status = header(&headers, ":status")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        CallResponse {
            status,
            headers,
            body,
        }
    }

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

/// Everything a request may ask of its host, besides the stream itself.
pub trait Host {
    /// Wall-clock time, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Cryptographically secure random bytes.
    fn random(&self, buf: &mut [u8]) -> Result<(), HostError>;
    fn log(&self, level: Level, message: &str);
    /// Start an asynchronous call to a cluster; its answer comes back through
    /// [`Exchange::call_done`](super::Exchange::call_done) with the returned id.
    fn dispatch(&mut self, call: &Outbound) -> Result<CallId, HostError>;
    /// Process-wide shared key/value store (all workers of one proxy):
    /// value and a compare-and-swap version (0 when absent).
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, u32);
    /// Set if the version still matches; `Ok(false)` on a CAS mismatch.
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError>;
    /// A value another filter left in this stream's dynamic metadata, under
    /// `namespace` (a filter's name) and then `path` (struct keys), typed.
    /// `None` when absent or when the host cannot type it;
    /// [`MetaValue::Opaque`] when it is there but the host cannot read it (an
    /// Envoy dynamic module reads only a namespace's top-level keys, and
    /// not their structs).
    fn metadata(&self, namespace: &str, path: &[&str]) -> Option<MetaValue>;
    /// A stream attribute.
    fn attribute(&self, attribute: Attribute) -> Option<String>;
    /// Publish an access-log field for this stream (the adapter decides how:
    /// the proxy-wasm build as filter state `wasm.mcpgw.<name>`).
    fn set_log_field(&self, field: LogField, value: &str);
    /// Add `value` to a counter or record it in a histogram declared with
    /// [`Configure::define_metric`].
    fn record(&self, metric: MetricId, value: u64);
    /// The same for a series of a family whose label values are only known
    /// per request (tool names): `labels` in the family's label order.
    fn record_labelled(&self, family: &Family, labels: &[&str], value: u64);

    /// Whether this host streams side calls ([`Host::open_stream`]) and local
    /// replies ([`HttpStream::send_headers`]).
    fn can_stream(&self) -> bool {
        false
    }
    /// Start a streaming side call; its answer comes back piece by piece
    /// through the `stream_*` hooks of [`Exchange`](super::Exchange) with the
    /// returned id (the same id space as [`Host::dispatch`]). No timeout: it
    /// lasts until it ends or is closed.
    fn open_stream(&mut self, call: &Outbound) -> Result<CallId, HostError> {
        let _ = call;
        Err(HostError)
    }
    /// Cancel a streaming side call; no hook reports it afterwards (one that
    /// does is ignored).
    fn close_stream(&mut self, id: CallId) {
        let _ = id;
    }

    /// This request's id for [`Host::wake`], when the host can wake requests
    /// (`None`: it cannot, and the core never waits for another request).
    fn stream_id(&self) -> Option<StreamId> {
        None
    }
    /// Run the `woken` hook of request `id` (of this gateway, on this
    /// worker; possibly this one): soon after the current hook returns with
    /// `at_ms: None`, else at `at_ms` at the latest. A request that has
    /// ended is skipped. Used by a request waiting for another one's token
    /// exchange (`token_exchange`).
    fn wake(&mut self, id: StreamId, at_ms: Option<u64>) {
        let _ = (id, at_ms);
    }
}

/// What the host offers while a plugin configuration is being set up.
pub trait Configure {
    /// Declare one series of `family` with these label values (in the
    /// family's label order); `None` if the host refused it (the series is
    /// then not reported).
    fn define_metric(&mut self, family: &Family, labels: &[&str]) -> Option<MetricId>;
}

/// The request and response of the stream a hook runs for.
pub trait HttpStream {
    /// The request or response headers (pseudo-headers included). Values that
    /// are not UTF-8 are read with U+FFFD in place of the bad bytes.
    fn headers(&mut self, dir: Dir) -> Vec<(String, String)>;
    /// One header's value (the first of a repeated one; the name in lower
    /// case). Hosts with a cheaper single read than [`HttpStream::headers`]
    /// override it: it decides whether a request is the gateway's at all.
    fn header(&mut self, dir: Dir, name: &str) -> Option<String> {
        self.headers(dir)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    /// The body the hook sees: `size` bytes as the hook reported them (all
    /// that is held so far when earlier hooks stopped).
    fn body(&mut self, dir: Dir, size: usize) -> Vec<u8>;
    fn apply(&mut self, dir: Dir, ops: &[HeaderOp]);
    /// Replace the `size` bytes [`HttpStream::body`] returned with `body`.
    fn replace_body(&mut self, dir: Dir, size: usize, body: &[u8]);
    /// Answer the client with this response instead of the upstream's.
    fn send(&mut self, response: LocalResponse);
    /// Let a request held by an earlier [`Flow::Stop`] go on upstream.
    fn resume_request(&mut self);

    /// Start answering the client with a streamed reply of the gateway's own
    /// (`:status` is added by the host); data follows with
    /// [`HttpStream::send_data`]. Only on hosts that [`Host::can_stream`].
    fn send_headers(&mut self, status: u16, headers: &[(String, String)], end_of_stream: bool) {
        let _ = (status, headers, end_of_stream);
    }
    /// More of a streamed reply started with [`HttpStream::send_headers`].
    fn send_data(&mut self, data: &[u8], end_of_stream: bool) {
        let _ = (data, end_of_stream);
    }
    /// Whether the client is not keeping up with a streamed reply (the
    /// proxy's buffer for it is over its high watermark); the host calls the
    /// `downstream_ready` hook when it is below its low watermark again.
    fn downstream_blocked(&self) -> bool {
        false
    }
}

/// Which half of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Request,
    Response,
}

/// What the adapter tells its host when a hook returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let the headers or data go on.
    Continue,
    /// Hold them: after headers, stop iterating (the body hooks still run);
    /// after body data, stop and buffer it. A local reply, a resume or a
    /// later hook ends the hold.
    Stop,
}

/// A typed metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Str(String),
    Num(f64),
    Bool(bool),
    List(Vec<MetaValue>),
    /// Present, but not readable by this host (a struct).
    Opaque,
}

/// Stream attributes the gateway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// Why the response ended as it did (Envoy's `response.code_details`,
    /// e.g. `upstream_reset_after_response_started{remote_reset}`).
    ResponseCodeDetails,
}

/// The access-log fields the gateway publishes per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    /// The JSON-RPC method (or `http.get` / `http.delete` / `jsonrpc.response`).
    Method,
    /// The client-visible tool name of a `tools/call`.
    Tool,
    /// The backend a routed request went to.
    Backend,
    /// The request's JSON-RPC id, as sent.
    JsonRpcId,
    /// A keyed tag of the session (not its id).
    Session,
    /// The error kind, when the gateway failed the request.
    Error,
    /// Set (`1`) on requests with an audit record (see `audit`); the fields
    /// below make the record.
    Audit,
    AuditKind,
    AuditBackend,
    AuditResource,
    AuditDecision,
    AuditRule,
    AuditOutcome,
    AuditArguments,
    CallerIssuer,
    CallerSubject,
    CallerClientId,
}

impl LogField {
    pub const ALL: [LogField; 17] = [
        LogField::Method,
        LogField::Tool,
        LogField::Backend,
        LogField::JsonRpcId,
        LogField::Session,
        LogField::Error,
        LogField::Audit,
        LogField::AuditKind,
        LogField::AuditBackend,
        LogField::AuditResource,
        LogField::AuditDecision,
        LogField::AuditRule,
        LogField::AuditOutcome,
        LogField::AuditArguments,
        LogField::CallerIssuer,
        LogField::CallerSubject,
        LogField::CallerClientId,
    ];

    /// The field's name (adapters derive their host's key from it).
    pub fn name(self) -> &'static str {
        match self {
            LogField::Method => "method",
            LogField::Tool => "tool",
            LogField::Backend => "backend",
            LogField::JsonRpcId => "jsonrpc_id",
            LogField::Session => "session",
            LogField::Error => "error",
            LogField::Audit => "audit",
            LogField::AuditKind => "audit_kind",
            LogField::AuditBackend => "audit_backend",
            LogField::AuditResource => "audit_resource",
            LogField::AuditDecision => "audit_decision",
            LogField::AuditRule => "audit_rule",
            LogField::AuditOutcome => "audit_outcome",
            LogField::AuditArguments => "audit_arguments",
            LogField::CallerIssuer => "caller_issuer",
            LogField::CallerSubject => "caller_subject",
            LogField::CallerClientId => "caller_client_id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// A metric family: a name, a kind and the names of its labels.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
}

/// A host's handle for one declared series ([`Configure::define_metric`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricId(pub u32);

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

/// How the client's answer to a merged stream starts.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamStart {
    /// A streamed 200 with these headers; data follows.
    Stream(Vec<(String, String)>),
    /// A whole reply instead: nothing could be streamed.
    Reply(LocalResponse),
}

/// Decision after an event of a streaming side call.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamOutput {
    /// Start the client's answer.
    pub start: Option<StreamStart>,
    /// Send this to the client (a streamed reply already started).
    pub data: Vec<u8>,
    /// The client's answer ends after `data`.
    pub end: bool,
    /// Streaming side calls to close.
    pub close: Vec<CallId>,
}

impl StreamOutput {
    /// Nothing for the client; close side call `id`.
    pub fn close(id: CallId) -> StreamOutput {
        StreamOutput {
            close: vec![id],
            ..StreamOutput::default()
        }
    }
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
