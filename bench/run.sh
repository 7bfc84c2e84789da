#!/usr/bin/env bash
# Benchmark of this stack, side by side with the reference Express + connect-redis + nginx
# stack, on the same machine in the same run. Everything binds 127.0.0.1 on free ports; every
# process started here is stopped by PID on exit.
#
#   bench/run.sh                 this stack, then the reference (needs ../shared/bench, node)
#   PEER=0 bench/run.sh          this stack only
#
# env: SHARED_BENCH (default ../shared/bench: load.sh, lib.sh, peer.sh), PEER (1), and the
#      load settings of lib.sh: DURATION=10 THREADS=2 CONNECTIONS=64 WARMUP=2 WRK_TIMEOUT=2
# stdout: "name value" metric lines (ours prefixed rust., the reference's proxy./direct.);
# progress on stderr. Services log at warn level (nginx runs without an access log).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_BENCH=$(cd "${SHARED_BENCH:-$ROOT/../shared/bench}" && pwd)
PEER=${PEER:-1}
RUN_DIR=$(mkdir -p "$ROOT/bench/runs" && mktemp -d "$ROOT/bench/runs/rust.$(date +%Y%m%d-%H%M%S).XXXX")
export LOG_DIR=$RUN_DIR BENCH_DIR=$SHARED_BENCH
# shellcheck source=/dev/null
source "$SHARED_BENCH/lib.sh"
export DURATION THREADS CONNECTIONS WARMUP WRK_TIMEOUT
need redis-server redis-cli wrk curl jq python3

METRICS=$RUN_DIR/metrics.txt
: >"$METRICS"

declare -A PID=()
cleanup() {
  local rc=$? name p i
  trap - EXIT INT TERM
  for name in gateway reader writer redis; do
    p=${PID[$name]:-}
    if [[ -z $p ]] || ! kill -0 "$p" 2>/dev/null; then continue; fi
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
  log "stopped all started processes; logs in $RUN_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$1"
}

log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p writer -p reader -p gateway)
BIN=$ROOT/target/release

read -r REDIS_PORT WRITER_PORT READER_PORT GATEWAY_PORT ADMIN_PORT <<<"$(free_ports 5)"
GATEWAY=http://127.0.0.1:$GATEWAY_PORT
READER=http://127.0.0.1:$READER_PORT

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --daemonize no --dir "$RUN_DIR" --logfile "$RUN_DIR/redis.log" &
PID[redis]=$!
for ((i = 0; i < 100; i++)); do
  [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
  sleep 0.1
done

export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 RUST_LOG=warn
SESSION_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SESSION_SECRET
WRITER_ADDR=127.0.0.1:$WRITER_PORT "$BIN/writer" >"$RUN_DIR/writer.log" 2>&1 &
PID[writer]=$!
READER_ADDR=127.0.0.1:$READER_PORT "$BIN/reader" >"$RUN_DIR/reader.log" 2>&1 &
PID[reader]=$!
wait_http "http://127.0.0.1:$WRITER_PORT/healthz" 30 || die "writer not ready"
wait_http "$READER/healthz" 30 || die "reader not ready"
GATEWAY_ADDR=127.0.0.1:$GATEWAY_PORT GATEWAY_ADMIN_ADDR=127.0.0.1:$ADMIN_PORT \
  GATEWAY_ROUTES=$ROOT/routes.toml \
  WRITER_URL=http://127.0.0.1:$WRITER_PORT READER_URL=$READER \
  "$BIN/gateway" >"$RUN_DIR/gateway.log" 2>&1 &
PID[gateway]=$!
wait_http "http://127.0.0.1:$ADMIN_PORT/readyz" 30 || die "gateway not ready"

COOKIE=$(login_cookie "$GATEWAY")
[[ -n $COOKIE ]] || die "no session cookie from $GATEWAY/login"
fetch "$GATEWAY/" "$COOKIE"
[[ $CODE == 200 ]] || die "session not shared writer->reader: $CODE $BODY"
log "logged in; session visible to the reader through the gateway"

# Redis commands per request on each path (throwaway session, 20 requests each).
redis_cmds() { redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' |
  awk -F: '$1=="total_commands_processed"{print $2}'; }
PROBE_COOKIE=$(login_cookie "$GATEWAY")
fetch "$GATEWAY/increment" "$PROBE_COOKIE" # loads the script once
for probe in "read / $PROBE_COOKIE" "write /increment $PROBE_COOKIE" "reject /"; do
  read -r pname ppath pcookie <<<"$probe"
  c0=$(redis_cmds)
  for ((i = 0; i < 20; i++)); do fetch "$GATEWAY$ppath" "${pcookie:-}"; done
  c1=$(redis_cmds)
  metric "rust.redis_cmds_per_req.$pname" \
    "$(awk -v d=$((c1 - c0 - 1)) 'BEGIN{printf "%.2f", d/20}')" >>"$METRICS"
done

TESTS=read LABEL=rust.proxy "$SHARED_BENCH/load.sh" "$GATEWAY" "$COOKIE" >>"$METRICS"
warmup "$READER/" "$COOKIE"
run_wrk rust.direct.read "$READER/" "$COOKIE" >>"$METRICS"
TESTS="write reject" LABEL=rust.proxy "$SHARED_BENCH/load.sh" "$GATEWAY" "$COOKIE" >>"$METRICS"

hwm() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo -1; }
for name in redis writer reader gateway; do
  metric "rust.rss_peak_kb.$name" "$(hwm "${PID[$name]}")" >>"$METRICS"
done

fetch "$GATEWAY/logout" "$COOKIE"
lo=$CODE
fetch "$GATEWAY/" "$COOKIE"
metric rust.check.logout_ok "$([[ $lo == 200 && $CODE == 401 ]] && echo 1 || echo 0)" >>"$METRICS"
get() { awk -v k="$1" '$1==k{print $2}' "$METRICS" | tail -n1; }
metric rust.proxy_overhead_ratio "$(awk -v d="$(get rust.direct.read.rps)" -v p="$(get rust.proxy.read.rps)" \
  'BEGIN{printf "%.3f", (p>0)? d/p : 0}')" >>"$METRICS"
{
  metric meta.nproc "$(nproc)"
  metric meta.duration_s "$DURATION"
  metric meta.threads "$THREADS"
  metric meta.connections "$CONNECTIONS"
  metric meta.rustc "$(rustc --version | awk '{print $2}')"
  metric meta.redis "$(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')"
} >>"$METRICS"

cleanup_ours() {
  local name p
  for name in gateway reader writer redis; do
    p=${PID[$name]:-}
    [[ -n $p ]] && kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
    unset "PID[$name]"
  done
  return 0
}

if [[ $PEER == 1 ]]; then
  cleanup_ours
  log "reference stack (Express + connect-redis + nginx): $SHARED_BENCH/peer.sh"
  RUN_DIR=$RUN_DIR/peer "$SHARED_BENCH/peer.sh" | sed -n '/=== SUMMARY/,$p' | grep -v '^===' >>"$METRICS"
fi

echo "=== SUMMARY (name value) ==="
cat "$METRICS"
