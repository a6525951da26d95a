#!/usr/bin/env bash
# Runs every test of the workspace. Installs and starts what the tests need first; today that is
# only the Rust toolchain's own tools (no external services are needed yet).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The crash test runs the real binary as a child process: build it first so the test finds it.
cargo build --locked -p tern-server -p tern-loadgen
cargo test --locked --workspace "$@"
