//! mcpgw as a proxy-wasm filter (`mcpgw.wasm`): the adapter between Envoy's
//! proxy-wasm ABI and the host port of mcpgw-core. It only translates:
//! proxy-wasm callbacks become the core's hooks, the core's requests become
//! hostcalls (`filter.rs`, the only file that makes them).
//!
//! `names` (the filter-state keys) and `pairs` (proxy-wasm's encoding of
//! header maps and lists) are plain code, built and tested on every target;
//! the filter itself only for wasm32-wasip1.

pub mod names;

#[cfg(any(test, all(target_arch = "wasm32", target_os = "wasi")))]
mod pairs;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;
