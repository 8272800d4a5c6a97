//! The part of Envoy's dynamic-module ABI (`v0.2.0`, Envoy 1.40) this adapter
//! uses, declared here and nowhere else.
//!
//! Checked against the binary's exports (`nm -D --defined-only $ENVOY_BIN |
//! grep envoy_dynamic_module_callback_`, the e2e drift test does it) and
//! against the ABI header `source/extensions/dynamic_modules/abi/abi.h` of
//! Envoy's v0.1.0/v0.2.0 line (v0.2.0 keeps v0.1.0's signatures). Types are
//! `#[repr(C)]`; C enums are `u32`s with the values below.
//!
//! Envoy's callbacks are not linked: [`Api::load`] looks each one up in the
//! running process (`dlsym`) when the module is loaded, so a binary that lacks
//! one is refused with its name (instead of failing to load with a bare
//! linker error), and the library also links into test binaries and the
//! `mcpgw` command, which have no Envoy around them.

use std::ffi::{c_char, c_void};
use std::sync::OnceLock;

/// The hooks this module exports (`envoy_dynamic_module_on_` + each): the
/// ones Envoy 1.40 requires of an HTTP-filter module (it refuses to load one
/// without them); `lib.rs` defines them.
pub const HOOKS: [&str; 21] = [
    "program_init",
    "http_filter_config_new",
    "http_filter_config_destroy",
    "http_filter_new",
    "http_filter_destroy",
    "http_filter_request_headers",
    "http_filter_request_body",
    "http_filter_request_trailers",
    "http_filter_response_headers",
    "http_filter_response_body",
    "http_filter_response_trailers",
    "http_filter_stream_complete",
    "http_filter_http_callout_done",
    "http_filter_http_stream_headers",
    "http_filter_http_stream_data",
    "http_filter_http_stream_trailers",
    "http_filter_http_stream_complete",
    "http_filter_http_stream_reset",
    "http_filter_scheduled",
    "http_filter_downstream_above_write_buffer_high_watermark",
    "http_filter_downstream_below_write_buffer_low_watermark",
];

/// What `envoy_dynamic_module_on_program_init` answers.
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// A buffer owned by Envoy, valid until the current hook returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// A buffer owned by the module, valid for the duration of the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// A header owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

