#!/usr/bin/env bash
# Side-by-side proxy benchmark: our gateway next to nginx, HAProxy and Caddy, all four in front
# of THE SAME writer + reader + Redis, plus the reader without any proxy ("direct"); then
# (optionally) the reference Express + connect-redis + nginx stack of ../shared/bench/peer.sh.
# Everything binds 127.0.0.1 on kernel-chosen free ports; every process started here is stopped
# by PID on exit (nothing else is ever signalled). Default run: about 2.5 minutes on 2 cores.
#
#   bench/run.sh                          build (cargo --release), measure, then the reference
#   BIN_DIR=/tmp/bin bench/run.sh         use prebuilt writer/reader/gateway from /tmp/bin
#   PEER=0 CALLGRIND=0 bench/run.sh       this stack and the peer proxies only
#   QUICK=1 bench/run.sh                  smoke check (~30 s): every step but the reference
#
# What one run does:
#   1. Redis (as docker-compose runs it: --appendonly yes, fsync everysec, --save ""), writer,
#      reader and gateway (routes/routes.toml), RUST_LOG=warn.
#   2. nginx, HAProxy and Caddy routing the same paths to the same writer/reader (bench/peers/):
#      upstream keep-alive, no access log, $PROXY_WORKERS workers/threads each. One login
#      through the gateway; the session cookie must read (200 + .user) through every proxy and
#      directly on the reader, and /login through every proxy must reach the writer.
#   3. Session reads, GET / with the cookie: wrk -t$THREADS -c$CONNECTIONS for $ROUND_DURATION s
#      after a $WARMUP s warm-up, targets gateway nginx haproxy caddy direct in turn, $ROUNDS
#      rounds (so a noisy neighbour hits all alike): req/s median + min-max, p50/p99 (mean).
#   4. CPU per request of each process (utime+stime of /proc/PID/stat, whole process tree for
#      the proxies) around every measured run: cpu_us_per_req.TARGET.{proxy,reader,redis}.
#   5. Latency at one connection (wrk -t1 -c1, $LAT_DURATION s): p50 of gateway, nginx,
#      haproxy and direct; added latency = proxy p50 - direct p50.
#   6. Increments GET /increment through the gateway with load.sh's lost-update check, and CPU
#      per request of gateway, writer and redis; optionally ($REJECT) GET / without cookie.
#   7. Redis commands per request (INFO total_commands_processed over 20 requests each).
#   8. Peak RSS (VmHWM) of every process.
#   9. Instructions per proxied GET / (callgrind, $CALLGRIND_N requests on one keep-alive
#      connection after $CALLGRIND_WARMUP): a second gateway and a single-process nginx under
#      valgrind, same routes and upstreams.
#  10. The reference (../shared/bench/peer.sh), and stack/reference ratios.
#  11. A markdown table and summary lines, then every value as "name value" lines (stdout;
#      progress on stderr). Metrics, per-round raw wrk values, configs and logs are kept in
#      bench/runs/<run>/ (git-ignored).
#  12. Charts beside the table, in the run directory (bench/charts.sh, gnuplot): reads.svg
#      (reads/s by proxy, median and range of the rounds), cpu.svg (CPU µs per read by
#      process) and increments.svg (increments/s and lost updates, ours and the reference's).
#
# env (defaults; QUICK=1 changes the ones marked q):
#   BIN_DIR          prebuilt writer/reader/gateway; unset: cargo build --release into target/
#                    (or CARGO_TARGET_DIR)
#   SHARED_BENCH     ../shared/bench (lib.sh, load.sh, peer.sh, wrk_report.lua)
#   ROUNDS=2 (q 1)   rounds of the read comparison
#   ROUND_DURATION=5 (q 1)  seconds per measured wrk run (reads, increments, reject; and the
#                    reference's runs). DURATION is ignored: lib.sh's DURATION is set from it.
#   WARMUP=1         seconds of unmeasured wrk before every measured run (0: none)
#   THREADS=2 CONNECTIONS=64 WRK_TIMEOUT=2   wrk settings of the loaded runs
#   LAT_DURATION=3 (q 1)    seconds per one-connection latency run
#   REJECT=1         also measure GET / without cookie through the gateway (0: skip)
#   CALLGRIND=1      instruction counts under valgrind (0: skip)
#   REDIS_APPENDFSYNC=everysec  Redis's fsync policy (`always`: no acknowledged write lost to a
#                    crash, at a cost this knob measures)
#   CALLGRIND_N=2000 (q 200)  requests counted; CALLGRIND_WARMUP=200 (q 50) before zeroing
#   PEER=1 (q 0)     run the reference afterwards; REDIS_BENCH_N=50000 its redis-benchmark size
#   PROXY_WORKERS=$(nproc)  nginx worker_processes, HAProxy nbthread, Caddy GOMAXPROCS
#   GATEWAY_WORKERS  passed through to both gateways when set (default: the gateway's own)
#   QUICK=0          1: the smoke-check defaults marked q above
# Debian packages missing on the machine (nginx haproxy caddy wrk jq redis-tools redis-server
# curl python3 gnuplot-nox, valgrind if CALLGRIND, nodejs npm if PEER) are installed with apt-get.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
SHARED_BENCH=$(cd "${SHARED_BENCH:-$ROOT/../shared/bench}" && pwd)

