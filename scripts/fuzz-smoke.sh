#!/usr/bin/env bash
# Fuzz smoke run (CI): builds every cargo-fuzz target of fuzz/ and runs each for a bounded time
# from the committed seed corpora. Fails on any crash, leak, timeout or OOM, and when the nightly
# toolchain or cargo-fuzz cannot be had (never skips silently). See fuzz/README.md.
#
#   FUZZ_SECONDS   seconds per target (default 30; 0 skips the run, saying so)
#   FUZZ_TARGETS   space-separated targets (default: all of `cargo fuzz list`)
#   FUZZ_RSS_MB    libFuzzer -rss_limit_mb (default 512)
#   FUZZ_TARGET_DIR  cargo target dir of the fuzz build (default: a cache outside the checkout,
#                  ~/.cache/tern/fuzz-target, so CI on a fresh clone reuses the sanitizer build
#                  of the dependencies; cargo still rebuilds whatever changed)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
seconds="${FUZZ_SECONDS:-30}"
rss_mb="${FUZZ_RSS_MB:-512}"
target_dir="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tern/fuzz-target}"
mkdir -p "$target_dir"

die() {
    echo "=================================================================" >&2
    echo "fuzz-smoke: FAILED: $*" >&2
    echo "=================================================================" >&2
    exit 1
}

if [ "$seconds" = 0 ]; then
    echo "== fuzz smoke run SKIPPED (FUZZ_SECONDS=0): no target was fuzzed"
    exit 0
fi

echo "== fuzz smoke run (${seconds}s per target)"
if ! cargo +nightly --version > /dev/null 2>&1; then
    die "no nightly Rust toolchain (cargo fuzz needs one; 'rustup toolchain install nightly')"
fi
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it from crates.io"
    cargo install cargo-fuzz --locked || die "could not install cargo-fuzz"
    cargo +nightly fuzz --version > /dev/null 2>&1 || die "cargo-fuzz installed but does not run"
fi

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list --fuzz-dir fuzz)}"
[ -n "$targets" ] || die "no fuzz targets found"

# The default build: release, debug assertions and overflow checks, AddressSanitizer.
cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir" ||
    die "the fuzz targets do not build"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
summary=()
passed=0
failed=0
for t in $targets; do
    seeds="fuzz/corpus/$t"
    [ -d "$seeds" ] && [ -n "$(ls -A "$seeds")" ] || die "no seed corpus in $seeds"
    # Run on a copy so the committed seeds never grow.
    work="$scratch/$t"
    mkdir -p "$work" fuzz/artifacts/"$t"
    cp "$seeds"/* "$work"/
    log="$scratch/$t.log"
    echo "-- fuzz $t"
    set +e
    cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$target_dir" "$t" "$work" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" > "$log" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
    corpus="$(ls -A "$work" | wc -l)"
    if [ "$rc" -eq 0 ] && grep -q '^Done ' "$log"; then
        passed=$((passed + 1))
        line="fuzz $t: ok, ${execs:-?} execs (${rate:-?}/s), corpus $corpus inputs, peak RSS ${rss:-?} MB"
    else
        failed=$((failed + 1))
        # The cause first (a panic's message sits above a long sanitizer stack), then the end.
        grep -m 8 -E "panicked at|^thread '|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^SUMMARY:|^Error:" "$log" -A 2 || true
        echo "..."
        tail -n 40 "$log"
        artifact="$(grep -o 'fuzz/artifacts/[^ ]*' "$log" | tail -1 || true)"
        line="fuzz $t: FAILED (exit $rc) after ${execs:-?} execs; artifact ${artifact:-none}"
        line+="; reproduce: cargo +nightly fuzz run --fuzz-dir fuzz $t ${artifact:-<artifact>}"
    fi
    echo "$line"
    summary+=("$line")
done
echo "== fuzz smoke summary"
printf '%s\n' "${summary[@]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || die "$failed fuzz target(s) failed (see above)"
