#!/usr/bin/env bash
# Runs every test of the workspace, then the fuzz smoke run. Installs and starts what the tests
# need first: Redis and a Cassandra 5.0 CQL node on loopback (scripts/services.sh, see
# docs/testing.md), and the Rust toolchains' own tools (stable for the tests, nightly and
# cargo-fuzz, installed by scripts/fuzz-smoke.sh if missing, for the fuzzers).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Start the servers first so Cassandra's ~15-40 s startup overlaps the build. Whatever already
# listens on their ports (a developer's running instance) is used and left alone: this run tags
# what it starts with its PID and stops only that, at exit, however it exits.
export TERN_SERVICES_OWNER="test.sh-$$"
trap 'bash scripts/services.sh stop' EXIT
bash scripts/services.sh start
# The crash and CLI tests run the real binaries as child processes: build them first so the
# tests find them (and never run a stale one).
cargo build --locked -p tern-server -p tern-loadgen -p tern-cli
bash scripts/services.sh wait
eval "$(bash scripts/services.sh env)"
cargo test --locked --workspace "$@"
# The fuzzers need neither server: give their CPU and memory back now.
bash scripts/services.sh stop
# Fuzz smoke run: every fuzz target of fuzz/ for FUZZ_SECONDS (default 30) from the committed
# seeds; fails on a crash, leak, timeout or OOM, and loudly when nightly or cargo-fuzz is missing.
bash scripts/fuzz-smoke.sh