# ---- settings ----
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  : "${ROUNDS:=1}" "${ROUND_DURATION:=1}" "${LAT_DURATION:=1}" "${CALLGRIND_N:=200}"
  : "${CALLGRIND_WARMUP:=50}" "${PEER:=0}"
fi
ROUNDS=${ROUNDS:-2}
ROUND_DURATION=${ROUND_DURATION:-5}
LAT_DURATION=${LAT_DURATION:-3}
REJECT=${REJECT:-1}
CALLGRIND=${CALLGRIND:-1}
REDIS_APPENDFSYNC=${REDIS_APPENDFSYNC:-everysec}
CALLGRIND_N=${CALLGRIND_N:-2000}
CALLGRIND_WARMUP=${CALLGRIND_WARMUP:-200}
PEER=${PEER:-1}
REDIS_BENCH_N=${REDIS_BENCH_N:-50000}
PROXY_WORKERS=${PROXY_WORKERS:-$(nproc)}
export DURATION=$ROUND_DURATION WARMUP=${WARMUP:-1}

RUN_DIR=$(mkdir -p "$BENCH/runs" && mktemp -d "$BENCH/runs/proxies.$(date +%Y%m%d-%H%M%S).XXXX")
export LOG_DIR=$RUN_DIR BENCH_DIR=$SHARED_BENCH
# shellcheck source=SCRIPTDIR/../../shared/bench/lib.sh
source "$SHARED_BENCH/lib.sh" # log die metric fetch login_cookie warmup run_wrk
export DURATION THREADS CONNECTIONS WARMUP WRK_TIMEOUT
METRICS=$RUN_DIR/metrics.txt # the summary values, "name value"
RAW=$RUN_DIR/raw.txt         # every single wrk run (per round), "name value"
: >"$METRICS"
: >"$RAW"
T_START=$SECONDS

# shellcheck source=bench/procs.sh
source "$BENCH/procs.sh" # ensure_packages start stop stop_all tree_pids wait_ok

# ---- Debian packages a fresh machine lacks ----
pkgs=(nginx=nginx haproxy=haproxy caddy=caddy wrk=wrk jq=jq curl=curl redis-cli=redis-tools
  redis-benchmark=redis-tools redis-server=redis-server python3=python3 timeout=coreutils
  ps=procps openssl=openssl gnuplot=gnuplot-nox)
if [[ $CALLGRIND != 0 ]]; then pkgs+=(valgrind=valgrind callgrind_control=valgrind); fi
if [[ $PEER != 0 ]]; then pkgs+=(node=nodejs npm=npm); fi
ensure_packages "${pkgs[@]}"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  log "stopped all started processes; logs in $RUN_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- small helpers ----
# N distinct free loopback ports, chosen by the kernel (taken just before use)
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$1"
}

