//! `cargo run --release -p mcpgw-e2e --bin bench -- [--quick] [--out bench/results.md]`
//!
//! Benchmarks mcpgw against a direct connection, a plain Envoy router and
//! Envoy's native mcp_router, and writes a Markdown report (see
//! `bench/README.md`). `bench __backend ...` runs the benchmark backend
//! itself (the harness starts its backends that way, so one binary suffices).

use mcpgw_e2e::bench::{backend, run};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__backend") {
        std::process::exit(backend::main_with_args(args.get(1..).unwrap_or(&[])));
    }
    let opts = match run::Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: tokio: {e}");
            std::process::exit(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    if let Err(e) = local.block_on(&rt, run::run(opts)) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}
