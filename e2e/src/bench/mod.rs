//! The benchmark harness (issue 5): mcpgw side by side with a direct
//! connection, a plain Envoy router and Envoy's native `mcp_router`.
//!
//! - `backend`: the fast native MCP test backend (`bench-backend`);
//! - `procs`: starting backends and Envoys, and their generated configs;
//! - `client`: the load generator (MCP sessions over HTTP/1.1 keep-alive);
//! - `run`: the scenarios; `report`: medians, ratios and the Markdown report;
//! - `sys`: CPU time, RSS and machine facts from `/proc`;
//! - `soak`: the soak mode (`--soak 30m`): bounded mixed traffic for a long
//!   time, Envoy's memory, stats and log sampled, a verdict on growth.
//!
//! Run with `cargo run --release -p mcpgw-e2e --bin bench -- [--quick]`;
//! see `bench/README.md`.

pub mod backend;
pub mod client;
pub mod procs;
pub mod report;
pub mod run;
pub mod soak;
pub mod sys;
