//! `cargo run --release -p mcpgw-e2e --bin bench -- [--quick] [--out bench/results.md]`
//!
//! Benchmarks mcpgw against a direct connection, a plain Envoy router and
//! Envoy's native mcp_router, and writes a Markdown report (see
//! `bench/README.md`). `bench --soak 30m [--out bench/soak.md]` runs the soak
//! test instead (bounded mixed traffic for that long; see `bench::soak`).
//! `bench __backend ...` runs the benchmark backend itself (the harness
//! starts its backends that way, so one binary suffices).

use mcpgw_e2e::bench::{backend, run, soak};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__backend") {
        std::process::exit(backend::main_with_args(args.get(1..).unwrap_or(&[])));
    }
    let soak_mode = args.iter().any(|a| a == "--soak");
    let opts = if soak_mode {
        soak::Options::parse(&args).map(Mode::Soak)
    } else {
        run::Options::parse(&args).map(Mode::Bench)
    };
    let opts = match opts {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            if !soak_mode && args.iter().any(|a| a == "-h" || a == "--help") {
                eprintln!("\nSoak mode: bench --soak DURATION [--out bench/soak.md] (bench --soak 1m --help)");
            }
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
    let result = match opts {
        Mode::Bench(o) => local.block_on(&rt, run::run(o)),
        Mode::Soak(o) => local.block_on(&rt, soak::run(o)),
    };
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

enum Mode {
    Bench(run::Options),
    Soak(soak::Options),
}
