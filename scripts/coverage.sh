#!/usr/bin/env bash
# Line coverage of the workspace's test suite (not the fuzz/ workspace), documented in
# docs/testing.md; not part of CI. Installs what it needs if missing (llvm-22's llvm-cov and
# llvm-profdata, matching rustc's LLVM; cargo-llvm-cov), builds everything instrumented into
# its own target dir (target/llvm-cov-target, so target/debug is left alone), runs the tests,
# and writes under target/coverage/: html/ (the report), summary.txt (per file), summary.json,
# crates.txt (the per-crate table, also printed).
#
# The end-to-end tests run the real binaries (tern-server, tern-loadgen, tern) as child
# processes; they are built instrumented too, and LLVM_PROFILE_FILE carries %p so every child
# writes its own profile when it exits. A child killed with SIGKILL (the crash tests, and every
# ChildServer dropped at the end of a test) writes none: what it ran is not counted.
#
# Usage: bash scripts/coverage.sh [extra `cargo test` arguments, e.g. `-- --skip faults_`]
# Exit status: that of `cargo test` (the report is written either way).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

LLVM_BIN="${LLVM_BIN:-/usr/lib/llvm-22/bin}"
if [ ! -x "$LLVM_BIN/llvm-cov" ] || [ ! -x "$LLVM_BIN/llvm-profdata" ]; then
    echo "== installing llvm-22 (llvm-cov, llvm-profdata)"
    apt-get install -y llvm-22
fi
if ! cargo llvm-cov --version > /dev/null 2>&1; then
    echo "== installing cargo-llvm-cov"
    cargo install cargo-llvm-cov --locked
fi
export LLVM_COV="$LLVM_BIN/llvm-cov"
export LLVM_PROFDATA="$LLVM_BIN/llvm-profdata"
export CARGO_TARGET_DIR="${COVERAGE_TARGET_DIR:-$PWD/target/llvm-cov-target}"
OUT="$PWD/target/coverage"

# Instrumentation (a rustc wrapper for the workspace's crates only) and LLVM_PROFILE_FILE
# (with %p: one profile per process, children included) for every cargo command below.
eval "$(cargo llvm-cov show-env --sh 2> /dev/null)"
cargo llvm-cov clean --workspace
echo "== building the binaries the tests run as children (instrumented)"
cargo build --locked -p tern-server -p tern-loadgen -p tern-cli
echo "== running the tests (instrumented)"
rc=0
cargo test --locked --workspace --no-fail-fast "$@" || rc=$?

echo "== writing the report to $OUT"
rm -rf "$OUT"
mkdir -p "$OUT"
cargo llvm-cov report --html --output-dir "$OUT"
cargo llvm-cov report > "$OUT/summary.txt"
cargo llvm-cov report --json --summary-only --output-path "$OUT/summary.json"
python3 - "$OUT/summary.json" "$PWD" > "$OUT/crates.txt" << 'EOF'
import json, sys
data = json.load(open(sys.argv[1]))["data"][0]
root = sys.argv[2].rstrip("/") + "/"
# Longest prefix first: client-sdk/cli/ is tern-cli, the rest of client-sdk/ is tern-sdk. Not
# listed: tern-tests (tests/, the harness: cargo-llvm-cov leaves test code out of the report, as
# it does the crates' tests.rs modules) and tern-benches (`cargo test` does not run benches).
crates = [("client-sdk/cli/", "tern-cli"), ("client-sdk/", "tern-sdk"), ("protocol/", "tern-protocol"),
          ("server/", "tern-server"), ("loadgen/", "tern-loadgen")]
totals = {name: [0, 0] for _, name in crates}
for f in data["files"]:
    path = f["filename"]
    rel = path[len(root):] if path.startswith(root) else path
    for prefix, name in crates:
        if rel.startswith(prefix):
            lines = f["summary"]["lines"]
            totals[name][0] += lines["covered"]
            totals[name][1] += lines["count"]
            break
print(f"{'crate':<14} {'lines':>8} {'covered':>8} {'line cov':>9}")
for _, name in sorted(crates, key=lambda c: c[1]):
    covered, count = totals[name]
    pct = f"{100 * covered / count:.1f}%" if count else "-"
    print(f"{name:<14} {count:>8} {covered:>8} {pct:>9}")
t = data["totals"]["lines"]
print(f"{'all':<14} {t['count']:>8} {t['covered']:>8} {t['percent']:>8.1f}%")
EOF
echo "== line coverage per crate (the files of each crate's folder, test code excluded)"
cat "$OUT/crates.txt"
echo "== html: $OUT/html/index.html; per file: $OUT/summary.txt"
if [ "$rc" -ne 0 ]; then
    echo "== cargo test failed (exit $rc): the figures above miss what the failed tests did not run"
fi
exit "$rc"
