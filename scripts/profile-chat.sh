#!/usr/bin/env bash
# A CPU profile of tern-server under paced 1:1 chat, as a flame graph SVG (issue 12 part 1).
#
# The server is pinned to CPU 0 and the load generator to CPU 1 (as in BENCHMARKS.md); perf
# samples the server process (every thread: the shards and the storage writer each show as
# their own root, by thread name) for a few seconds in the middle of the measured window.
# This kernel has no hardware counters, so the event is cpu-clock.
#
# Usage: scripts/profile-chat.sh [--rate R] [--users N] [--seconds S] [--name NAME] [--out DIR]
# Writes DIR/NAME.svg (the flame graph), DIR/NAME.folded (collapsed stacks) and DIR/NAME.json
# (the load generator's report). Needs perf (Debian `linux-perf`) and inferno (installed with
# cargo when missing).
set -euo pipefail

RATE=4500
USERS=200
SECONDS_SAMPLED=4
NAME="chat"
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE="$2"; shift 2 ;;
        --users) USERS="$2"; shift 2 ;;
        --seconds) SECONDS_SAMPLED="$2"; shift 2 ;;
        --name) NAME="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/benches/results}"
mkdir -p "$OUT"
command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
if ! command -v inferno-flamegraph >/dev/null; then
    echo "installing inferno 0.12.8 (flame graphs)" >&2
    cargo install --locked inferno --version 0.12.8
fi

echo "building release binaries" >&2
cargo build --release -q -p tern-server -p tern-loadgen

TMP="$(mktemp -d)"
LOADGEN_PID=""
cleanup() {
    [ -n "$LOADGEN_PID" ] && kill "$LOADGEN_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# 2 s warm-up + 12 s measured; perf samples S seconds from 7 s after the server started.
taskset -c 1 target/release/tern-loadgen chat --spawn-server --server-cpu 0 \
    --users "$USERS" --rate "$RATE" --duration 12s --warmup 2s --no-progress \
    --json "$OUT/$NAME.json" >"$TMP/loadgen.log" 2>&1 &
LOADGEN_PID=$!

SERVER_PID=""
for _ in $(seq 1 300); do
    # taskset execs the server, so the load generator's child is the server itself.
    # (Its first child is `tern-server --help`, which it reads for the flags: skip that one.)
    SERVER_PID="$(pgrep -P "$LOADGEN_PID" -f -- "--listen" | head -1 || true)"
    [ -n "$SERVER_PID" ] && break
    sleep 0.1
done
[ -n "$SERVER_PID" ] || { echo "no server process found" >&2; cat "$TMP/loadgen.log" >&2; exit 1; }
# Start-up, logins (a second or two for 200 users) and the 2 s warm-up come first: sample
# well inside the 12 s measured window.
sleep 7
echo "sampling server pid $SERVER_PID for ${SECONDS_SAMPLED}s" >&2
perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" \
    -o "$TMP/perf.data" -- sleep "$SECONDS_SAMPLED" 2>"$TMP/perf.log" || {
    cat "$TMP/perf.log" >&2
    exit 1
}
wait "$LOADGEN_PID" || { echo "load generator failed" >&2; tail -20 "$TMP/loadgen.log" >&2; exit 1; }
LOADGEN_PID=""

perf script -i "$TMP/perf.data" 2>/dev/null | inferno-collapse-perf >"$OUT/$NAME.folded"
inferno-flamegraph --title "tern-server, loadgen chat $USERS users at $RATE msgs/s ($(git rev-parse --short HEAD))" \
    <"$OUT/$NAME.folded" >"$OUT/$NAME.svg"

# Share of samples per thread (the root frame is the thread name).
python3 - "$OUT/$NAME.folded" <<'EOF'
import collections, sys
by_thread = collections.Counter()
total = 0
for line in open(sys.argv[1]):
    stack, _, n = line.rpartition(" ")
    n = int(n)
    by_thread[stack.split(";", 1)[0]] += n
    total += n
for thread, n in by_thread.most_common():
    print(f"{thread}: {100 * n / total:.1f}% of {total} samples")
EOF
grep -h "acked per server CPU" "$TMP/loadgen.log" || true
echo "wrote $OUT/$NAME.svg" >&2
