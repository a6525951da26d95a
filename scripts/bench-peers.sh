#!/usr/bin/env bash
# Tern and its peers side by side (issue 12 part 5), in one invocation, at one fixed offered rate,
# with the same pinning for every peer (server on --server-cpu, load driver on --driver-cpu):
#
#   tern       tern-loadgen chat --spawn-server (durable before ack and before delivery)
#   relay      target/release/quinn-relay: bare quinn relaying frames, no application, paced
#   nats-core  Debian's nats-server (2.9.x), core publish/subscribe, no persistence
#   nats-js    nats-server v2.15.3 (built with `go install`), JetStream file stream with
#              `sync_interval: always`, every publish waiting for its PubAck
#
# The NATS load driver is scripts/natsbench (Go, nats.go v1.56.0): the same 1:1 pairs and rate.
# Every server listens on 127.0.0.1 only. Raw JSON per peer goes to the results directory; one
# table is printed at the end (and saved as table.md there).
#
# This is a benchmark, not a test: it is not part of scripts/test.sh or CI. It installs
# nats-server with apt-get (when missing) and builds what it needs (cargo, go), saying so.
#
#   bash scripts/bench-peers.sh [--rate 4500] [--users 200] [--payload 200] [--duration 10]
#        [--warmup 2] [--out DIR] [--peers "tern relay nats-core nats-js"] [--no-build]
#        [--server-cpu 0] [--driver-cpu 1] [--quiet-wait 30] [--grace 60] [--timeout 180]
#
# --grace: how long a driver waits after its last send for what is still in flight (a peer
# that falls behind the offered rate drains its backlog then; what has not arrived by the end
# is counted as not delivered). Each run is killed after warm-up + duration + grace + --timeout.
set -euo pipefail

RATE=4500
USERS=200
PAYLOAD=200
DURATION=10
WARMUP=2
OUT=""
PEERS="tern relay nats-core nats-js"
BUILD=1
SERVER_CPU=0
DRIVER_CPU=1
QUIET_WAIT=30
GRACE=60
TIMEOUT=180
NATS_JS_VERSION=v2.15.3

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rate) RATE="$2"; shift 2 ;;
        --users) USERS="$2"; shift 2 ;;
        --payload) PAYLOAD="$2"; shift 2 ;;
        --duration) DURATION="${2%s}"; shift 2 ;;
        --warmup) WARMUP="${2%s}"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --peers) PEERS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --server-cpu) SERVER_CPU="$2"; shift 2 ;;
        --driver-cpu) DRIVER_CPU="$2"; shift 2 ;;
        --quiet-wait) QUIET_WAIT="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --grace) GRACE="${2%s}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-peers: unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
if (( USERS < 2 || USERS % 2 )); then
    echo "bench-peers: --users must be even and >= 2" >&2
    exit 1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ -n "$OUT" ]] || OUT="benches/results/peers-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BIN="$ROOT/target/bench-peers"
mkdir -p "$BIN"
say() { echo "bench-peers: $*" >&2; }

# Everything this script starts is killed on exit.
PIDS=()
TMPS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    for p in "${TMPS[@]}"; do
        rm -rf "$p"
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in taskset timeout python3; do
    command -v "$tool" >/dev/null || { say "needs $tool"; exit 1; }
done
if (( $(nproc) < 2 )); then
    say "warning: fewer than 2 CPUs; pinning server and driver to different CPUs is impossible"
fi
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# --- builds --------------------------------------------------------------------------------
needs() { [[ " $PEERS " == *" $1 "* ]]; }
if (( BUILD )); then
    say "building tern-server, tern-loadgen and quinn-relay (cargo build --release, nice 10)"
    nice -n 10 cargo build --release -q -p tern-server -p tern-loadgen
    nice -n 10 cargo build --release -q -p tern-benches --bin quinn-relay
fi
# Copies of the binaries, so that every peer of this invocation runs the same build even if
# someone rebuilds target/release meanwhile; what they were built from goes with the results.
if needs tern || needs relay; then
    for b in tern-server tern-loadgen quinn-relay; do
        [[ -x "target/release/$b" ]] || { say "target/release/$b missing (run without --no-build)"; exit 1; }
        cp "target/release/$b" "$BIN/$b"
    done
    {
        echo "HEAD $(git rev-parse HEAD 2>/dev/null || echo unknown)"
        echo "binaries: $(stat -c '%y %n' target/release/tern-server target/release/tern-loadgen target/release/quinn-relay | tr '\n' ';')"
        echo "uncommitted changes in the tree the binaries were built from (git status --short):"
        git status --short -- server client-sdk protocol loadgen benches 2>/dev/null || true
    } >"$OUT/build.txt"
