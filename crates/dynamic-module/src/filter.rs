//! The filter: a configuration (one per Envoy filter config, shared by every
//! worker, holding one [`Gateway`] per worker) and a stream per request that
//! forwards each Envoy hook to the matching hook of [`Exchange`]; [`EnvoyHost`]
//! is the host port over the ABI's callbacks.
//!
//! Re-entrance: a callback the core makes may call straight back into a hook
//! of the same stream (a local reply runs the response hooks; a side call
//! that fails at once reports its answer before `dispatch` returns). So the
//! host defers what can re-enter (local replies, streamed replies, resuming
//! the request, resetting side streams) until the core has returned, and a
//! hook that arrives while the core is busy with the stream is queued and
//! delivered right after ([`Stream::enter`]).

use crate::abi::{
    self, body_type, header_type, log_level, Api, ConfigEnvoy, EnvoyBuffer, EnvoyHeader,
    FilterEnvoy, ModuleBuffer, ModuleHeader,
};
use crate::names;
use crate::shared::Store;
use mcpgw_core::gateway::host::{
    Attribute, CallId, CallResponse, Configure, Dir, Family, Flow, HeaderOp, Host, HostError,
    HttpStream, Level, LocalResponse, LogField, MetaValue, MetricId, MetricKind, Outbound,
    StreamId,
};
use mcpgw_core::gateway::stats::{families, sanitize, series_name};
use mcpgw_core::gateway::{compile, Exchange, Gateway, GatewayError};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Revocations and anything else the workers share.
static SHARED: OnceLock<Store> = OnceLock::new();

fn shared() -> &'static Store {
    SHARED.get_or_init(Store::new)
}

pub fn log(api: &Api, level: u32, message: &str) {
    // SAFETY: the buffer points at `message`, alive for the call.
    unsafe { (api.log)(level, ModuleBuffer::new(message.as_bytes())) }
}

// ----- configuration -------------------------------------------------------

/// One declared series: Envoy's id and its kind.
#[derive(Debug, Clone, Copy)]
struct Series {
    id: usize,
    kind: MetricKind,
}

/// A family declared with Envoy-side labels, for series known only per
/// request (tool names).
#[derive(Debug)]
struct Labelled {
    name: &'static str,
    id: usize,
    kind: MetricKind,
}

/// What every stream of one filter configuration shares.
pub struct Config {
    api: &'static Api,
    /// One gateway per worker, by Envoy's worker index.
    workers: Vec<Arc<Gateway>>,
    /// By [`MetricId`].
    series: Vec<Series>,
    labelled: Vec<Labelled>,
}

/// Declares metrics while Envoy creates the configuration (the only time it
/// allows it). Series with fixed labels are flat names, as in the proxy-wasm
/// build (the `stats_tags` of the shipped configs turn them into labels);
/// families recorded by label values are declared with Envoy-side labels.
struct Declare {
    api: &'static Api,
    envoy: ConfigEnvoy,
    series: Vec<Series>,
}

impl Declare {
    fn define(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Option<usize> {
        let mut names: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::new(l.as_bytes()))
            .collect();
        let mut id = 0usize;
        let f = match kind {
            MetricKind::Counter => self.api.http_filter_config_define_counter,
            MetricKind::Histogram => self.api.http_filter_config_define_histogram,
        };
        let labels_ptr = if names.is_empty() {
            std::ptr::null_mut()
        } else {
            names.as_mut_ptr()
        };
        // SAFETY: `envoy` is the config pointer of the hook that created this
        // `Declare`; the buffers outlive the call.
        let r = unsafe {
            f(
                self.envoy,
                ModuleBuffer::new(name.as_bytes()),
                labels_ptr,
                names.len(),
                &mut id,
            )
        };
        (r == abi::METRICS_SUCCESS).then_some(id)
    }
}

impl Configure for Declare {
    fn define_metric(&mut self, family: &Family, labels: &[&str]) -> Option<MetricId> {
        let id = self.define(family.kind, &series_name(family, labels), &[])?;
        self.series.push(Series {
            id,
            kind: family.kind,
        });
        u32::try_from(self.series.len() - 1).ok().map(MetricId)
    }
}

