//! The filter: a root context per plugin configuration that sets the gateway
//! up, an HTTP context per request that forwards each proxy-wasm callback to
//! the matching hook of [`Exchange`], and [`WasmHost`], the host port over
//! proxy-wasm hostcalls.
//!
//! Only the `Result`-returning hostcalls are used (the SDK's convenience
//! wrappers unwrap, and a panic would kill the VM for every request on this
//! worker); a panic that happens anyway is logged at critical first.

use crate::names;
use crate::pairs::{decode_header_pairs, meta_value};
use crate::wakes;
use mcpgw_core::gateway::host::{
    Attribute, CallId, CallResponse, Configure, Dir, Family, Flow, HeaderOp, Host, HostError,
    HttpStream, Level, LocalResponse, LogField, MetaValue, MetricId, MetricKind, Outbound,
    StreamId,
};
use mcpgw_core::gateway::stats::series_name;
use mcpgw_core::gateway::{compile, Exchange, Gateway, GatewayError};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // After set_log_level, which installs the SDK's own hook: a panic (in a
    // dependency, say) is named in Envoy's log before the VM aborts.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("mcpgw panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { gateway: None }) });
}}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// A header map, read without the SDK's `get_map`/`get_map_bytes`: those
/// unwrap UTF-8 conversions and panic on an unexpected status, and a header
/// value is bytes (a client or backend may send obs-text).
fn header_map(map_type: MapType) -> Vec<(String, String)> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through this module's
    // `proxy_on_memory_allocate` (a `Vec<u8>` of exactly `size` bytes), so
    // taking ownership with the same length and capacity frees it correctly.
    let raw = unsafe {
        if proxy_get_header_map_pairs(map_type, &mut data, &mut size) != Status::Ok
            || data.is_null()
        {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    };
    decode_header_pairs(&raw)
}

/// The answer to a side call, read in its response hook.
fn call_response(body_size: usize) -> CallResponse {
    CallResponse::from_parts(
        header_map(MapType::HttpCallResponseHeaders),
        buffer(BufferType::HttpCallResponseBody, body_size),
    )
}

fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(kind, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

thread_local! {
    /// This VM's metrics: Envoy's id and kind of each declared series, by
    /// [`MetricId`].
    static SERIES: RefCell<Vec<(u32, MetricKind)>> = const { RefCell::new(Vec::new()) };
    /// Series recorded by label values, by flat name.
    static LABELLED: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

fn define(kind: MetricKind, name: &str) -> Option<u32> {
    let t = match kind {
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Histogram => MetricType::Histogram,
    };
    hostcalls::define_metric(t, name).ok()
}

fn record(id: u32, kind: MetricKind, value: u64) {
    let _ = match kind {
        MetricKind::Counter => {
            hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
        }
        MetricKind::Histogram => hostcalls::record_metric(id, value),
    };
}

/// Header pairs as the SDK takes them.
fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn map(dir: Dir) -> MapType {
    match dir {
        Dir::Request => MapType::HttpRequestHeaders,
        Dir::Response => MapType::HttpResponseHeaders,
    }
}

fn body_buffer(dir: Dir) -> BufferType {
    match dir {
        Dir::Request => BufferType::HttpRequestBody,
        Dir::Response => BufferType::HttpResponseBody,
    }
}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Stop => Action::Pause,
    }
}

/// The host port over proxy-wasm hostcalls, for the request of context
/// `ctx` (0: the root, configuring).
struct WasmHost {
    ctx: u32,
}

// proxy-wasm stats have no labels: a series is named with its labels in it
// (`stats::series_name`), which the shipped `stats_tags` split again.
impl Configure for WasmHost {
    fn define_metric(&mut self, family: &Family, labels: &[&str]) -> Option<MetricId> {
        let id = define(family.kind, &series_name(family, labels))?;
        SERIES.with(|s| {
            let mut s = s.borrow_mut();
            s.push((id, family.kind));
            u32::try_from(s.len() - 1).ok().map(MetricId)
        })
    }
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        getrandom::fill(buf).map_err(|_| HostError)
    }

    fn log(&self, level: Level, message: &str) {
        let l = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(l, message);
    }

    fn dispatch(&mut self, call: &Outbound) -> Result<CallId, HostError> {
        let body = (!call.body.is_empty()).then_some(call.body.as_slice());
        hostcalls::dispatch_http_call(
            &call.cluster,
            borrowed(&call.headers),
            body,
            Vec::new(),
            Duration::from_millis(call.timeout_ms),
        )
        .map(|token| {
            wakes::dispatched(token, self.ctx);
            CallId::from(token)
        })
        .map_err(|_| HostError)
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        match hostcalls::get_shared_data(key) {
            Ok((value, cas)) => (value, cas.unwrap_or(0)),
            Err(_) => (None, 0),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        match hostcalls::set_shared_data(key, Some(value), (cas != 0).then_some(cas)) {
            Ok(()) => Ok(true),
            Err(Status::CasMismatch) => Ok(false),
            Err(_) => Err(HostError),
        }
    }

    fn metadata(&self, namespace: &str, path: &[&str]) -> Option<MetaValue> {
        let mut p = Vec::with_capacity(path.len() + 3);
        p.extend(["metadata", "filter_metadata", namespace]);
        p.extend_from_slice(path);
        meta_value(hostcalls::get_property(p).ok().flatten()?)
    }

    fn attribute(&self, attribute: Attribute) -> Option<String> {
        let path = match attribute {
            Attribute::ResponseCodeDetails => vec!["response", "code_details"],
        };
        let v = hostcalls::get_property(path).ok().flatten()?;
        Some(String::from_utf8_lossy(&v).into_owned())
    }

    fn set_log_field(&self, field: LogField, value: &str) {
        let _ = hostcalls::set_property(vec![names::property(field)], Some(value.as_bytes()));
    }

    fn record(&self, metric: MetricId, value: u64) {
        let series = SERIES.with(|s| s.borrow().get(metric.0 as usize).copied());
        if let Some((id, kind)) = series {
            record(id, kind, value);
        }
    }

    fn record_labelled(&self, family: &Family, labels: &[&str], value: u64) {
        let name = series_name(family, labels);
        let id = LABELLED.with(|m| {
            let mut m = m.borrow_mut();
            if let Some(id) = m.get(&name) {
                return Some(*id);
            }
            let id = define(family.kind, &name)?;
            m.insert(name, id);
            Some(id)
        });
        if let Some(id) = id {
            record(id, family.kind, value);
        }
    }

    fn stream_id(&self) -> Option<StreamId> {
        (self.ctx != 0).then_some(StreamId::from(self.ctx))
    }

    fn wake(&mut self, id: StreamId, at_ms: Option<u64>) {
        if let Ok(ctx) = u32::try_from(id) {
            wakes::wake(ctx, at_ms);
        }
    }
}

