//! SSE parsing and the gateway's stream rewrite under arbitrary chunk splits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpgw_fuzz::harness::sse(data));
