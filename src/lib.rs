//! mcpgw-core: the host-neutral core of mcpgw, an MCP gateway that runs
//! inside Envoy.
//!
//! Layers, each depending only on the ones above it:
//! - [`protocol`]: JSON-RPC 2.0, SSE framing, the MCP method table, HTTP rules;
//! - [`gateway`]: the gateway logic (config, sessions, naming, fan-out and
//!   merge, stream rewriting), pure Rust, driven through [`gateway::Host`].
//!
//! No host code lives here: the adapters (`crates/proxy-wasm`, the proxy-wasm
//! filter) depend on this crate and translate between their host and the port.

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