impl Config {
    /// Compile the filter configuration (the plugin JSON) and set up one
    /// gateway per worker. `Err` is logged by the caller and rejects the
    /// configuration.
    pub fn new(api: &'static Api, envoy: ConfigEnvoy, raw: &[u8]) -> Result<Config, String> {
        let cfg = compile(raw, &|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
        let mut declare = Declare {
            api,
            envoy,
            series: Vec::new(),
        };
        let labelled = families::ALL
            .iter()
            .filter(|f| !f.labels.is_empty())
            .filter_map(|f| {
                let id = declare.define(f.kind, f.name, f.labels)?;
                Some(Labelled {
                    name: f.name,
                    id,
                    kind: f.kind,
                })
            })
            .collect();
        let first = Arc::new(Gateway::new(cfg, &mut declare));
        log(api, log_level::INFO, &first.summary());
        // SAFETY: called on the main thread while the configuration is made.
        let n = usize::try_from(unsafe { (api.get_concurrency)() })
            .unwrap_or(1)
            .max(1);
        let mut workers = vec![Arc::clone(&first)];
        workers.extend((1..n).map(|_| Arc::new(first.for_worker())));
        Ok(Config {
            api,
            workers,
            series: declare.series,
            labelled,
        })
    }

    fn gateway(&self, worker: u32) -> Option<Arc<Gateway>> {
        let n = self.workers.len().max(1);
        let i = usize::try_from(worker).unwrap_or(0) % n;
        self.workers.get(i).cloned()
    }
}

// ----- streams ---------------------------------------------------------------

/// Host calls that may re-enter the stream's hooks, performed once the core
/// has returned.
enum Effect {
    Send(LocalResponse),
    Resume,
    SendHeaders(u16, Vec<(String, String)>, bool),
    SendData(Vec<u8>, bool),
    CloseStream(CallId),
}

/// Streams that can be woken ([`Host::wake`]): id -> their scheduler.
static WAKERS: OnceLock<Mutex<HashMap<StreamId, usize>>> = OnceLock::new();
static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

fn wakers() -> &'static Mutex<HashMap<StreamId, usize>> {
    WAKERS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Host events for the core; queued when they arrive while the core is busy
/// with the stream (a side call failing before `dispatch` returned, say).
pub enum Event {
    CallDone(CallId, CallResponse),
    StreamHeaders(CallId, Vec<(String, String)>),
    StreamData(CallId, Vec<u8>, bool),
    StreamEnd(CallId, bool),
    /// The client reads again.
    Ready,
    /// Another request woke this one ([`Host::wake`]).
    Woken,
}

impl Event {
    fn deliver(self, ex: &mut Exchange, host: &mut EnvoyHost<'_>) {
        match self {
            Event::CallDone(id, r) => ex.call_done(host, id, r),
            Event::StreamHeaders(id, h) => ex.stream_headers(host, id, &h),
            Event::StreamData(id, d, end) => ex.stream_data(host, id, &d, end),
            Event::StreamEnd(id, reset) => ex.stream_end(host, id, reset),
            Event::Ready => ex.downstream_ready(host),
            Event::Woken => ex.woken(host),
        }
    }
}

/// One request.
pub struct Stream {
    envoy: FilterEnvoy,
    config: Arc<Config>,
    exchange: RefCell<Exchange>,
    deferred: RefCell<Vec<Effect>>,
    pending: RefCell<VecDeque<Event>>,
    /// The body hook running now, if any: its chunk is readable as the
    /// "received" body until it returns.
    body_hook: Cell<Option<Dir>>,
    flushing: Cell<bool>,
    /// A hook panicked: the request was failed, the rest is left to Envoy.
    failed: Cell<bool>,
    /// Times Envoy's buffer for the client went over its high watermark,
    /// less the times it came back under the low one.
    above_watermark: Cell<u32>,
    /// This stream's id for wakes, and its scheduler once one was needed.
    id: StreamId,
    scheduler: Cell<*mut std::ffi::c_void>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let sched = self.scheduler.get();
        if !sched.is_null() {
            if let Ok(mut w) = wakers().lock() {
                w.remove(&self.id);
            }
            // SAFETY: made by scheduler_new for this stream, deleted once.
            unsafe { (self.api().http_filter_scheduler_delete)(sched) };
        }
    }
}