fi
if needs nats-core || needs nats-js; then
    command -v go >/dev/null || { say "needs Go (>= 1.26) for the NATS driver"; exit 1; }
    if (( BUILD )) || [[ ! -x "$BIN/natsbench" ]]; then
        say "building the NATS load driver (scripts/natsbench, go build)"
        (cd scripts/natsbench && nice -n 10 go build -o "$BIN/natsbench" .)
    fi
fi
DEB_NATS=""
if needs nats-core || needs nats-js; then
    if ! command -v nats-server >/dev/null; then
        say "installing Debian's nats-server (apt-get install -y nats-server)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server >&2 \
            || { as_root apt-get update -q >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server >&2; }
    fi
    DEB_NATS="$(command -v nats-server)"
    # The Debian package may have started a system service; this script does not use it (it
    # starts its own servers on free loopback ports).
fi
JS_NATS="$DEB_NATS"
JS_NOTE=""
if needs nats-js; then
    # Does this nats-server accept `jetstream { sync_interval: always }` (fsync every write)?
    probe="$(mktemp -d)"
    TMPS+=("$probe")
    printf 'listen: 127.0.0.1:0\njetstream { store_dir: "%s", sync_interval: always }\n' "$probe/js" >"$probe/js.conf"
    deb_version="$("$DEB_NATS" --version 2>&1 | head -1)"
    if "$DEB_NATS" -t -c "$probe/js.conf" >"$probe/t.log" 2>&1; then
        JS_NOTE="$deb_version (Debian) with jetstream sync_interval: always"
    else
        why="$(grep -o 'unknown field "sync_interval"' "$probe/t.log" | head -1 || true)"
        [[ -n "$why" ]] || why="$(head -1 "$probe/t.log")"
        say "Debian's $deb_version rejects sync_interval: always ($why)"
        if [[ ! -x "$BIN/nats-server" ]] || ! "$BIN/nats-server" --version 2>&1 | grep -q "${NATS_JS_VERSION#v}"; then
            say "building nats-server $NATS_JS_VERSION (GOBIN=$BIN go install github.com/nats-io/nats-server/v2@$NATS_JS_VERSION, nice 10)"
            (cd "$probe" && GOBIN="$BIN" nice -n 10 go install "github.com/nats-io/nats-server/v2@$NATS_JS_VERSION")
        fi
        JS_NATS="$BIN/nats-server"
        "$JS_NATS" -t -c "$probe/js.conf" >/dev/null 2>&1 \
            || { say "$JS_NATS does not accept sync_interval: always either"; exit 1; }
        JS_NOTE="nats-server $("$JS_NATS" --version 2>&1 | grep -oE 'v[0-9]+\.[0-9.]+' | head -1) built with go install (Debian's ${deb_version#nats-server: } rejects sync_interval), jetstream sync_interval: always"
    fi
    say "JetStream server: $JS_NOTE"
fi

# --- helpers -------------------------------------------------------------------------------
# Waits (at most QUIET_WAIT s) until both CPUs are >= 90% idle over a second; says how idle.
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) idle
    while :; do
        idle="$(python3 - <<'EOF'
import time
def snap():
    f = [float(x) for x in open('/proc/stat').readline().split()[1:]]
    return f[3] + f[4], sum(f[:8])
a = snap(); time.sleep(1); b = snap()
print(int(100 * (b[0] - a[0]) / max(b[1] - a[1], 1)))
EOF
)"
        if (( idle >= 90 )) || (( SECONDS >= deadline )); then
            say "machine ${idle}% idle before the run"
            return
        fi
    done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local port="$1" i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    say "nothing listens on 127.0.0.1:$port"
    return 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

RUN_TIMEOUT=$((WARMUP + DURATION + GRACE + TIMEOUT))
PAIRS=$((USERS / 2))

