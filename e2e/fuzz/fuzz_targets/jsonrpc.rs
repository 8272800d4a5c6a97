//! JSON-RPC parsing, RawObject round trips and the message / list rewrites.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpgw_fuzz::harness::jsonrpc(data));
