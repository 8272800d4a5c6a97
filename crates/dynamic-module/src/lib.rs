//! mcpgw as an Envoy dynamic module (`libmcpgw.so`, module name `mcpgw`):
//! the adapter between Envoy's dynamic-module ABI and the host port of
//! mcpgw-core. It only translates: Envoy's hooks (exported below) become the
//! core's hooks (`filter.rs`), the core's requests become the ABI's callbacks
//! (declared in `abi.rs`, the only file that knows them).
//!
//! Configuration: the same JSON as the proxy-wasm filter, as the filter's
//! `filter_config` (a `google.protobuf.StringValue`). `${VAR}` references
//! resolve in Envoy's own environment.
//!
//! Every hook catches panics: a panic fails that one request (a 500 when the
//! answer has not started) and never unwinds into Envoy.

pub mod abi;
mod filter;
pub mod names;
mod shared;

use abi::{ConfigEnvoy, ConfigModule, EnvoyBuffer, EnvoyHeader, FilterEnvoy, FilterModule};
use filter::{log, Config, Event, Stream};
use mcpgw_core::gateway::host::CallResponse;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Run `f`, turning a panic into `fallback` (for hooks without a stream).
fn guarded<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The stream behind a module pointer.
///
/// # Safety
/// `p` must be null or a pointer returned by
/// [`envoy_dynamic_module_on_http_filter_new`] and not yet destroyed.
unsafe fn stream<'a>(p: FilterModule) -> Option<&'a Stream> {
    // SAFETY: see above.
    unsafe { p.cast::<Stream>().as_ref() }
}

/// Run a stream hook: nothing without a stream, `fallback` after a panic
/// (which also fails the request).
///
/// # Safety
/// As for [`stream`].
unsafe fn on_stream<R: Copy>(p: FilterModule, fallback: R, f: impl FnOnce(&Stream) -> R) -> R {
    // SAFETY: see above.
    let Some(s) = (unsafe { stream(p) }) else {
        return fallback;
    };
    s.guard(fallback, || f(s))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guarded(std::ptr::null(), || match abi::api() {
        Ok(api) => {
            // A panic (in a dependency, say) is named in Envoy's log; the
            // hook's guard then fails the request.
            std::panic::set_hook(Box::new(move |info| {
                log(
                    api,
                    abi::log_level::CRITICAL,
                    &format!("mcpgw panicked: {info}"),
                );
            }));
            abi::ABI_VERSION.as_ptr()
        }
        Err(e) => {
            eprintln!("mcpgw: cannot load: {e}");
            std::ptr::null()
        }
    })
}

/// # Safety
/// Called by Envoy with valid buffers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: ConfigEnvoy,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModule {
    guarded(std::ptr::null(), || {
        let Ok(api) = abi::api() else {
            return std::ptr::null();
        };
        // SAFETY: Envoy's buffer, valid during the hook.
        let raw = unsafe { config.to_vec() };
        match Config::new(api, envoy, &raw) {
            Ok(c) => Box::into_raw(Box::new(Arc::new(c))).cast_const().cast(),
            Err(e) => {
                log(api, abi::log_level::CRITICAL, &e);
                std::ptr::null()
            }
        }
    })
}

/// # Safety
/// `config` is a pointer returned by the hook above.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ConfigModule) {
    guarded((), || {
        if !config.is_null() {
            // SAFETY: made by `Box::into_raw` in config_new; Envoy destroys it once.
            drop(unsafe { Box::from_raw(config.cast::<Arc<Config>>().cast_mut()) });
        }
    })
}