impl Stream {
    pub fn new(config: Arc<Config>, envoy: FilterEnvoy) -> Option<Stream> {
        // SAFETY: `envoy` is the filter pointer of the creating hook.
        let worker = unsafe { (config.api.http_filter_get_worker_index)(envoy) };
        let gw = config.gateway(worker)?;
        Some(Stream {
            envoy,
            exchange: RefCell::new(Exchange::new(gw)),
            config,
            deferred: RefCell::new(Vec::new()),
            pending: RefCell::new(VecDeque::new()),
            body_hook: Cell::new(None),
            flushing: Cell::new(false),
            failed: Cell::new(false),
            above_watermark: Cell::new(0),
            id: NEXT_STREAM.fetch_add(1, Ordering::Relaxed),
            scheduler: Cell::new(std::ptr::null_mut()),
        })
    }

    fn api(&self) -> &'static Api {
        self.config.api
    }

    /// Run `f` on the exchange, then perform what it deferred and deliver
    /// what arrived meanwhile. `busy` answers a hook that re-entered while
    /// the exchange was in use (it must not need the exchange).
    fn enter<R>(
        &self,
        busy: impl FnOnce() -> R,
        f: impl FnOnce(&mut Exchange, &mut EnvoyHost<'_>) -> R,
    ) -> R {
        if self.failed.get() {
            return busy();
        }
        let r = match self.exchange.try_borrow_mut() {
            Ok(mut ex) => f(&mut ex, &mut EnvoyHost { s: self }),
            Err(_) => return busy(),
        };
        self.flush();
        r
    }

    fn flush(&self) {
        if self.flushing.replace(true) {
            return;
        }
        loop {
            let effects = std::mem::take(&mut *self.deferred.borrow_mut());
            if !effects.is_empty() {
                for e in effects {
                    self.perform(e);
                }
                continue;
            }
            let next = self.pending.borrow_mut().pop_front();
            let Some(event) = next else { break };
            let Ok(mut ex) = self.exchange.try_borrow_mut() else {
                break;
            };
            event.deliver(&mut ex, &mut EnvoyHost { s: self });
        }
        self.flushing.set(false);
    }

    fn perform(&self, e: Effect) {
        let api = self.api();
        match e {
            Effect::Send(r) => {
                let mut headers: Vec<ModuleHeader> = r
                    .headers
                    .iter()
                    .map(|(k, v)| ModuleHeader::new(k, v))
                    .collect();
                // SAFETY: the headers and body outlive the call.
                unsafe {
                    (api.http_send_response)(
                        self.envoy,
                        u32::from(r.status),
                        headers.as_mut_ptr(),
                        headers.len(),
                        ModuleBuffer::new(&r.body),
                        ModuleBuffer::new(b"mcpgw"),
                    )
                }
            }
            // SAFETY: the stream is alive (we are in one of its hooks).
            Effect::Resume => unsafe { (api.http_filter_continue_decoding)(self.envoy) },
            Effect::SendHeaders(status, h, end) => {
                let status = status.to_string();
                let mut headers: Vec<ModuleHeader> =
                    std::iter::once(ModuleHeader::new(":status", &status))
                        .chain(h.iter().map(|(k, v)| ModuleHeader::new(k, v)))
                        .collect();
                // SAFETY: the stream is alive; the headers outlive the call.
                unsafe {
                    (api.http_send_response_headers)(
                        self.envoy,
                        headers.as_mut_ptr(),
                        headers.len(),
                        end,
                    )
                }
            }
            // SAFETY: the stream is alive; the data outlives the call.
            Effect::SendData(d, end) => unsafe {
                (api.http_send_response_data)(self.envoy, ModuleBuffer::new(&d), end)
            },
            // SAFETY: the stream is alive; Envoy ignores an id it no longer knows.
            Effect::CloseStream(id) => unsafe {
                (api.http_filter_reset_http_stream)(self.envoy, id)
            },
        }
    }

    /// A hook panicked: answer 500 if the answer has not started, and leave
    /// the stream alone from now on.
    fn fail(&self) {
        self.failed.set(true);
        self.flushing.set(false);
        let api = self.api();
        log(
            api,
            log_level::CRITICAL,
            "mcpgw: a filter hook panicked; failing this request",
        );
        let r = GatewayError::internal("the gateway failed on this request").response(None);
        self.perform(Effect::Send(r));
    }

    // ----- hooks ---------------------------------------------------------

    pub fn request_headers(&self, end_of_stream: bool) -> u32 {
        let flow = self.enter(
            || Flow::Continue,
            |ex, host| ex.request_headers(host, end_of_stream),
        );
        headers_status(flow)
    }

    pub fn request_body(&self, end_of_stream: bool) -> u32 {
        self.body_hook.set(Some(Dir::Request));
        let flow = self.enter(
            || Flow::Continue,
            |ex, host| {
                let size = host.body_size(Dir::Request);
                ex.request_body(host, size, end_of_stream)
            },
        );
        self.body_hook.set(None);
        body_status(flow)
    }

    pub fn response_headers(&self, end_of_stream: bool) -> u32 {
        let flow = self.enter(
            || Flow::Continue,
            |ex, host| ex.response_headers(host, end_of_stream),
        );
        headers_status(flow)
    }

    pub fn response_body(&self, end_of_stream: bool) -> u32 {
        self.body_hook.set(Some(Dir::Response));
        let flow = self.enter(
            || Flow::Continue,
            |ex, host| {
                let size = host.body_size(Dir::Response);
                ex.response_body(host, size, end_of_stream)
            },
        );
        self.body_hook.set(None);
        body_status(flow)
    }

    pub fn stream_complete(&self) {
        self.enter(|| (), |ex, host| ex.stream_done(host));
    }

    /// A side call's answer, a piece of a streaming side call, or the client
    /// reading again.
    pub fn event(&self, event: Event) {
        if self.failed.get() {
            return;
        }
        if self.exchange.try_borrow_mut().is_err() {
            // Reported before the call that caused it returned: delivered
            // once the core is done.
            self.pending.borrow_mut().push_back(event);
            return;
        }
        self.enter(|| (), |ex, host| event.deliver(ex, host));
    }

    /// Envoy's buffer for the client went over its high watermark.
    pub fn above_watermark(&self) {
        self.above_watermark
            .set(self.above_watermark.get().saturating_add(1));
    }

    /// It came back under its low watermark.
    pub fn below_watermark(&self) {
        let n = self.above_watermark.get().saturating_sub(1);
        self.above_watermark.set(n);
        if n == 0 {
            self.event(Event::Ready);
        }
    }

    /// Run a hook body, failing only this request if it panics.
    pub fn guard<R>(&self, fallback: R, f: impl FnOnce() -> R) -> R {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(_) => {
                self.fail();
                fallback
            }
        }
    }
}

