#!/usr/bin/env bash
# Server instructions per message, counted by valgrind's callgrind (issue 12 part 6).
#
# Instruction counts repeat on a noisy shared machine where times do not, so this is the figure
# to compare a change against (BENCHMARKS.md "Instructions per message"). Not a CI assertion.
#
# Method: two runs of the same paced 1:1 chat (same users, same duration, no warm-up), at a low
# and a high rate, each with the server under callgrind. The server's total instruction count
# covers start-up, logins, keep-alives and shutdown as well as the messages; the difference of
# the two totals divided by the difference in messages acknowledged is the marginal cost of one
# message (send, commit, push, ack, receipt), with everything fixed cancelled out.
#
# Usage: scripts/callgrind-chat.sh [--users N] [--low R] [--high R] [--duration S] [--out DIR]
# Needs: valgrind (Debian `valgrind`), python3. Builds the release binaries.
set -euo pipefail

USERS=20
LOW=10
HIGH=40
DURATION=20
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --users) USERS="$2"; shift 2 ;;
        --low) LOW="$2"; shift 2 ;;
        --high) HIGH="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/benches/results/callgrind-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }

echo "building release binaries" >&2
cargo build --release -q -p tern-server -p tern-loadgen

# The load generator spawns the server through this wrapper: `--help` (which it reads to learn
# the flags) runs the real binary, everything else runs it under callgrind.
WRAP="$OUT/tern-server-callgrind"
cat > "$WRAP" <<EOF
#!/bin/sh
if [ "\$1" = "--help" ]; then exec "$ROOT/target/release/tern-server" --help; fi
exec valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.\$TERN_CALLGRIND_RUN.out" \\
    "$ROOT/target/release/tern-server" "\$@"
EOF
chmod +x "$WRAP"

run() {
    local name="$1" rate="$2"
    echo "run $name: $USERS users, $rate msgs/s, ${DURATION}s, server under callgrind" >&2
    TERN_CALLGRIND_RUN="$name" timeout 600 target/release/tern-loadgen chat \
        --spawn-server --server-bin "$WRAP" --users "$USERS" --rate "$rate" \
        --duration "${DURATION}s" --warmup 0s --grace 30s --no-progress --server-stop-grace 120s \
        --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || {
        echo "run $name failed; see $OUT/$name.log" >&2
        tail -20 "$OUT/$name.log" >&2
        exit 1
    }
}

run low "$LOW"
run high "$HIGH"

python3 - "$OUT" <<'EOF'
import json, re, sys
out = sys.argv[1]
def total(name):
    with open(f"{out}/callgrind.{name}.out") as f:
        for line in f:
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise SystemExit(f"no totals in callgrind.{name}.out")
rows = {}
for name in ("low", "high"):
    r = json.load(open(f"{out}/{name}.json"))
    rows[name] = (total(name), r["acked"], r["delivered"], r["lost"], r["duplicates"])
(il, al, dl, ll, xl), (ih, ah, dh, lh, xh) = rows["low"], rows["high"]
if ll or lh or xl or xh:
    raise SystemExit(f"delivery check failed: lost {ll}/{lh}, duplicates {xl}/{xh}")
if ah <= al:
    raise SystemExit(f"the high run acknowledged no more messages ({ah} <= {al})")
per = (ih - il) / (ah - al)
print(f"| run | messages acked | delivered | server instructions (Ir) |")
print(f"|---|---|---|---|")
print(f"| low | {al:,} | {dl:,} | {il:,} |")
print(f"| high | {ah:,} | {dh:,} | {ih:,} |")
print()
print(f"**{per:,.0f} server instructions per message** (marginal: (Ir_high - Ir_low) / (acked_high - acked_low))")
json.dump({"low": rows["low"], "high": rows["high"], "instructions_per_message": per},
          open(f"{out}/summary.json", "w"))
EOF
echo "raw: $OUT (callgrind_annotate $OUT/callgrind.high.out for where they go)" >&2
