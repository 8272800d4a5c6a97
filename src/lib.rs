//! mcpgw: an MCP gateway that runs inside Envoy as a proxy-wasm filter.
//!
//! Layers, each depending only on the ones above it:
//! - [`protocol`]: JSON-RPC 2.0, SSE framing, the MCP method table, HTTP rules;
//! - [`gateway`]: the gateway logic (config, sessions, naming, fan-out and
//!   merge, stream rewriting), pure Rust, driven through [`gateway::Host`];
//! - `adapter`: the only code that talks to the proxy (proxy-wasm now).

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod gateway;
pub mod protocol;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod adapter;