/// # Safety
/// `config` is a pointer returned by config_new.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModule,
    envoy: FilterEnvoy,
) -> FilterModule {
    guarded(std::ptr::null(), || {
        // SAFETY: made by config_new, alive while Envoy creates its filters.
        let Some(c) = (unsafe { config.cast::<Arc<Config>>().as_ref() }) else {
            return std::ptr::null();
        };
        match Stream::new(Arc::clone(c), envoy) {
            Some(s) => Box::into_raw(Box::new(s)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

/// # Safety
/// `filter` is a pointer returned by filter_new.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModule) {
    guarded((), || {
        if !filter.is_null() {
            // SAFETY: made by `Box::into_raw` in filter_new; destroyed once.
            drop(unsafe { Box::from_raw(filter.cast::<Stream>().cast_mut()) });
        }
    })
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe {
        on_stream(filter, abi::headers_status::STOP_ITERATION, |s| {
            s.request_headers(end_of_stream)
        })
    }
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe {
        on_stream(filter, abi::body_status::STOP_ITERATION_AND_BUFFER, |s| {
            s.request_body(end_of_stream)
        })
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoy,
    _filter: FilterModule,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe {
        on_stream(filter, abi::headers_status::CONTINUE, |s| {
            s.response_headers(end_of_stream)
        })
    }
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe {
        on_stream(filter, abi::body_status::CONTINUE, |s| {
            s.response_body(end_of_stream)
        })
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoy,
    _filter: FilterModule,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: FilterEnvoy,
    filter: FilterModule,
) {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe { on_stream(filter, (), |s| s.stream_complete()) }
}

/// # Safety
/// Envoy's pointers for a live stream; headers and chunks valid for the hook.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    id: u64,
    result: u32,
    headers: *mut EnvoyHeader,
    headers_size: usize,
    chunks: *mut EnvoyBuffer,
    chunks_size: usize,
) {
    // SAFETY: Envoy's pointers, valid during the hook.
    unsafe {
        on_stream(filter, (), |s| {
            let response = if result == abi::CALLOUT_SUCCESS {
                CallResponse::from_parts(
                    filter::envoy_headers(headers, headers_size),
                    filter::envoy_chunks(chunks, chunks_size),
                )
            } else {
                CallResponse::default()
            };
            s.event(Event::CallDone(id, response))
        })
    }
}

/// # Safety
/// Envoy's pointers for a live stream; headers valid for the hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    id: u64,
    headers: *mut EnvoyHeader,
    headers_size: usize,
    _end_of_stream: bool,
) {
    // SAFETY: Envoy's pointers, valid during the hook.
    unsafe {
        on_stream(filter, (), |s| {
            let h = filter::envoy_headers(headers, headers_size);
            s.event(Event::StreamHeaders(id, h))
        })
    }
}

/// # Safety
/// Envoy's pointers for a live stream; data valid for the hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    id: u64,
    data: *const EnvoyBuffer,
    count: usize,
    end_of_stream: bool,
) {
    // SAFETY: Envoy's pointers, valid during the hook.
    unsafe {
        on_stream(filter, (), |s| {
            let d = filter::envoy_chunks(data, count);
            s.event(Event::StreamData(id, d, end_of_stream))
        })
    }
}

/// Trailers of an event stream carry nothing the gateway uses; its end
/// follows.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoy,
    _filter: FilterModule,
    _id: u64,
    _trailers: *mut EnvoyHeader,
    _trailers_size: usize,
) {
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    id: u64,
) {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe { on_stream(filter, (), |s| s.event(Event::StreamEnd(id, false))) }
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoy,
    filter: FilterModule,
    id: u64,
    _reason: u32,
) {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe { on_stream(filter, (), |s| s.event(Event::StreamEnd(id, true))) }
}

/// Nothing is scheduled (the gateway keeps no timers).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoy,
    _filter: FilterModule,
    _event: u64,
) {
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoy,
    filter: FilterModule,
) {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe { on_stream(filter, (), |s| s.above_watermark()) }
}

/// # Safety
/// Envoy's pointers for a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoy,
    filter: FilterModule,
) {
    // SAFETY: Envoy's pointers for a live stream.
    unsafe { on_stream(filter, (), |s| s.below_watermark()) }
}
