#!/usr/bin/env bash
# Runs every test of the workspace. Installs and starts what the tests need first; today that is
# only the Rust toolchain's own tools (no external services are needed yet).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The crash and CLI tests run the real binaries as child processes: build them first so the
# tests find them (and never run a stale one).
cargo build --locked -p tern-server -p tern-loadgen -p tern-cli
cargo test --locked --workspace "$@"