fn headers_status(flow: Flow) -> u32 {
    match flow {
        Flow::Continue => abi::headers_status::CONTINUE,
        Flow::Stop => abi::headers_status::STOP_ITERATION,
    }
}

fn body_status(flow: Flow) -> u32 {
    match flow {
        Flow::Continue => abi::body_status::CONTINUE,
        Flow::Stop => abi::body_status::STOP_ITERATION_AND_BUFFER,
    }
}

/// Headers Envoy handed to a hook, as text (bytes that are not UTF-8 become
/// U+FFFD: such a value never matches an id or a media type, and is never
/// written back).
///
/// # Safety
/// `headers` must be null or point at `n` valid headers.
pub unsafe fn envoy_headers(headers: *const EnvoyHeader, n: usize) -> Vec<(String, String)> {
    if headers.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `n` headers at `headers`.
    let hs = unsafe { std::slice::from_raw_parts(headers, n) };
    hs.iter()
        .map(|h| {
            let k = EnvoyBuffer {
                ptr: h.key_ptr,
                length: h.key_length,
            };
            let v = EnvoyBuffer {
                ptr: h.value_ptr,
                length: h.value_length,
            };
            // SAFETY: Envoy's header buffers, valid during the hook.
            unsafe { (k.to_text(), v.to_text()) }
        })
        .collect()
}

