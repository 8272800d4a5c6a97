//! Fuzz harness for mcpgw (see `harness.rs`; the regression tests in
//! `e2e/tests/fuzz_regressions.rs` include the same file).

pub mod harness;
