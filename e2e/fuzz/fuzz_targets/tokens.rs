//! Opening session ids, request / task / event ids and cursors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpgw_fuzz::harness::tokens(data));