/// Body chunks Envoy handed to a hook, concatenated.
///
/// # Safety
/// `chunks` must be null or point at `n` valid buffers.
pub unsafe fn envoy_chunks(chunks: *const EnvoyBuffer, n: usize) -> Vec<u8> {
    if chunks.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `n` buffers at `chunks`.
    let cs = unsafe { std::slice::from_raw_parts(chunks, n) };
    let mut out = Vec::with_capacity(cs.iter().map(|c| c.length).sum());
    for c in cs {
        // SAFETY: each buffer is Envoy's, valid during the hook.
        out.extend_from_slice(unsafe { c.as_bytes() });
    }
    out
}

// ----- the host port ---------------------------------------------------------

/// The host port over the ABI's callbacks, for one stream.
pub struct EnvoyHost<'a> {
    s: &'a Stream,
}

impl EnvoyHost<'_> {
    fn api(&self) -> &'static Api {
        self.s.config.api
    }

    fn envoy(&self) -> FilterEnvoy {
        self.s.envoy
    }

    /// The received (this hook's) and buffered body types of a direction.
    fn body_types(dir: Dir) -> (u32, u32) {
        match dir {
            Dir::Request => (body_type::RECEIVED_REQUEST, body_type::BUFFERED_REQUEST),
            Dir::Response => (body_type::RECEIVED_RESPONSE, body_type::BUFFERED_RESPONSE),
        }
    }

    /// Whether this hook's chunk is readable apart from what is buffered.
    fn received_apart(&self, dir: Dir) -> bool {
        if self.s.body_hook.get() != Some(dir) {
            return false;
        }
        let api = self.api();
        // SAFETY: the stream is alive during its hooks.
        let same = unsafe {
            match dir {
                Dir::Request => (api.http_received_buffered_request_body)(self.envoy()),
                Dir::Response => (api.http_received_buffered_response_body)(self.envoy()),
            }
        };
        !same
    }

    fn size_of(&self, ty: u32) -> usize {
        // SAFETY: the stream is alive during its hooks.
        unsafe { (self.api().http_get_body_size)(self.envoy(), ty) }
    }

    fn read(&self, ty: u32, out: &mut Vec<u8>) {
        let api = self.api();
        // SAFETY: the stream is alive; the vector has room for every chunk
        // Envoy reports, and the chunks are copied before the hook returns.
        unsafe {
            let n = (api.http_get_body_chunks_size)(self.envoy(), ty);
            if n == 0 {
                return;
            }
            let mut chunks = vec![EnvoyBuffer::NULL; n];
            if (api.http_get_body_chunks)(self.envoy(), ty, chunks.as_mut_ptr()) {
                for c in &chunks {
                    out.extend_from_slice(c.as_bytes());
                }
            }
        }
    }

    fn drain(&self, ty: u32) {
        let n = self.size_of(ty);
        if n > 0 {
            // SAFETY: the stream is alive during its hooks.
            unsafe { (self.api().http_drain_body)(self.envoy(), ty, n) };
        }
    }

    /// What the stream holds of a direction's body now.
    pub fn body_size(&self, dir: Dir) -> usize {
        let (received, buffered) = Self::body_types(dir);
        let mut n = self.size_of(buffered);
        if self.received_apart(dir) {
            n += self.size_of(received);
        }
        n
    }

    fn meta(&self, namespace: &str, key: &str) -> Option<MetaValue> {
        let api = self.api();
        let ns = ModuleBuffer::new(namespace.as_bytes());
        let k = ModuleBuffer::new(key.as_bytes());
        let src = abi::METADATA_DYNAMIC;
        let e = self.envoy();
        // SAFETY: the stream is alive; the out-parameters are valid, and
        // strings Envoy returns are copied before the hook returns.
        unsafe {
            let mut s = EnvoyBuffer::NULL;
            if (api.http_get_metadata_string)(e, src, ns, k, &mut s) {
                return Some(MetaValue::Str(s.to_text()));
            }
            let mut n = 0f64;
            if (api.http_get_metadata_number)(e, src, ns, k, &mut n) {
                return Some(MetaValue::Num(n));
            }
            let mut b = false;
            if (api.http_get_metadata_bool)(e, src, ns, k, &mut b) {
                return Some(MetaValue::Bool(b));
            }
            let mut len = 0usize;
            if (api.http_get_metadata_list_size)(e, src, ns, k, &mut len) {
                let mut items = Vec::with_capacity(len.min(4096));
                for i in 0..len.min(4096) {
                    let mut s = EnvoyBuffer::NULL;
                    let mut n = 0f64;
                    let mut b = false;
                    if (api.http_get_metadata_list_string)(e, src, ns, k, i, &mut s) {
                        items.push(MetaValue::Str(s.to_text()));
                    } else if (api.http_get_metadata_list_number)(e, src, ns, k, i, &mut n) {
                        items.push(MetaValue::Num(n));
                    } else if (api.http_get_metadata_list_bool)(e, src, ns, k, i, &mut b) {
                        items.push(MetaValue::Bool(b));
                    }
                }
                return Some(MetaValue::List(items));
            }
            // A struct (jwt_authn's verified payload): present, not readable.
            let n = (api.http_get_metadata_keys_count)(e, src, ns);
            if n > 0 {
                let mut keys = vec![EnvoyBuffer::NULL; n];
                if (api.http_get_metadata_keys)(e, src, ns, keys.as_mut_ptr())
                    && keys.iter().any(|k| k.as_bytes() == key.as_bytes())
                {
                    return Some(MetaValue::Opaque);
                }
            }
        }
        None
    }

    fn record_into(&self, id: usize, kind: MetricKind, labels: &[&str], value: u64) {
        let api = self.api();
        let mut values: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::new(l.as_bytes()))
            .collect();
        let ptr = if values.is_empty() {
            std::ptr::null_mut()
        } else {
            values.as_mut_ptr()
        };
        let f = match kind {
            MetricKind::Counter => api.http_filter_increment_counter,
            MetricKind::Histogram => api.http_filter_record_histogram_value,
        };
        // SAFETY: the stream is alive; the label buffers outlive the call.
        unsafe { f(self.envoy(), id, ptr, values.len(), value) };
    }
}