# render TEMPLATE OUT KEY=VALUE... : replace each ${KEY} (nothing else) in TEMPLATE
render() {
  local tpl=$1 out=$2 kv text
  text=$(<"$tpl")
  shift 2
  for kv in "$@"; do text=${text//"\${${kv%%=*}}"/"${kv#*=}"}; done
  printf '%s\n' "$text" >"$out"
}

# put NAME VALUE : a summary value (metrics file + M[NAME])
declare -A M=()
put() {
  M[$1]=$2
  metric "$1" "$2" >>"$METRICS"
}
# calc EXPR [VAR=VALUE...] : awk arithmetic, e.g. calc 'a/b' a=1 b=2
calc() {
  local expr=$1 args=() kv
  shift
  for kv in "$@"; do args+=(-v "$kv"); done
  awk "${args[@]}" "BEGIN{ print $expr }"
}
# fmt FORMAT VALUE : printf through awk ("n/a" stays "n/a")
fmt() { if [[ $2 == n/a || -z $2 ]]; then echo n/a; else awk -v v="$2" "BEGIN{printf \"$1\", v}"; fi; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mean() { printf '%s\n' "$@" | awk '{s+=$1} END{print (NR)? s/NR : 0}'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{print lo, hi}'; }

# CPU time: utime+stime (fields 14 and 15 of /proc/PID/stat, clock ticks) of a process tree
CLK_TCK=$(getconf CLK_TCK)
ticks() {
  # strip "pid (comm) " first: comm may contain spaces; field 14 is then $12
  # shellcheck disable=SC2016 # an awk program
  tree_sum "$1" stat '{sub(/^.*\) /, ""); print $12 + $13}'
}
# tree_sum PID FILE AWK: a number read by AWK from /proc/P/FILE, summed over PID's process tree
tree_sum() {
  local sum=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk "$3" "/proc/$p/$2" 2>/dev/null) || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# cpu_begin ROLE=PID... ; <measured run> ; cpu_end TARGET REQUESTS
# accumulates CPU[TARGET.ROLE] (ticks) and REQS[TARGET] over rounds
declare -A CPU=() REQS=() CPU0=()
cpu_begin() {
  local kv
  CPU0=()
  for kv in "$@"; do CPU0[${kv%%=*}]="${kv#*=} $(ticks "${kv#*=}")"; done
}
cpu_end() {
  local target=$1 reqs=$2 role pid t0
  for role in "${!CPU0[@]}"; do
    read -r pid t0 <<<"${CPU0[$role]}"
    CPU[$target.$role]=$((${CPU[$target.$role]:-0} + $(ticks "$pid") - t0))
  done
  REQS[$target]=$((${REQS[$target]:-0} + reqs))
}
# cpu_put TARGET ROLE... : cpu_us_per_req.TARGET.ROLE = sum of CPU / sum of requests
cpu_put() {
  local target=$1 role
  shift
  for role in "$@"; do
    put "cpu_us_per_req.$target.$role" "$(calc '(n > 0) ? sprintf("%.2f", t * 1e6 / hz / n) : "n/a"' \
      t="${CPU[$target.$role]:-0}" hz="$CLK_TCK" n="${REQS[$target]:-0}")"
  done
}
# peak RSS (VmHWM, kB) of a process tree
# shellcheck disable=SC2016 # an awk program
hwm() { tree_sum "$1" status '/^VmHWM:/{print $2}'; }
redis_cmds() {
  timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info stats | tr -d '\r' |
    awk -F: '$1=="total_commands_processed"{print $2}'
}

# ---- binaries ----
if [[ -n ${BIN_DIR:-} ]]; then
  BIN=$(cd "$BIN_DIR" && pwd)
  log "using prebuilt binaries in $BIN"
else
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --quiet -p writer -p reader -p gateway)
  # the target directory cargo used for this checkout (CARGO_TARGET_DIR is honoured)
  BIN=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 | jq -r .target_directory)/release
fi
for b in writer reader gateway; do [[ -x $BIN/$b ]] || die "no executable $BIN/$b"; done
log "run dir $RUN_DIR"

# ---- 1. redis, writer, reader, gateway ----
read -r REDIS_PORT WRITER_PORT READER_PORT GATEWAY_PORT ADMIN_PORT <<<"$(free_ports 5)"
mkdir -p "$RUN_DIR/redis"
start redis "$RUN_DIR/redis/stdout.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
  --appendonly yes --appendfsync "$REDIS_APPENDFSYNC" --save "" --daemonize no \
  --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis/redis.log"
for ((i = 0; i < 100; i++)); do
  [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
  sleep 0.1
done
[[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] || die "redis not ready"

export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 RUST_LOG=warn
SESSION_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') # 64 hex chars
export SESSION_SECRET
WRITER_URL=http://127.0.0.1:$WRITER_PORT
READER_URL=http://127.0.0.1:$READER_PORT
start writer "$RUN_DIR/writer.log" env WRITER_ADDR="127.0.0.1:$WRITER_PORT" "$BIN/writer"
start reader "$RUN_DIR/reader.log" env READER_ADDR="127.0.0.1:$READER_PORT" "$BIN/reader"
wait_ok writer "$WRITER_URL/healthz" 30 || die "writer not ready (see $RUN_DIR/writer.log)"
wait_ok reader "$READER_URL/healthz" 30 || die "reader not ready (see $RUN_DIR/reader.log)"

# start_gateway NAME PORT ADMIN_PORT [WRAPPER...] : a gateway on the same routes and upstreams
# (GATEWAY_WORKERS, when set, is inherited from the environment)
start_gateway() {
  local name=$1 port=$2 admin=$3
  shift 3
  start "$name" "$RUN_DIR/$name.log" env GATEWAY_ADDR="127.0.0.1:$port" \
    GATEWAY_ADMIN_ADDR="127.0.0.1:$admin" GATEWAY_ROUTES="$ROOT/routes/routes.toml" \
    WRITER_URL="$WRITER_URL" READER_URL="$READER_URL" "$@" "$BIN/gateway"
}
# The same gateway also serves HTTPS (target gateway_https), with a self-signed certificate
# made here for 127.0.0.1; curl trusts it through CURL_CA_BUNDLE, wrk does not verify.
mkdir -p "$RUN_DIR/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$RUN_DIR/tls/key.pem" -out "$RUN_DIR/tls/cert.pem" 2>"$RUN_DIR/tls/openssl.log" ||
  die "openssl could not make a certificate (see $RUN_DIR/tls/openssl.log)"
export CURL_CA_BUNDLE=$RUN_DIR/tls/cert.pem
TLS_PORT=$(free_ports 1)
start_gateway gateway "$GATEWAY_PORT" "$ADMIN_PORT" GATEWAY_TLS_ADDR="127.0.0.1:$TLS_PORT" \
  GATEWAY_TLS_CERT="$RUN_DIR/tls/cert.pem" GATEWAY_TLS_KEY="$RUN_DIR/tls/key.pem"
wait_ok gateway "http://127.0.0.1:$ADMIN_PORT/readyz" 30 || die "gateway not ready (see $RUN_DIR/gateway.log)"

# ---- 2. the peer proxies, same upstreams ----
read -r NGINX_PORT HAPROXY_PORT CADDY_PORT <<<"$(free_ports 3)"
# render_nginx DIR PORT MASTER_PROCESS WORKERS
render_nginx() {
  mkdir -p "$1"
  render "$BENCH/peers/nginx.conf.template" "$1/nginx.conf" RUN_DIR="$1" LISTEN_PORT="$2" \
    WRITER_PORT="$WRITER_PORT" READER_PORT="$READER_PORT" MASTER_PROCESS="$3" WORKER_PROCESSES="$4"
  timeout 10 nginx -t -q -p "$1" -c "$1/nginx.conf" -e "$1/error.log" || die "nginx config test failed ($1)"
}
render_nginx "$RUN_DIR/nginx" "$NGINX_PORT" on "$PROXY_WORKERS"
start nginx "$RUN_DIR/nginx/stdout.log" nginx -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf" \
  -e "$RUN_DIR/nginx/error.log"

mkdir -p "$RUN_DIR/haproxy"
render "$BENCH/peers/haproxy.cfg.template" "$RUN_DIR/haproxy/haproxy.cfg" LISTEN_PORT="$HAPROXY_PORT" \
  WRITER_PORT="$WRITER_PORT" READER_PORT="$READER_PORT" NBTHREAD="$PROXY_WORKERS"
timeout 10 haproxy -c -q -f "$RUN_DIR/haproxy/haproxy.cfg" || die "haproxy config check failed"
start haproxy "$RUN_DIR/haproxy/haproxy.log" haproxy -db -f "$RUN_DIR/haproxy/haproxy.cfg"

mkdir -p "$RUN_DIR/caddy"
render "$BENCH/peers/Caddyfile.template" "$RUN_DIR/caddy/Caddyfile" LISTEN_PORT="$CADDY_PORT" \
  WRITER_PORT="$WRITER_PORT" READER_PORT="$READER_PORT"
start caddy "$RUN_DIR/caddy/caddy.log" env HOME="$RUN_DIR/caddy" XDG_CONFIG_HOME="$RUN_DIR/caddy/config" \
  XDG_DATA_HOME="$RUN_DIR/caddy/data" GOMAXPROCS="$PROXY_WORKERS" \
  caddy run --config "$RUN_DIR/caddy/Caddyfile" --adapter caddyfile

TARGETS=(gateway gateway_https nginx haproxy caddy direct)
declare -A URL=([gateway]=http://127.0.0.1:$GATEWAY_PORT [gateway_https]=https://127.0.0.1:$TLS_PORT
  [nginx]=http://127.0.0.1:$NGINX_PORT
  [haproxy]=http://127.0.0.1:$HAPROXY_PORT [caddy]=http://127.0.0.1:$CADDY_PORT [direct]=$READER_URL)
for t in nginx haproxy caddy; do
  wait_ok "any:$t" "${URL[$t]}/healthz" 30 || die "$t not ready (see $RUN_DIR/$t/)"
done
GATEWAY=${URL[gateway]}
log "ports: redis $REDIS_PORT writer $WRITER_PORT reader $READER_PORT gateway $GATEWAY_PORT" \
  "(admin $ADMIN_PORT) nginx $NGINX_PORT haproxy $HAPROXY_PORT caddy $CADDY_PORT"

# One login through our gateway; the session must read through every proxy and on the reader.
COOKIE=$(login_cookie "$GATEWAY")
[[ -n $COOKIE ]] || die "no session cookie from $GATEWAY/login"
for t in "${TARGETS[@]}"; do
  fetch "${URL[$t]}/" "$COOKIE"
  if [[ $CODE != 200 ]] || ! jq -e '.user' <<<"$BODY" >/dev/null; then
    die "$t: GET / with the cookie: expected 200 with .user, got $CODE: $BODY"
  fi
  fetch "${URL[$t]}/"
  [[ $CODE == 401 || $CODE == 403 ]] || die "$t: GET / without cookie: expected 401/403, got $CODE"
done
# ... and /login through each peer proxy must reach the writer (its session reads too).
for t in nginx haproxy caddy; do
  c=$(login_cookie "${URL[$t]}")
  fetch "$GATEWAY/" "$c"
  [[ -n $c && $CODE == 200 ]] || die "$t: /login did not reach the writer (cookie '$c', read $CODE)"
done
log "logged in; the session reads through gateway, nginx, haproxy, caddy and on the reader"

# ---- 7. redis commands per request, through the gateway (throwaway session, 20 each) ----
PROBE_COOKIE=$(login_cookie "$GATEWAY")
fetch "$GATEWAY/increment" "$PROBE_COOKIE" # loads the script once
for probe in "read / $PROBE_COOKIE" "write /increment $PROBE_COOKIE" "reject /"; do
  read -r pname ppath pcookie <<<"$probe"
  c0=$(redis_cmds)
  for ((i = 0; i < 20; i++)); do fetch "$GATEWAY$ppath" "${pcookie:-}"; done
  c1=$(redis_cmds)
  # the second INFO call is itself counted once
  put "redis_cmds_per_req.$pname" "$(calc 'sprintf("%.2f", d / 20)' d=$((c1 - c0 - 1)))"
done

# ---- 3./4. session reads, alternating targets, CPU per request around each measured run ----
declare -A RPS=() P50=() P99=() ERRS=()
roles_of() { # ROLE=PID arguments of cpu_begin for a read target
  case $1 in
  direct) echo "reader=${PID[reader]} redis=${PID[redis]}" ;;
  gateway_https) echo "proxy=${PID[gateway]} reader=${PID[reader]} redis=${PID[redis]}" ;;
  *) echo "proxy=${PID[$1]} reader=${PID[reader]} redis=${PID[redis]}" ;;
  esac
}
for ((r = 1; r <= ROUNDS; r++)); do
  log "round $r/$ROUNDS: ${TARGETS[*]}"
  for t in "${TARGETS[@]}"; do
    warmup "${URL[$t]}/" "$COOKIE"
    # shellcheck disable=SC2046 # ROLE=PID words
    cpu_begin $(roles_of "$t")
    run_wrk "$t.read.round$r" "${URL[$t]}/" "$COOKIE" >>"$RAW"
    cpu_end "$t" "${WRK[requests]}"
    RPS[$t]+=" ${WRK[rps]}"
    P50[$t]+=" ${WRK[p50_ms]}"
    P99[$t]+=" ${WRK[p99_ms]}"
    # shellcheck disable=SC2004 # WRK is associative: expand its keys explicitly
    ERRS[$t]=$((${ERRS[$t]:-0} + ${WRK[non2xx]} + ${WRK[sock_errors]} + ${WRK[timeouts]}))
  done
done
for t in "${TARGETS[@]}"; do
  # shellcheck disable=SC2086 # word lists
  {
    read -r lo hi <<<"$(minmax ${RPS[$t]})"
    put "$t.read.rps" "$(fmt %.0f "$(median ${RPS[$t]})")"
    put "$t.read.rps_min" "$(fmt %.0f "$lo")"
    put "$t.read.rps_max" "$(fmt %.0f "$hi")"
    put "$t.read.p50_ms" "$(fmt %.3f "$(mean ${P50[$t]})")"
    put "$t.read.p99_ms" "$(fmt %.3f "$(mean ${P99[$t]})")"
  }
  put "$t.read.errors" "${ERRS[$t]}" # non-2xx + socket errors + timeouts, all rounds
  if [[ $t == direct ]]; then cpu_put "$t" reader redis; else cpu_put "$t" proxy reader redis; fi
done
for t in nginx haproxy caddy; do
  put "ratio.gateway_over_$t" "$(calc 'sprintf("%.3f", g / p)' g="${M[gateway.read.rps]}" p="${M[$t.read.rps]}")"
done
put ratio.gateway_https_over_gateway "$(calc 'sprintf("%.3f", h / g)' \
  h="${M[gateway_https.read.rps]}" g="${M[gateway.read.rps]}")"
put ratio.gateway_over_direct "$(calc 'sprintf("%.3f", g / d)' g="${M[gateway.read.rps]}" d="${M[direct.read.rps]}")"

# ---- 5. latency at one connection ----
for t in gateway nginx haproxy direct; do
  THREADS=1 CONNECTIONS=1 DURATION=$LAT_DURATION run_wrk "latency_c1.$t" "${URL[$t]}/" "$COOKIE" >>"$RAW"
  put "latency_c1.$t.p50_ms" "${WRK[p50_ms]}"
done
for t in gateway nginx haproxy; do
  put "latency_c1.$t.added_us" "$(calc 'sprintf("%.0f", (p - d) * 1000)' \
    p="${M[latency_c1.$t.p50_ms]}" d="${M[latency_c1.direct.p50_ms]}")"
done

# ---- 6. increments through the gateway, lost-update check exactly as load.sh does it ----
warm_cookie=$(login_cookie "$GATEWAY") # warm the write path on a throwaway session
if [[ -n $warm_cookie ]]; then warmup "$GATEWAY/increment" "$warm_cookie"; fi
fetch "$GATEWAY/increment" "$COOKIE"
[[ $CODE == 200 ]] || die "GET $GATEWAY/increment: expected 200, got $CODE: $BODY"
start_count=$(jq -r '.count' <<<"$BODY")
cpu_begin proxy="${PID[gateway]}" writer="${PID[writer]}" redis="${PID[redis]}"
run_wrk gateway.increment "$GATEWAY/increment" "$COOKIE" 1 >>"$RAW"
cpu_end gateway_increment "${WRK[requests]}"
sleep 1 # let increments still in flight at wrk's stop land
fetch "$GATEWAY/" "$COOKIE"
[[ $CODE == 200 ]] || die "final read: expected 200, got $CODE: $BODY"
final=$(jq -r '.count // 0' <<<"$BODY")
# shellcheck disable=SC2004 # WRK is associative: expand its keys explicitly
ok=$((${WRK[requests]} - ${WRK[non2xx]}))  # increments wrk saw completing
# shellcheck disable=SC2004
sent_ok=$((${WRK[sent]} - ${WRK[non2xx]})) # + those in flight at the stop
put gateway.increment.rps "$(fmt %.0f "${WRK[rps]}")"
for k in p50_ms p99_ms non2xx requests; do put "gateway.increment.$k" "${WRK[$k]}"; done
put gateway.increment.count_start "$start_count"
put gateway.increment.count_final "$final"
put gateway.increment.completed_ok "$ok"
put gateway.increment.sent "${WRK[sent]}"
put gateway.increment.lost_updates "$((start_count + ok - final))"
put gateway.increment.lost_updates_incl_inflight "$((start_count + sent_ok - final))"
cpu_put gateway_increment proxy writer redis

if [[ $REJECT != 0 ]]; then # GET / without cookie through the gateway
  warmup "$GATEWAY/"
  run_wrk gateway.reject "$GATEWAY/" "" >>"$RAW"
  put gateway.reject.rps "$(fmt %.0f "${WRK[rps]}")"
  for k in p50_ms p99_ms non2xx; do put "gateway.reject.$k" "${WRK[$k]}"; done
fi

# ---- 9. instructions per proxied request (callgrind; the proxy process only) ----
# cg_measure NAME PID PORT : warm-up, zero the counters, CALLGRIND_N requests, dump, stop;
# puts instr_per_req.NAME (total Ir of the dump / CALLGRIND_N). Bounded: every step has a timeout.
cg_measure() {
  local name=$1 pid=$2 port=$3 out=$RUN_DIR/callgrind/$1.out ir
  timeout 120 python3 "$BENCH/keepalive.py" 127.0.0.1 "$port" / "$COOKIE" "$CALLGRIND_WARMUP" ||
    { log "WARN callgrind $name: warm-up failed"; return 1; }
  timeout 30 callgrind_control -z "$pid" >>"$RUN_DIR/callgrind/control.log" 2>&1 ||
    { log "WARN callgrind $name: callgrind_control -z failed"; return 1; }
  timeout 300 python3 "$BENCH/keepalive.py" 127.0.0.1 "$port" / "$COOKIE" "$CALLGRIND_N" ||
    { log "WARN callgrind $name: measured requests failed"; return 1; }
  timeout 60 callgrind_control -d "$pid" >>"$RUN_DIR/callgrind/control.log" 2>&1 ||
    { log "WARN callgrind $name: callgrind_control -d failed"; return 1; }
  stop "cg_$name"
  # the dump after zeroing is OUT.1; its "summary:" (or "totals:") line is the total Ir
  ir=$(awk '$1=="summary:"||$1=="totals:"{print $2; exit}' "$out.1" 2>/dev/null || true)
  [[ -n $ir ]] || { log "WARN callgrind $name: no total in $out.1"; return 1; }
  put "instr_per_req.$name" "$(calc 'sprintf("%.0f", ir / n)' ir="$ir" n="$CALLGRIND_N")"
  log "  callgrind $name: $ir Ir / $CALLGRIND_N requests = ${M[instr_per_req.$name]} per request"
}
if [[ $CALLGRIND != 0 ]]; then
  mkdir -p "$RUN_DIR/callgrind"
  VG=(valgrind --tool=callgrind --trace-children=no)
  # a second gateway (same routes, same upstreams) under valgrind; readiness is slow there
  read -r CG_PORT CG_ADMIN <<<"$(free_ports 2)"
  log "callgrind: gateway ($CALLGRIND_WARMUP warm-up + $CALLGRIND_N counted requests)"
  start_gateway cg_gateway "$CG_PORT" "$CG_ADMIN" "${VG[@]}" --callgrind-out-file="$RUN_DIR/callgrind/gateway.out"
  if wait_ok cg_gateway "http://127.0.0.1:$CG_ADMIN/readyz" 60; then
    cg_measure gateway "${PID[cg_gateway]}" "$CG_PORT" || true
  else
    log "WARN callgrind: gateway under valgrind not ready in 60 s (see $RUN_DIR/cg_gateway.log)"
  fi
  stop cg_gateway
  # nginx in one process (master_process off: the event loop runs in the process valgrind
  # starts, no fork), same config otherwise
  read -r CG_NGINX_PORT <<<"$(free_ports 1)"
  log "callgrind: nginx, single process"
  render_nginx "$RUN_DIR/callgrind/nginx" "$CG_NGINX_PORT" off 1
  start cg_nginx "$RUN_DIR/callgrind/nginx/valgrind.log" "${VG[@]}" \
    --callgrind-out-file="$RUN_DIR/callgrind/nginx.out" \
    nginx -p "$RUN_DIR/callgrind/nginx" -c "$RUN_DIR/callgrind/nginx/nginx.conf" -e "$RUN_DIR/callgrind/nginx/error.log"
  if wait_ok cg_nginx "http://127.0.0.1:$CG_NGINX_PORT/healthz" 60; then
    cg_measure nginx "${PID[cg_nginx]}" "$CG_NGINX_PORT" || true
  else
    log "WARN callgrind: nginx under valgrind not ready in 60 s (see $RUN_DIR/callgrind/nginx/)"
  fi
  stop cg_nginx
  if [[ -n ${M[instr_per_req.gateway]:-} && -n ${M[instr_per_req.nginx]:-} ]]; then
    put ratio.instr_gateway_over_nginx "$(calc 'sprintf("%.3f", g / n)' \
      g="${M[instr_per_req.gateway]}" n="${M[instr_per_req.nginx]}")"
  fi
fi

# ---- 8. peak RSS, then the logout check ----
for name in gateway writer reader redis nginx haproxy caddy; do
  put "rss_peak_kb.$name" "$(hwm "${PID[$name]}")"
done
fetch "$GATEWAY/logout" "$COOKIE"
lo=$CODE
fetch "$GATEWAY/" "$COOKIE"
put check.logout_ok "$([[ $lo == 200 && ($CODE == 401 || $CODE == 403) ]] && echo 1 || echo 0)"

{
  metric meta.nproc "$(nproc)"
  metric meta.rounds "$ROUNDS"
  metric meta.round_duration_s "$ROUND_DURATION"
  metric meta.warmup_s "$WARMUP"
  metric meta.threads "$THREADS"
  metric meta.connections "$CONNECTIONS"
  metric meta.lat_duration_s "$LAT_DURATION"
  metric meta.proxy_workers "$PROXY_WORKERS"
  metric meta.gateway_workers "${GATEWAY_WORKERS:-default}"
  metric meta.clk_tck "$CLK_TCK"
  metric meta.callgrind_n "$([[ $CALLGRIND != 0 ]] && echo "$CALLGRIND_N" || echo 0)"
  metric meta.rustc "$(rustc --version 2>/dev/null | awk '{print $2}' || true)"
  metric meta.redis "$(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')"
  metric meta.redis_appendfsync "$REDIS_APPENDFSYNC"
  metric meta.nginx "$(nginx -v 2>&1 | sed 's|.*/||')"
  metric meta.haproxy "$(haproxy -v | awk 'NR==1{print $3}')"
  metric meta.caddy "$(caddy version | awk '{print $1}')"
  metric meta.wrk "$(wrk -v 2>&1 | head -n1 | awk '{print $2}')"
} >>"$METRICS"

# ---- 10. the reference stack (Express + connect-redis behind nginx) ----
# peer.sh starts its own Redis without persistence (no AOF), unlike ours above: this favours
# the reference slightly on writes.
if [[ $PEER != 0 ]]; then
  stop_all
  log "reference stack: $SHARED_BENCH/peer.sh (${ROUND_DURATION}s runs)"
  if DURATION=$ROUND_DURATION WARMUP=$WARMUP THREADS=$THREADS CONNECTIONS=$CONNECTIONS \
    WRK_TIMEOUT=$WRK_TIMEOUT REDIS_BENCH_N=$REDIS_BENCH_N RUN_DIR=$RUN_DIR/peer \
    timeout -k 10 300 "$SHARED_BENCH/peer.sh" >"$RUN_DIR/peer.out"; then
    sed -n '/=== SUMMARY/,$p' "$RUN_DIR/peer.out" | grep -v '^===' | sed 's/^/reference./' >>"$METRICS"
    while read -r k v; do M[$k]=$v; done < <(grep '^reference\.' "$METRICS")
    put ratio.stack_over_reference.read "$(calc 'sprintf("%.2f", g / p)' \
      g="${M[gateway.read.rps]}" p="${M[reference.proxy.read.rps]:-0}")"
    put ratio.stack_over_reference.increment "$(calc 'sprintf("%.2f", g / p)' \
      g="${M[gateway.increment.rps]}" p="${M[reference.proxy.write.rps]:-0}")"
  else
    log "WARN reference run failed (see $RUN_DIR/peer/ and $RUN_DIR/peer.out)"
  fi
fi
metric meta.elapsed_s "$((SECONDS - T_START))" >>"$METRICS"

# ---- 11. report ----
v() { echo "${M[$1]:-n/a}"; }
proxy_col() { if [[ $t == direct ]]; then echo "–"; else "$@"; fi; } # no proxy on "direct"
mb() { if [[ -n ${M[$1]:-} ]]; then fmt %.1f "$(calc 'k / 1024' k="${M[$1]}")"; else echo "–"; fi; }
{
  echo "## Proxies in front of the same reader: GET / with a session cookie"
  echo
  echo "wrk -t$THREADS -c$CONNECTIONS, ${ROUND_DURATION} s per run after ${WARMUP} s warm-up, $ROUNDS round(s)" \
    "alternating targets; $(nproc) cores shared by wrk, proxy, services and Redis."
  echo
  echo "| target | reads/s (median) | range | p50 ms | p99 ms | peak RSS MB | proxy CPU µs/req | reader CPU µs/req | redis CPU µs/req |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    printf '| %s | %s | %s – %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$(v "$t.read.rps")" \
      "$(v "$t.read.rps_min")" "$(v "$t.read.rps_max")" "$(v "$t.read.p50_ms")" "$(v "$t.read.p99_ms")" \
      "$(proxy_col mb "rss_peak_kb.$t")" "$(proxy_col v "cpu_us_per_req.$t.proxy")" \
      "$(v "cpu_us_per_req.$t.reader")" "$(v "cpu_us_per_req.$t.redis")"
  done
  echo
  echo "- HTTPS (the same gateway, TLS 1.3 + HTTP/1.1 from wrk, connections kept alive): reads/s" \
    "$(v gateway_https.read.rps), $(v ratio.gateway_https_over_gateway) of plain HTTP"
  echo "- reads/s gateway ÷ nginx $(v ratio.gateway_over_nginx), ÷ haproxy $(v ratio.gateway_over_haproxy)," \
    "÷ caddy $(v ratio.gateway_over_caddy), ÷ direct $(v ratio.gateway_over_direct); read errors" \
    "(non-2xx + socket + timeouts): $(for t in "${TARGETS[@]}"; do printf '%s %s ' "$t" "$(v "$t.read.errors")"; done)"
  echo "- latency at 1 connection, p50: direct $(v latency_c1.direct.p50_ms) ms; added by" \
    "gateway $(v latency_c1.gateway.added_us) µs, nginx $(v latency_c1.nginx.added_us) µs," \
    "haproxy $(v latency_c1.haproxy.added_us) µs"
  echo "- increments through the gateway: $(v gateway.increment.rps) req/s, p50 $(v gateway.increment.p50_ms) ms," \
    "p99 $(v gateway.increment.p99_ms) ms; lost updates $(v gateway.increment.lost_updates) of" \
    "$(v gateway.increment.completed_ok) (incl. in flight $(v gateway.increment.lost_updates_incl_inflight));" \
    "CPU µs/req gateway $(v cpu_us_per_req.gateway_increment.proxy), writer $(v cpu_us_per_req.gateway_increment.writer)," \
    "redis $(v cpu_us_per_req.gateway_increment.redis)"
  if [[ $REJECT != 0 ]]; then
    echo "- reject (no cookie) through the gateway: $(v gateway.reject.rps) req/s, p50 $(v gateway.reject.p50_ms) ms"
  fi
  echo "- Redis commands per request read / write / reject: $(v redis_cmds_per_req.read) /" \
    "$(v redis_cmds_per_req.write) / $(v redis_cmds_per_req.reject)"
  echo "- peak RSS MB: writer $(mb rss_peak_kb.writer), reader $(mb rss_peak_kb.reader), redis $(mb rss_peak_kb.redis)"
  if [[ $CALLGRIND != 0 ]]; then
    echo "- instructions per proxied GET / (callgrind, $CALLGRIND_N requests, 1 keep-alive connection):" \
      "gateway $(v instr_per_req.gateway), nginx $(v instr_per_req.nginx) (ratio $(v ratio.instr_gateway_over_nginx))"
  fi
  if [[ $PEER != 0 ]]; then
    echo "- reference (Express + connect-redis behind nginx, Redis without AOF): read $(v reference.proxy.read.rps)" \
      "req/s, write $(v reference.proxy.write.rps) req/s (lost updates $(v reference.proxy.write.lost_updates));" \
      "this stack ÷ reference: read $(v ratio.stack_over_reference.read), increment $(v ratio.stack_over_reference.increment)"
  fi
  echo
  echo "=== name value ==="
  cat "$METRICS"
} | tee "$RUN_DIR/report.md"

# ---- 12. charts (SVG) beside the table; a chart that cannot be drawn is no failed run ----
"$BENCH/charts.sh" "$RUN_DIR" || log "WARN charts: see the lines above (bench/charts.sh $RUN_DIR to retry)"
