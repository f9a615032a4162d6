#!/usr/bin/env bash
# Fuzzes every target for a while and reports the executions.
#
#   tests/fuzz/run.sh [seconds-per-target] [target...]     (default: 60 s, every target)
#
# Needs a nightly toolchain (cargo-fuzz builds with sanitizer flags only nightly takes);
# installs cargo-fuzz under tests/fuzz/target/tools when it is not on PATH. Each target
# starts from its checked-in seeds (corpus/<target>, read only) and grows a scratch corpus
# under target/corpus/<target>; a crash leaves its input in artifacts/<target>/. Exits
# non-zero when any target crashed (after running the others), or when nightly is missing.
#
# Builds keep debug assertions and overflow checks on. Warren's decoders and recovery are safe
# Rust, so no sanitizer runs by default: AddressSanitizer would cost several times the
# executions and find nothing safe code can do; FUZZ_SANITIZER=address turns it on.
#
# Environment: FUZZ_TOOLCHAIN (default nightly), FUZZ_SANITIZER (default none),
# CARGO_BUILD_JOBS (build parallelism), FUZZ_ARGS (extra libFuzzer flags, e.g. -max_len=8192).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
seconds=${1:-60}
if [[ $# -gt 0 ]]; then shift; fi
all_targets=(frame method table properties record recover)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-none}

if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -eq 0 ]]; then
    echo "run.sh: seconds per target must be a positive integer, got '$seconds'" >&2
    exit 2
fi
if ! command -v rustup >/dev/null 2>&1 || ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "run.sh: the Rust '$toolchain' toolchain is not installed; cargo-fuzz needs nightly." >&2
    echo "run.sh: install it with 'rustup toolchain install nightly', then run this again." >&2
    exit 3
fi

tools="$here/target/tools"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
fi
echo "== $(cargo fuzz --version), $(rustup run "$toolchain" rustc --version)"

echo "== building ${targets[*]}"
for t in "${targets[@]}"; do
    cargo "+$toolchain" fuzz build --fuzz-dir "$here" --sanitizer "$sanitizer" "$t"
done

logs="$here/target/logs"
mkdir -p "$logs"
total=0
failed=()
started=$(date +%s)
printf '%-12s %14s %8s  %s\n' target executions seconds status
for t in "${targets[@]}"; do
    scratch="$here/target/corpus/$t"
    mkdir -p "$scratch" "$here/artifacts/$t"
    log="$logs/$t.log"
    t0=$(date +%s)
    status=ok
    # The scratch corpus comes first: libFuzzer adds new inputs to the first directory only,
    # so the checked-in seeds stay as they are. stdout (the broker's log lines) is closed.
    # shellcheck disable=SC2086
    if ! cargo "+$toolchain" fuzz run --fuzz-dir "$here" --sanitizer "$sanitizer" "$t" "$scratch" "$here/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -close_fd_mask=1 -timeout=30 \
        ${FUZZ_ARGS:-} >"$log" 2>&1; then
        status="CRASH (see $log; input in $here/artifacts/$t/)"
        failed+=("$t")
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    execs=${execs:-0}
    total=$((total + execs))
    printf '%-12s %14s %8s  %s\n' "$t" "$execs" "$(($(date +%s) - t0))" "$status"
done
printf '%-12s %14s %8s\n' total "$total" "$(($(date +%s) - started))"

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run.sh: crashes in: ${failed[*]}" >&2
    for t in "${failed[@]}"; do
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "$logs/$t.log" >&2 || true
    done
    exit 1
fi
