#!/usr/bin/env bash
# Supply-chain checks (issue 10 part 5): licenses, bans and sources with cargo-deny, offline,
# for the main workspace and the fuzz workspace. Config and operator notes: deny.toml.
# Advisories are not checked here: the RustSec database cannot be fetched on these machines
# (see the top of deny.toml for how operators run `cargo deny check advisories`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if ! cargo deny --version > /dev/null 2>&1; then
    echo "== cargo-deny is not installed: cargo install cargo-deny --locked"
    if ! nice -n 10 cargo install cargo-deny --locked; then
        echo "FAILED: cargo-deny is not installed and could not be installed; supply chain NOT checked" >&2
        exit 1
    fi
fi
cargo deny --version
echo "== cargo deny --offline --locked check licenses bans sources"
# --offline needs every locked crate (all targets' too, e.g. windows-sys) in the local cache, which
# a fresh machine's builds do not fetch: fetch them first (crates.io only, as the sources ban says).
cargo fetch --locked > /dev/null
cargo deny --offline --locked check licenses bans sources
echo "== cargo deny (fuzz workspace) --offline --locked check licenses bans sources"
# cargo-deny --offline needs every locked crate in the local cache; fetch is registry-only.
cargo fetch --locked --manifest-path fuzz/Cargo.toml > /dev/null
cargo deny --offline --locked --manifest-path fuzz/Cargo.toml check licenses bans sources
