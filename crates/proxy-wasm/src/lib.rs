//! The proxy-wasm host adapter: mcpgw-core as a proxy-wasm filter
//! (`mcpgw.wasm`), the only crate of the wasm build that talks to Envoy.
//!
//! It turns proxy-wasm callbacks into calls on [`Exchange`] and applies the
//! decisions. Only the `Result`-returning hostcalls are used (the SDK's
//! convenience wrappers unwrap, and a panic would kill the VM for every
//! request on this worker).

#![cfg(all(target_arch = "wasm32", target_os = "wasi"))]

use mcpgw_core::gateway::host::{
    BodyAction, CallResponse, HeaderOp, HeadersAction, Host, HostError, Level, LocalResponse,
    MetricKind, Outbound, ResponseBodyAction, ResponseHeadersAction,
};
use mcpgw_core::gateway::{compile, Exchange, Gateway};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
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
    mcpgw_core::gateway::host::decode_header_pairs(&raw)
}

/// [`Host`] over proxy-wasm hostcalls.
struct WasmHost;

thread_local! {
    /// Metric ids defined in this VM, by kind and name.
    static METRICS: std::cell::RefCell<std::collections::HashMap<(MetricKind, String), u32>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
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

    fn dispatch(&mut self, call: &Outbound) -> Result<u32, HostError> {
        let headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = (!call.body.is_empty()).then_some(call.body.as_slice());
        hostcalls::dispatch_http_call(
            &call.cluster,
            headers,
            body,
            Vec::new(),
            Duration::from_millis(call.timeout_ms),
        )
        .map_err(|_| HostError)
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        match hostcalls::get_shared_data(key) {
            Ok((value, cas)) => (value, cas.unwrap_or(0)),
            Err(_) => (None, 0),
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&self, name: &str, value: &str) {
        let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
    }

    fn metric(&self, kind: MetricKind, name: &str, value: u64) {
        let id = METRICS.with(|m| {
            let mut m = m.borrow_mut();
            if let Some(id) = m.get(&(kind, name.to_string())) {
                return Some(*id);
            }
            let t = match kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Histogram => MetricType::Histogram,
            };
            let id = hostcalls::define_metric(t, name).ok()?;
            m.insert((kind, name.to_string()), id);
            Some(id)
        });
        if let Some(id) = id {
            let _ = match kind {
                MetricKind::Counter => {
                    hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
                }
                MetricKind::Histogram => hostcalls::record_metric(id, value),
            };
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        match hostcalls::set_shared_data(key, Some(value), (cas != 0).then_some(cas)) {
            Ok(()) => Ok(true),
            Err(Status::CasMismatch) => Ok(false),
            Err(_) => Err(HostError),
        }
    }
}

struct Root {
    gateway: Option<Arc<Gateway>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match compile(&raw, &|name| std::env::var(name).ok()) {
            Ok(cfg) => {
                let names: Vec<&str> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
                WasmHost.log(
                    Level::Info,
                    &format!(
                        "mcpgw {} configured: {} with backends {}",
                        env!("CARGO_PKG_VERSION"),
                        cfg.path,
                        names.join(", ")
                    ),
                );
                self.gateway = Some(Arc::new(Gateway::new(cfg)));
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Critical, &e.to_string());
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            exchange: self.gateway.clone().map(Exchange::new),
            host: WasmHost,
            wants_response_body: false,
            request_body_size: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    exchange: Option<Exchange>,
    host: WasmHost,
    wants_response_body: bool,
    request_body_size: usize,
}

fn apply(map: MapType, ops: &[HeaderOp]) {
    for op in ops {
        let _ = match op {
            HeaderOp::Set(k, v) => hostcalls::set_map_value(map, k, Some(v)),
            HeaderOp::Remove(k) => hostcalls::remove_map_value(map, k),
        };
    }
}

fn send(r: &LocalResponse) {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = (!r.body.is_empty()).then_some(r.body.as_slice());
    if hostcalls::send_http_response(u32::from(r.status), headers, body).is_err() {
        let _ = hostcalls::log(LogLevel::Error, "mcpgw: could not send a local response");
    }
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

impl Http {
    /// Apply a body-phase decision; `resume` when the request was paused by a wait.
    fn body_action(&mut self, action: BodyAction, body_size: usize, resume: bool) -> Action {
        match action {
            BodyAction::Forward { headers, body } => {
                apply(MapType::HttpRequestHeaders, &headers);
                if let Some(b) = body {
                    let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, &b);
                }
                if resume {
                    let _ = hostcalls::resume_http_request();
                }
                Action::Continue
            }
            BodyAction::Wait => Action::Pause,
            BodyAction::Respond(r) => {
                send(&r);
                Action::Pause
            }
        }
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
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let headers = header_map(MapType::HttpCallResponseHeaders);
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let response = CallResponse {
            status,
            headers,
            body: buffer(BufferType::HttpCallResponseBody, body_size),
        };
        let action = ex.on_call_response(&mut self.host, token, response);
        self.body_action(action, self.request_body_size, true);
    }
}

impl HttpContext for Http {
    fn on_log(&mut self) {
        if let Some(ex) = self.exchange.as_mut() {
            ex.on_done(&mut self.host);
        }
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(ex) = self.exchange.as_mut() else {
            send(&LocalResponse::json(
                500,
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"mcpgw is not configured"}}"#.into(),
            ));
            return Action::Pause;
        };
        let headers = header_map(MapType::HttpRequestHeaders);
        match ex.on_request_headers(&mut self.host, &headers, end_of_stream) {
            HeadersAction::Continue(ops) => {
                apply(MapType::HttpRequestHeaders, &ops);
                Action::Continue
            }
            HeadersAction::NeedBody | HeadersAction::Wait => Action::Pause,
            HeadersAction::Respond(r) => {
                send(&r);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(ex) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        if !ex.wants_request_body() {
            return Action::Continue;
        }
        if !end_of_stream {
            if let Some(r) = ex.check_request_size(body_size) {
                send(&r);
            }
            return Action::Pause;
        }
        self.request_body_size = body_size;
        let body = buffer(BufferType::HttpRequestBody, body_size);
        let action = ex.on_request_body(&mut self.host, &body);
        self.body_action(action, body_size, false)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(ex) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        ex.on_response_start(&mut self.host);
        if !ex.wants_response() {
            return Action::Continue;
        }
        let headers = header_map(MapType::HttpResponseHeaders);
        match ex.on_response_headers(&mut self.host, &headers) {
            ResponseHeadersAction::Continue(ops) | ResponseHeadersAction::Buffer(ops) => {
                apply(MapType::HttpResponseHeaders, &ops);
                self.wants_response_body = ex.wants_response();
                Action::Continue
            }
            ResponseHeadersAction::Replace(r) => {
                self.wants_response_body = false;
                send(&r);
                Action::Pause
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.wants_response_body {
            return Action::Continue;
        }
        let Some(ex) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        if !end_of_stream && ex.buffers_response() {
            // Whole-body rewrite: only the size is checked until the end.
            return match ex.on_response_body_pending(&mut self.host, body_size) {
                ResponseBodyAction::Buffer => Action::Pause,
                _ => Action::Continue,
            };
        }
        let chunk = buffer(BufferType::HttpResponseBody, body_size);
        match ex.on_response_body(&mut self.host, &chunk, end_of_stream) {
            ResponseBodyAction::Continue => Action::Continue,
            ResponseBodyAction::Buffer => Action::Pause,
            ResponseBodyAction::Replace(b) => {
                let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &b);
                Action::Continue
            }
        }
    }
}
