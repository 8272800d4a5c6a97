//! The benchmark's fast MCP backend (canned JSON-RPC answers on hyper); see
//! `mcpgw_e2e::bench::backend`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mcpgw_e2e::bench::backend::main_with_args(&args));
}