impl Host for EnvoyHost<'_> {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        getrandom::fill(buf).map_err(|_| HostError)
    }

    fn log(&self, level: Level, message: &str) {
        let l = match level {
            Level::Debug => log_level::DEBUG,
            Level::Info => log_level::INFO,
            Level::Warn => log_level::WARN,
            Level::Error => log_level::ERROR,
        };
        log(self.api(), l, message);
    }

    fn dispatch(&mut self, call: &Outbound) -> Result<CallId, HostError> {
        let mut headers: Vec<ModuleHeader> = call
            .headers
            .iter()
            .map(|(k, v)| ModuleHeader::new(k, v))
            .collect();
        let mut id = 0u64;
        // SAFETY: the stream is alive; everything passed outlives the call.
        let r = unsafe {
            (self.api().http_filter_http_callout)(
                self.envoy(),
                &mut id,
                ModuleBuffer::new(call.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::new(&call.body),
                call.timeout_ms,
            )
        };
        if r == abi::CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            self.log(
                Level::Warn,
                &format!(
                    "could not start a call to cluster {} (callout result {r})",
                    call.cluster
                ),
            );
            Err(HostError)
        }
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        shared().get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        match shared().set(key, value, cas) {
            Ok(()) => Ok(true),
            Err(crate::shared::SetError::CasMismatch) => Ok(false),
            Err(_) => Err(HostError),
        }
    }

    fn metadata(&self, namespace: &str, path: &[&str]) -> Option<MetaValue> {
        match path {
            [key] => self.meta(namespace, key),
            // The ABI reads only a namespace's top-level keys.
            _ => None,
        }
    }

    fn attribute(&self, attribute: Attribute) -> Option<String> {
        let id = match attribute {
            Attribute::ResponseCodeDetails => abi::ATTRIBUTE_RESPONSE_CODE_DETAILS,
        };
        let mut b = EnvoyBuffer::NULL;
        // SAFETY: the stream is alive; the result is copied at once.
        unsafe {
            if !(self.api().http_filter_get_attribute_string)(self.envoy(), id, &mut b) {
                return None;
            }
            Some(b.to_text())
        }
    }

    fn set_log_field(&self, field: LogField, value: &str) {
        // SAFETY: the stream is alive; the buffers outlive the call.
        unsafe {
            (self.api().http_set_filter_state_bytes)(
                self.envoy(),
                ModuleBuffer::new(names::filter_state_key(field).as_bytes()),
                ModuleBuffer::new(value.as_bytes()),
            )
        };
    }

    fn record(&self, metric: MetricId, value: u64) {
        let series = usize::try_from(metric.0)
            .ok()
            .and_then(|i| self.s.config.series.get(i).copied());
        if let Some(s) = series {
            self.record_into(s.id, s.kind, &[], value);
        }
    }

    fn record_labelled(&self, family: &Family, labels: &[&str], value: u64) {
        let Some(l) = self
            .s
            .config
            .labelled
            .iter()
            .find(|l| l.name == family.name)
        else {
            return;
        };
        let values: Vec<String> = labels.iter().map(|v| sanitize(v)).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        self.record_into(l.id, l.kind, &values, value);
    }

    fn can_stream(&self) -> bool {
        true
    }

    fn stream_id(&self) -> Option<StreamId> {
        if self.s.scheduler.get().is_null() {
            // SAFETY: the stream is alive (we are in one of its hooks).
            let sched = unsafe { (self.api().http_filter_scheduler_new)(self.envoy()) };
            if sched.is_null() {
                return None;
            }
            self.s.scheduler.set(sched);
            wakers().lock().ok()?.insert(self.s.id, sched as usize);
        }
        Some(self.s.id)
    }

    /// Soon: the stream's scheduler. A deadline is not kept (the ABI has no
    /// timers): the request led the exchange it waits for ends with an answer
    /// or a timeout, or hands over when its stream ends, and wakes it then.
    fn wake(&mut self, id: StreamId, at_ms: Option<u64>) {
        if at_ms.is_some() {
            return;
        }
        let sched = wakers().lock().ok().and_then(|w| w.get(&id).copied());
        if let Some(sched) = sched {
            // SAFETY: registered while its stream lives (removed before the
            // scheduler is deleted); commit is safe from any thread.
            unsafe { (self.api().http_filter_scheduler_commit)(sched as *mut std::ffi::c_void, 1) };
        }
    }

    fn open_stream(&mut self, call: &Outbound) -> Result<CallId, HostError> {
        let mut headers: Vec<ModuleHeader> = call
            .headers
            .iter()
            .map(|(k, v)| ModuleHeader::new(k, v))
            .collect();
        let mut id = 0u64;
        // SAFETY: the stream is alive; everything passed outlives the call.
        let r = unsafe {
            (self.api().http_filter_start_http_stream)(
                self.envoy(),
                &mut id,
                ModuleBuffer::new(call.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::new(&call.body),
                true,
                call.timeout_ms,
            )
        };
        if r == abi::CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            self.log(
                Level::Warn,
                &format!(
                    "could not open a stream to cluster {} (callout result {r})",
                    call.cluster
                ),
            );
            Err(HostError)
        }
    }

    fn close_stream(&mut self, id: CallId) {
        self.s.deferred.borrow_mut().push(Effect::CloseStream(id));
    }
}

