//! End-to-end test support for mcpgw: MCP test backends built on the official
//! Rust SDK (`backends`), the MCP conformance suite's fixture server
//! (`fixture`), SDK servers run as child processes (`peers`), a real Envoy
//! with the built filter (`envoy`), and client helpers (`client`).

pub mod backends;
/// The benchmark harness (`bench` and `bench-backend` binaries).
pub mod bench;
pub mod checks;
pub mod client;
pub mod envoy;
pub mod faulty;
pub mod fixture;
pub mod mcpgw_run;
pub mod peers;
pub mod stack;
