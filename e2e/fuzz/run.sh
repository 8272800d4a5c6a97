#!/usr/bin/env bash
# Build and run every mcpgw fuzz target for a bounded time, then report.
#
#   e2e/fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
#
# Environment:
#   FUZZ_TARGETS    space-separated subset (default: all of jsonrpc sse tokens config exchange)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer (default: none, which runs 10-20x faster
#                   than address on this code; use address for a memory-checking run)
#   FUZZ_ARGS       extra libFuzzer flags (e.g. "-jobs=2 -workers=2")
#
# Needs the nightly toolchain and cargo-fuzz (installed on first use). Each
# target starts from its seed corpus e2e/fuzz/corpus/<target>/ (kept in git)
# and grows a working corpus in e2e/fuzz/target/corpus/<target>/ (ignored),
# so repeated runs continue where the last one stopped. Crashing inputs land in
# e2e/fuzz/artifacts/<target>/; replay one with
#   cargo +nightly fuzz run --fuzz-dir e2e/fuzz <target> e2e/fuzz/artifacts/<target>/<file>
# and turn it into a test in e2e/tests/fuzz_regressions.rs.
#
# Prints, per target, the executions (libFuzzer's stat::number_of_executed_units)
# and the crashes found; exits non-zero if any target crashed (or failed to build).
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$FUZZ_DIR/../.." && pwd)"
cd "$ROOT"

SECS="${1:-60}"
case "$SECS" in
    '' | *[!0-9]*)
        echo "usage: $0 [SECONDS_PER_TARGET]" >&2
        exit 2
        ;;
esac
TARGETS="${FUZZ_TARGETS:-jsonrpc sse tokens config exchange}"
SANITIZER="${FUZZ_SANITIZER:-none}"

log() { printf '==> %s\n' "$*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "the nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz >&2
fi

dict_for() {
    case "$1" in
        jsonrpc | sse) echo "$FUZZ_DIR/dict/jsonrpc.dict" ;;
        exchange) echo "$FUZZ_DIR/dict/exchange.dict" ;;
        config) echo "$FUZZ_DIR/dict/config.dict" ;;
        *) echo "" ;;
    esac
}

log "building the fuzz targets (sanitizer: $SANITIZER)"
cargo +nightly fuzz build -s "$SANITIZER" --fuzz-dir "$FUZZ_DIR" >&2

failed=0
total=0
report=()
for t in $TARGETS; do
    seeds="$FUZZ_DIR/corpus/$t"
    work="$FUZZ_DIR/target/corpus/$t"
    artifacts="$FUZZ_DIR/artifacts/$t"
    mkdir -p "$work" "$artifacts" "$seeds"
    before="$(ls -1 "$artifacts" | sort)"
    out="$FUZZ_DIR/target/fuzz-$t.log"
    args=(-max_total_time="$SECS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
        -max_len=16384 -artifact_prefix="$artifacts/")
    dict="$(dict_for "$t")"
    [ -n "$dict" ] && args+=(-dict="$dict")
    # shellcheck disable=SC2206
    [ -n "${FUZZ_ARGS:-}" ] && args+=($FUZZ_ARGS)
    log "fuzzing $t for ${SECS}s"
    status=0
    cargo +nightly fuzz run -s "$SANITIZER" --fuzz-dir "$FUZZ_DIR" "$t" "$work" "$seeds" -- "${args[@]}" \
        >"$out" 2>&1 || status=$?
    execs="$(grep -h 'stat::number_of_executed_units' "$out" | awk '{s += $2} END {print s + 0}')"
    new="$(comm -13 <(echo "$before") <(ls -1 "$artifacts" | sort) | grep -v '^$' || true)"
    crashes="$(printf '%s' "$new" | grep -c . || true)"
    total=$((total + execs))
    result=ok
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        result="FAILED (exit $status)"
        log "$t: libFuzzer output (tail):"
        tail -n 40 "$out" >&2
        for f in $new; do log "  crashing input: $artifacts/$f"; done
    fi
    report+=("$(printf '%-10s %14s %8s  %s' "$t" "$execs" "$crashes" "$result")")
done

printf '\n%-10s %14s %8s  %s\n' target executions crashes result
for line in "${report[@]}"; do echo "$line"; done
printf '%-10s %14s\n' total "$total"
exit "$failed"
