//! The whole request path through Exchange with a fake host.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpgw_fuzz::harness::exchange(data));