# --- the peers -----------------------------------------------------------------------------
run_tern() {
    wait_quiet
    say "tern: tern-loadgen chat --spawn-server --server-cpu $SERVER_CPU --users $USERS --rate $RATE (driver on CPU $DRIVER_CPU)"
    local rc=0
    timeout -k 10 "$RUN_TIMEOUT" taskset -c "$DRIVER_CPU" "$BIN/tern-loadgen" chat \
        --spawn-server --server-bin "$BIN/tern-server" --server-cpu "$SERVER_CPU" \
        --users "$USERS" --rate "$RATE" --payload-bytes "$PAYLOAD" \
        --duration "${DURATION}s" --warmup "${WARMUP}s" --grace "${GRACE}s" --no-progress \
        --json "$OUT/tern.json" >"$OUT/tern.log" 2>&1 || rc=$?
    (( rc == 0 )) || say "tern: exit code $rc (see $OUT/tern.log)"
}

run_relay() {
    wait_quiet
    say "relay: quinn-relay, $PAIRS pairs, $RATE frames/s of $PAYLOAD B (server thread on CPU $SERVER_CPU, client on CPU $DRIVER_CPU)"
    local rc=0
    timeout -k 10 "$RUN_TIMEOUT" taskset -c "$DRIVER_CPU" "$BIN/quinn-relay" \
        --pairs "$PAIRS" --rate "$RATE" --frame-bytes "$PAYLOAD" \
        --duration-s "$DURATION" --warmup-s "$WARMUP" --grace-s "$GRACE" \
        --server-cpu "$SERVER_CPU" --client-cpu "$DRIVER_CPU" \
        --json "$OUT/relay.json" >/dev/null 2>"$OUT/relay.log" || rc=$?
    (( rc == 0 )) || say "relay: exit code $rc (see $OUT/relay.log)"
}

# run_nats NAME MODE SERVER-BIN NOTE [config lines...]
run_nats() {
    local name="$1" mode="$2" server="$3" note="$4"
    shift 4
    local dir port pid rc=0
    dir="$(mktemp -d)"
    TMPS+=("$dir")
    port="$(free_port)"
    {
        echo "listen: 127.0.0.1:$port"
        echo "max_payload: 1MB"
        for line in "$@"; do echo "$line"; done
    } | sed "s|@DIR@|$dir|g" >"$dir/server.conf"
    cp "$dir/server.conf" "$OUT/$name.conf"
    wait_quiet
    say "$name: $note on 127.0.0.1:$port (CPU $SERVER_CPU); natsbench -mode $mode on CPU $DRIVER_CPU"
    taskset -c "$SERVER_CPU" "$server" -c "$dir/server.conf" >"$OUT/$name-server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" || { stop "$pid"; return 0; }
    timeout -k 10 "$RUN_TIMEOUT" taskset -c "$DRIVER_CPU" "$BIN/natsbench" -mode "$mode" \
        -url "nats://127.0.0.1:$port" -users "$USERS" -rate "$RATE" -payload "$PAYLOAD" \
        -duration "${DURATION}s" -warmup "${WARMUP}s" -grace "${GRACE}s" -server-pid "$pid" \
        -server-note "$note" -json "$OUT/$name.json" >/dev/null 2>"$OUT/$name.log" || rc=$?
    (( rc == 0 )) || say "$name: exit code $rc (see $OUT/$name.log)"
    stop "$pid"
}

say "results in $OUT; offered $RATE msgs/s, $USERS users ($PAIRS pairs), $PAYLOAD B, ${WARMUP}s warm-up + ${DURATION}s measured"
for peer in $PEERS; do
    case "$peer" in
        tern) run_tern ;;
        relay) run_relay ;;
        nats-core)
            run_nats nats-core core "$DEB_NATS" \
                "nats-server $("$DEB_NATS" --version 2>&1 | grep -oE 'v[0-9]+\.[0-9.]+' | head -1) (Debian), core pub/sub, no JetStream" ;;
        nats-js)
            run_nats nats-js jetstream "$JS_NATS" "$JS_NOTE" \
                'jetstream { store_dir: "@DIR@/js", sync_interval: always }' ;;
        *) say "unknown peer $peer (tern relay nats-core nats-js)"; exit 1 ;;
    esac
done

