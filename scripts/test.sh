#!/usr/bin/env bash
# Runs every test of the workspace, then the fuzz smoke run. Installs and starts what the tests
# need first; today that is only the Rust toolchains' own tools (stable for the tests, nightly
# and cargo-fuzz, installed by scripts/fuzz-smoke.sh if missing, for the fuzzers).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The crash and CLI tests run the real binaries as child processes: build them first so the
# tests find them (and never run a stale one).
cargo build --locked -p tern-server -p tern-loadgen -p tern-cli
cargo test --locked --workspace "$@"
# Fuzz smoke run: every fuzz target of fuzz/ for FUZZ_SECONDS (default 30) from the committed
# seeds; fails on a crash, leak, timeout or OOM, and loudly when nightly or cargo-fuzz is missing.
bash scripts/fuzz-smoke.sh