impl HttpStream for EnvoyHost<'_> {
    fn headers(&mut self, dir: Dir) -> Vec<(String, String)> {
        let ty = match dir {
            Dir::Request => header_type::REQUEST,
            Dir::Response => header_type::RESPONSE,
        };
        let api = self.api();
        // SAFETY: the stream is alive; the array has room for every header,
        // and the headers are copied before the hook returns.
        unsafe {
            let n = (api.http_get_headers_size)(self.envoy(), ty);
            if n == 0 {
                return Vec::new();
            }
            let empty = EnvoyHeader {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut hs = vec![empty; n];
            if !(api.http_get_headers)(self.envoy(), ty, hs.as_mut_ptr()) {
                return Vec::new();
            }
            envoy_headers(hs.as_ptr(), n)
        }
    }

    fn header(&mut self, dir: Dir, name: &str) -> Option<String> {
        let ty = match dir {
            Dir::Request => header_type::REQUEST,
            Dir::Response => header_type::RESPONSE,
        };
        let mut v = EnvoyBuffer::NULL;
        let mut total = 0usize;
        // SAFETY: the stream is alive; the out-parameters are valid and the
        // value is copied before the hook returns.
        unsafe {
            let found = (self.api().http_get_header)(
                self.envoy(),
                ty,
                ModuleBuffer::new(name.as_bytes()),
                &mut v,
                0,
                &mut total,
            );
            (found && total > 0).then(|| v.to_text())
        }
    }

    fn body(&mut self, dir: Dir, _size: usize) -> Vec<u8> {
        let (received, buffered) = Self::body_types(dir);
        let mut out = Vec::new();
        self.read(buffered, &mut out);
        if self.received_apart(dir) {
            self.read(received, &mut out);
        }
        out
    }

    fn apply(&mut self, dir: Dir, ops: &[HeaderOp]) {
        if ops.is_empty() {
            return;
        }
        let ty = match dir {
            Dir::Request => header_type::REQUEST,
            Dir::Response => header_type::RESPONSE,
        };
        let api = self.api();
        for op in ops {
            let (k, v) = match op {
                HeaderOp::Set(k, v) => (k, ModuleBuffer::new(v.as_bytes())),
                HeaderOp::Remove(k) => (k, ModuleBuffer::NULL),
            };
            // SAFETY: the stream is alive; the buffers outlive the call.
            unsafe { (api.http_set_header)(self.envoy(), ty, ModuleBuffer::new(k.as_bytes()), v) };
        }
        if dir == Dir::Request {
            // The route may already have been chosen (by a filter before
            // this one); the routing header must count.
            // SAFETY: the stream is alive.
            unsafe { (api.http_clear_route_cache)(self.envoy()) };
        }
    }

    fn replace_body(&mut self, dir: Dir, _size: usize, body: &[u8]) {
        let (received, buffered) = Self::body_types(dir);
        let in_hook = self.s.body_hook.get() == Some(dir);
        if self.received_apart(dir) {
            self.drain(received);
        }
        self.drain(buffered);
        // In a body hook the new body goes on as this hook's data; after a
        // wait, it is the buffered body the request resumes with.
        let target = if in_hook { received } else { buffered };
        // SAFETY: the stream is alive; the body outlives the call.
        unsafe { (self.api().http_append_body)(self.envoy(), target, ModuleBuffer::new(body)) };
    }

    fn send(&mut self, response: LocalResponse) {
        self.s.deferred.borrow_mut().push(Effect::Send(response));
    }

    fn resume_request(&mut self) {
        self.s.deferred.borrow_mut().push(Effect::Resume);
    }

    fn send_headers(&mut self, status: u16, headers: &[(String, String)], end_of_stream: bool) {
        self.s.deferred.borrow_mut().push(Effect::SendHeaders(
            status,
            headers.to_vec(),
            end_of_stream,
        ));
    }

    fn send_data(&mut self, data: &[u8], end_of_stream: bool) {
        self.s
            .deferred
            .borrow_mut()
            .push(Effect::SendData(data.to_vec(), end_of_stream));
    }

    fn downstream_blocked(&self) -> bool {
        self.s.above_watermark.get() > 0
    }
}