/// A header owned by the module.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl EnvoyBuffer {
    pub const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, borrowed: copy what must outlive the hook.
    ///
    /// # Safety
    /// `ptr` must be null or point at `length` readable bytes that stay
    /// valid and unchanged for `'a` (Envoy's buffers: during the hook).
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `length` readable bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }
    }

    /// The bytes, copied.
    ///
    /// # Safety
    /// As for [`EnvoyBuffer::as_bytes`].
    pub unsafe fn to_vec(&self) -> Vec<u8> {
        // SAFETY: see above.
        unsafe { self.as_bytes() }.to_vec()
    }

    /// The bytes as text, copied once (bytes that are not UTF-8 become
    /// U+FFFD).
    ///
    /// # Safety
    /// As for [`EnvoyBuffer::as_bytes`].
    pub unsafe fn to_text(&self) -> String {
        // SAFETY: see above.
        let b = unsafe { self.as_bytes() };
        match std::str::from_utf8(b) {
            Ok(t) => t.to_owned(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

impl ModuleBuffer {
    pub fn new(b: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: b.as_ptr().cast(),
            length: b.len(),
        }
    }

    /// The null buffer (`set_header` removes the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

impl ModuleHeader {
    pub fn new(k: &str, v: &str) -> ModuleHeader {
        ModuleHeader {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        }
    }
}

/// Pointers Envoy hands over and gets back.
pub type FilterEnvoy = *mut c_void;
pub type ConfigEnvoy = *mut c_void;
pub type FilterModule = *const c_void;
pub type ConfigModule = *const c_void;

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    pub const REQUEST: u32 = 0;
    pub const RESPONSE: u32 = 2;
}

/// `envoy_dynamic_module_type_http_body_type`.
pub mod body_type {
    pub const RECEIVED_REQUEST: u32 = 0;
    pub const BUFFERED_REQUEST: u32 = 1;
    pub const RECEIVED_RESPONSE: u32 = 2;
    pub const BUFFERED_RESPONSE: u32 = 3;
}

/// `envoy_dynamic_module_type_log_level`.
pub mod log_level {
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_headers_status`.
pub mod headers_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION: u32 = 1;
}

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_body_status`.
pub mod body_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION_AND_BUFFER: u32 = 1;
}

/// `..._trailers_status`.
pub const TRAILERS_CONTINUE: u32 = 0;

/// `envoy_dynamic_module_type_http_callout_init_result`.
pub const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result`.
pub const CALLOUT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_metrics_result`.
pub const METRICS_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_metadata_source`: the stream's dynamic metadata.
pub const METADATA_DYNAMIC: u32 = 0;
/// `envoy_dynamic_module_type_attribute_id`: `response.code_details`.
pub const ATTRIBUTE_RESPONSE_CODE_DETAILS: u32 = 16;

macro_rules! callbacks {
    ($( $(#[$doc:meta])* $name:ident : fn($($arg:ty),*) $(-> $ret:ty)?; )*) => {
        /// Envoy's callbacks, resolved once per process ([`api`]).
        #[allow(clippy::type_complexity)]
        pub struct Api {
            $( $(#[$doc])* pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
        }

        /// Every callback the adapter uses, by its exported name.
        pub const CALLBACKS: &[&str] = &[
            $( concat!("envoy_dynamic_module_callback_", stringify!($name)), )*
        ];

        impl Api {
            /// Look every callback up in the running process; the first
            /// missing one is named in the error.
            pub fn load() -> Result<Api, String> {
                Ok(Api {
                    $( $name: {
                        let p = lookup(concat!("envoy_dynamic_module_callback_", stringify!($name), "\0"))?;
                        // SAFETY: `p` is the address of the exported function
                        // of this name, whose C signature is the one declared
                        // (checked against the ABI header, see the module docs).
                        unsafe {
                            std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(p)
                        }
                    }, )*
                })
            }
        }
    };
}

callbacks! {
    log: fn(u32, ModuleBuffer);
    log_enabled: fn(u32) -> bool;
    get_concurrency: fn() -> u32;

    http_filter_config_define_counter: fn(ConfigEnvoy, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;
    http_filter_config_define_histogram: fn(ConfigEnvoy, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;
    http_filter_increment_counter: fn(FilterEnvoy, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_record_histogram_value: fn(FilterEnvoy, usize, *mut ModuleBuffer, usize, u64) -> u32;

    http_get_headers_size: fn(FilterEnvoy, u32) -> usize;
    http_get_headers: fn(FilterEnvoy, u32, *mut EnvoyHeader) -> bool;
    /// (filter, type, key, value out, index, count out) -> found
    http_get_header: fn(FilterEnvoy, u32, ModuleBuffer, *mut EnvoyBuffer, usize, *mut usize) -> bool;
    /// A null value removes the header.
    http_set_header: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer) -> bool;
    http_clear_route_cache: fn(FilterEnvoy);

    /// (filter, status, headers, count, body, details)
    http_send_response: fn(FilterEnvoy, u32, *mut ModuleHeader, usize, ModuleBuffer, ModuleBuffer);
    http_send_response_headers: fn(FilterEnvoy, *mut ModuleHeader, usize, bool);
    http_send_response_data: fn(FilterEnvoy, ModuleBuffer, bool);

    http_get_body_size: fn(FilterEnvoy, u32) -> usize;
    http_get_body_chunks_size: fn(FilterEnvoy, u32) -> usize;
    http_get_body_chunks: fn(FilterEnvoy, u32, *mut EnvoyBuffer) -> bool;
    http_append_body: fn(FilterEnvoy, u32, ModuleBuffer) -> bool;
    http_drain_body: fn(FilterEnvoy, u32, usize) -> bool;
    http_received_buffered_request_body: fn(FilterEnvoy) -> bool;
    http_received_buffered_response_body: fn(FilterEnvoy) -> bool;

    /// (filter, source, namespace, key, value out) -> found and a string
    http_get_metadata_string: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer, *mut EnvoyBuffer) -> bool;
    http_get_metadata_number: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer, *mut f64) -> bool;
    http_get_metadata_bool: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer, *mut bool) -> bool;
    http_get_metadata_list_size: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer, *mut usize) -> bool;
    http_get_metadata_list_string: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer, usize, *mut EnvoyBuffer) -> bool;
    http_get_metadata_list_number: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer, usize, *mut f64) -> bool;
    http_get_metadata_list_bool: fn(FilterEnvoy, u32, ModuleBuffer, ModuleBuffer, usize, *mut bool) -> bool;
    http_get_metadata_keys_count: fn(FilterEnvoy, u32, ModuleBuffer) -> usize;
    http_get_metadata_keys: fn(FilterEnvoy, u32, ModuleBuffer, *mut EnvoyBuffer) -> bool;

    http_set_filter_state_bytes: fn(FilterEnvoy, ModuleBuffer, ModuleBuffer) -> bool;
    http_filter_get_attribute_string: fn(FilterEnvoy, u32, *mut EnvoyBuffer) -> bool;
    http_filter_get_worker_index: fn(FilterEnvoy) -> u32;

    /// (filter, id out, cluster, headers, count, body, timeout ms) -> init result
    http_filter_http_callout: fn(FilterEnvoy, *mut u64, ModuleBuffer, *mut ModuleHeader, usize, ModuleBuffer, u64) -> u32;
    /// (filter, id out, cluster, headers, count, body, end of stream, timeout ms) -> init result
    http_filter_start_http_stream: fn(FilterEnvoy, *mut u64, ModuleBuffer, *mut ModuleHeader, usize, ModuleBuffer, bool, u64) -> u32;
    http_filter_reset_http_stream: fn(FilterEnvoy, u64);
    http_filter_continue_decoding: fn(FilterEnvoy);

    /// A scheduler for the stream: `commit` (from any thread) makes Envoy
    /// call `on_http_filter_scheduled` on the stream's worker, while the
    /// stream lives.
    http_filter_scheduler_new: fn(FilterEnvoy) -> *mut c_void;
    http_filter_scheduler_commit: fn(*mut c_void, u64);
    http_filter_scheduler_delete: fn(*mut c_void);
}

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `RTLD_DEFAULT`: the process's global symbols (the Envoy executable's).
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

fn lookup(name_nul: &'static str) -> Result<*mut c_void, String> {
    // SAFETY: `name_nul` is a NUL-terminated literal (see the macro).
    let p = unsafe { dlsym(RTLD_DEFAULT, name_nul.as_ptr().cast()) };
    if p.is_null() {
        return Err(format!(
            "this Envoy does not export {} (its dynamic-module ABI differs from v0.2.0)",
            name_nul.trim_end_matches('\0')
        ));
    }
    Ok(p)
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// The callbacks (looked up on first use, normally at program init).
pub fn api() -> Result<&'static Api, &'static str> {
    match API.get_or_init(Api::load) {
        Ok(a) => Ok(a),
        Err(e) => Err(e.as_str()),
    }
}
