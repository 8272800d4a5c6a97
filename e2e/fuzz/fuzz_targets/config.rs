//! Plugin configuration parsing, with an environment resolver.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpgw_fuzz::harness::config(data));