impl HttpStream for WasmHost {
    fn headers(&mut self, dir: Dir) -> Vec<(String, String)> {
        header_map(map(dir))
    }

    fn header(&mut self, dir: Dir, name: &str) -> Option<String> {
        // Bytes, not text: the SDK's text read panics on a value that is not
        // UTF-8.
        hostcalls::get_map_value_bytes(map(dir), name)
            .ok()
            .flatten()
            .map(|b| match String::from_utf8(b) {
                Ok(t) => t,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })
    }

    fn body(&mut self, dir: Dir, size: usize) -> Vec<u8> {
        buffer(body_buffer(dir), size)
    }

    fn apply(&mut self, dir: Dir, ops: &[HeaderOp]) {
        for op in ops {
            let _ = match op {
                HeaderOp::Set(k, v) => hostcalls::set_map_value(map(dir), k, Some(v)),
                HeaderOp::Remove(k) => hostcalls::remove_map_value(map(dir), k),
            };
        }
    }

    fn replace_body(&mut self, dir: Dir, size: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(body_buffer(dir), 0, size, body);
    }

    fn send(&mut self, r: LocalResponse) {
        let body = (!r.body.is_empty()).then_some(r.body.as_slice());
        if hostcalls::send_http_response(u32::from(r.status), borrowed(&r.headers), body).is_err() {
            let _ = hostcalls::log(LogLevel::Error, "mcpgw: could not send a local response");
        }
    }

    fn resume_request(&mut self) {
        let _ = hostcalls::resume_http_request();
    }
}

struct Root {
    gateway: Option<Arc<Gateway>>,
}

impl Context for Root {
    /// A side call the root made for a request (see `wakes`).
    fn on_http_call_response(
        &mut self,
        token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let response = call_response(body_size);
        if let Some(ctx) = wakes::owner_of(token) {
            wakes::run_for(ctx, |ex| {
                ex.call_done(&mut WasmHost { ctx }, CallId::from(token), response)
            });
        }
        wakes::settle();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match compile(&raw, &|name| std::env::var(name).ok()) {
            Ok(cfg) => {
                let gateway = Gateway::new(cfg, &mut WasmHost { ctx: 0 });
                WasmHost { ctx: 0 }.log(Level::Info, &gateway.summary());
                self.gateway = Some(Arc::new(gateway));
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Critical, &e.to_string());
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let exchange = self
            .gateway
            .clone()
            .map(|gw| Rc::new(RefCell::new(Exchange::new(gw))));
        if let Some(ex) = &exchange {
            wakes::register(context_id, ex);
        }
        Some(Box::new(Http {
            exchange,
            host: WasmHost { ctx: context_id },
        }))
    }

    fn on_tick(&mut self) {
        let now = WasmHost { ctx: 0 }.now_ms();
        for ctx in wakes::due(now) {
            wakes::run_for(ctx, |ex| ex.woken(&mut WasmHost { ctx }));
        }
        wakes::settle();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request: each callback goes to its hook. The exchange is shared
/// with `wakes`, which lets the root run a hook of it.
struct Http {
    exchange: Option<wakes::Shared>,
    host: WasmHost,
}

impl Http {
    /// Run a hook; `otherwise` when there is no gateway (or, impossibly, the
    /// exchange is busy).
    fn hook<T>(&mut self, otherwise: T, f: impl FnOnce(&mut Exchange, &mut WasmHost) -> T) -> T {
        match self.exchange.as_ref().map(|ex| ex.try_borrow_mut()) {
            Some(Ok(mut ex)) => f(&mut ex, &mut self.host),
            _ => otherwise,
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        wakes::unregister(self.host.ctx);
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let response = call_response(body_size);
        self.hook((), |ex, host| {
            ex.call_done(host, CallId::from(token), response)
        });
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.exchange.is_none() {
            self.host
                .send(GatewayError::not_configured().response(None));
            return Action::Pause;
        }
        self.hook(Action::Continue, |ex, host| {
            action(ex.request_headers(host, end_of_stream))
        })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.hook(Action::Continue, |ex, host| {
            action(ex.request_body(host, body_size, end_of_stream))
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.hook(Action::Continue, |ex, host| {
            action(ex.response_headers(host, end_of_stream))
        })
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.hook(Action::Continue, |ex, host| {
            action(ex.response_body(host, body_size, end_of_stream))
        })
    }

    fn on_log(&mut self) {
        self.hook((), |ex, host| ex.stream_done(host));
    }
}