# --- the table -----------------------------------------------------------------------------
{
    dirty=""
    [[ -s "$OUT/build.txt" ]] && (( $(wc -l <"$OUT/build.txt") > 3 )) && dirty=" (plus uncommitted changes, see build.txt)"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, server on CPU $SERVER_CPU, driver on CPU $DRIVER_CPU"
    echo "offered $RATE msgs/s over $PAIRS pairs ($USERS users), $PAYLOAD B, ${WARMUP}s warm-up + ${DURATION}s measured"
    echo
    python3 - "$OUT" "$PEERS" <<'EOF'
import json, os, sys
out, peers = sys.argv[1], sys.argv[2].split()
G = {
    "tern": "durable (fsync) before ack and before delivery; per-recipient delivery state, receipts, exactly-once per device",
    "relay": "transport only (QUIC streams, TLS); no storage, no application",
    "nats-core": "none: in memory, at most once, no ack to the publisher",
    "nats-js": "durable stream, fsync per message (sync_interval: always) before PubAck; no per-recipient delivery state or receipts",
}
NAME = {"tern": "Tern (tern-loadgen chat)", "relay": "bare quinn relay (quinn-relay)",
        "nats-core": "NATS core", "nats-js": "NATS JetStream"}
FILE = {"tern": "tern.json", "relay": "relay.json", "nats-core": "nats-core.json", "nats-js": "nats-js.json"}
def load(p):
    try:
        return json.load(open(os.path.join(out, FILE[p])))
    except Exception:
        return None
def lat(d, k):
    s = (d.get("latency_us") or {}).get(k)
    if not s or not s.get("count"):
        return "–"
    f = lambda us: f"{us/1000:.2f}" if us >= 1000 else f"{us/1000:.3f}"
    return f"{f(s['p50'])} / {f(s['p99'])} / {f(s['p999'])} ms"
rows, work = [], {}
for p in peers:
    d = load(p)
    if d is None:
        rows.append((p, None)); continue
    if p == "tern":
        a, dl = d.get("acked_per_server_cpu_s") or 0, d.get("delivered_per_server_cpu_s") or 0
        w, unit = min(a, dl), "msgs acked and delivered"
        lost = f"{d.get('lost',0)} / {d.get('duplicates',0)}"
        ack = lat(d, "ack")
    elif p == "relay":
        w, unit = d.get("work_per_server_cpu_s") or 0, "frames relayed"
        lost = f"{d.get('lost',0)} / {d.get('duplicates',0)}"
        ack = "–"
    else:
        w = d.get("work_per_server_cpu_s") or 0
        unit = "msgs stored (PubAck) and delivered" if p == "nats-js" else "msgs delivered"
        lost = f"{d.get('lost',0)} / {d.get('duplicates',0)}"
        if p == "nats-js" and (d.get("not_acked") or d.get("ack_errors")):
            lost += f" (not acked {d.get('not_acked',0)}, ack errors {d.get('ack_errors',0)}, stream holds {d.get('stream_msgs','?')} of {d.get('sent',0)} sent)"
        ack = lat(d, "ack")
    work[p] = w
    rows.append((p, dict(d=d, w=w, unit=unit, lost=lost, ack=ack)))
tern = work.get("tern")
print("| peer | guarantees | offered rate | delivered/s | work per server CPU-s | server CPU-s | deliver p50 / p99 / p99.9 | ack p50 / p99 / p99.9 | not delivered / dup | Tern ÷ peer |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p, r in rows:
    if r is None:
        print(f"| {NAME.get(p,p)} | {G.get(p,'')} | – | – | no result (see its log) | – | – | – | – | – |"); continue
    d = r["d"]
    ratio = f"{tern / r['w']:.2f}" if tern and r["w"] else "–"
    print(f"| {NAME[p]} | {G[p]} | {d.get('rate_target_per_s',0):,.0f}/s | {d.get('delivered_per_s',0):,.0f} | "
          f"**{r['w']:,.0f}** {r['unit']} | {d.get('server_cpu_s') or 0:.2f} | {lat(d,'deliver')} | {r['ack']} | {r['lost']} | {ratio} |")
print()
notes = []
for p, r in rows:
    if r is None: continue
    d = r["d"]
    o = d.get("other_cpu_s")
    drv = d.get("loadgen_cpu_s", d.get("driver_cpu_s"))
    extra = f"{p}: driver CPU-s {drv:.2f}" if drv is not None else f"{p}:"
    if o is not None: extra += f", other processes' CPU-s {o:.2f}"
    if p.startswith("nats"): extra += f"; server: {d.get('server_note','')}"
    if p != "tern":
        dl = (d.get("latency_us") or {}).get("dispatch_lag") or {}
        if dl.get("count"): extra += f"; dispatch lag p50 {dl['p50']/1000:.2f} ms (latency counts from the actual publish)"
    else:
        extra += "; latency counts from the intended send time (open loop, dispatch lag included)"
    if d.get("ok") is False: extra += "; CHECK FAILED (ok=false)"
    notes.append(extra)
for n in notes: print("- " + n)
EOF
} | tee "$OUT/table.md"
