#!/usr/bin/env bash
# Cost guard: instructions per request, counted with callgrind, compared with
# bench/cost-baseline.toml. An instruction count does not move when the machine is busy, so CI
# can fail on a few per cent where throughput would need tens.
#
#   bench/cost.sh                   build (cargo --release), measure, compare
#   BIN_DIR=/tmp/bin bench/cost.sh  use prebuilt release writer/reader/gateway from /tmp/bin
#   UPDATE=1 bench/cost.sh          measure and write the figures into the baseline file
#
# The four figures, each the instructions of ONE process (the only one under valgrind; the
# others run natively) per request:
#   gateway_read        gateway, proxied GET / with a session cookie (gateway → reader → Redis)
#   gateway_https_read  the same gateway process, the same request over HTTPS (TLS 1.3,
#                       HTTP/1.1: the client offers no ALPN)
#   reader_read         reader, GET / with a session cookie, straight to the reader
#   writer_increment    writer, POST /increment with a session cookie, straight to the writer
# Each is counted on one keep-alive connection: $COST_WARMUP requests, then the counters are
# zeroed (callgrind_control -z), then $COST_N counted requests, then a dump (callgrind_control
# -d). The connection (and for HTTPS its handshake) is made during the warm-up, so a figure is
# the steady cost of one more request on an open connection.
#
# Left out: what runs inside tokio's park (calls into current_thread::Context::park*, summed by
# bench/callgrind_sum.py: the wait in epoll, the timer wheel, handing out I/O readiness), about
# 3,000 instructions per request. How often a runtime parks depends on whether an answer had
# already arrived when it looked, a race with the processes running natively: a few hundred
# parks more or fewer per run moved the gateway's figure by up to 1 %. So these figures are
# below bench/run.sh's callgrind figure for the same request, which counts park.
#
# Determinism: runs in a row, on a quiet machine and with two CPU hogs on its two cores, agree
# within 0.25 %. Besides leaving park out:
#   - fixed request counts, warm-up, session secret and GATEWAY_WORKERS=2; logs at warn, so
#     nothing is logged per request (as bench/run.sh runs the services);
#   - every request of a figure sends the same cookie, of one shape in every run (login below);
#     the increments count from 0 on a session logged in for them;
#   - in the counted process, glibc keeps up to 4096 freed blocks of a size in its per-thread
#     cache (GLIBC_TUNABLES=glibc.malloc.tcache_count=4096; default 7): with the default,
#     which frees overflow into the shared bins depends on the heap's history, and one
#     connection cost up to 1.7 % more than the next in the same process.
#
# Everything binds 127.0.0.1 on ports the kernel picks (port 0); the bound addresses are read
# back from the services' `listening` log lines (LOG_FORMAT=json). Redis listens on a unix
# socket only. Every process started here is stopped by PID on exit; logs and callgrind dumps
# stay in bench/runs/cost.<time>/ (git-ignored).
#
# env (defaults):
#   BIN_DIR          prebuilt writer/reader/gateway; unset: cargo build --release, in the target
#                    directory cargo uses for this checkout (CARGO_TARGET_DIR is honoured)
#   UPDATE=0         1: write the measured figures into $BASELINE (and exit 0)
#   TOLERANCE=3      per cent above its baseline at which a figure fails
#   BASELINE=bench/cost-baseline.toml
#   COST_N=2000      counted requests per figure
#   COST_WARMUP=200  requests before the counters are zeroed
# stdout: the comparison table; progress on stderr. Exit status: 0 every figure within
# TOLERANCE of its baseline (or UPDATE=1), 1 a figure rose more than TOLERANCE % (or has no
# baseline), 2 the measurement itself failed.
# Debian packages missing on the machine (valgrind jq curl openssl redis-server redis-tools
# python3) are installed with apt-get.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench

UPDATE=${UPDATE:-0}
TOLERANCE=${TOLERANCE:-3}
BASELINE=$(realpath -m "${BASELINE:-$BENCH/cost-baseline.toml}")
COST_N=${COST_N:-2000}
COST_WARMUP=${COST_WARMUP:-200}
FIGURES=(gateway_read gateway_https_read reader_read writer_increment)
declare -A WHAT=(
  [gateway_read]="gateway, proxied GET / with a session cookie (gateway -> reader -> Redis)"
  [gateway_https_read]="gateway, the same proxied GET / over HTTPS (TLS 1.3, HTTP/1.1)"
  [reader_read]="reader, GET / with a session cookie, direct"
  [writer_increment]="writer, POST /increment with a session cookie, direct"
)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }
T_START=$SECONDS

# shellcheck source=bench/procs.sh
source "$BENCH/procs.sh" # ensure_packages start stop stop_all wait_ok
ensure_packages valgrind=valgrind callgrind_control=valgrind jq=jq curl=curl openssl=openssl \
  redis-server=redis-server redis-cli=redis-tools python3=python3

RUN_DIR=$(mkdir -p "$BENCH/runs" && mktemp -d "$BENCH/runs/cost.$(date +%Y%m%d-%H%M%S).XXXX")
# Redis's socket and the services' working directory: short paths (a unix socket path must
# stay under 108 bytes, which a deep checkout may not), removed on exit
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cost.XXXXXX")
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  rm -rf "$SCRATCH"
  log "stopped all started processes; logs in $RUN_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- binaries ----
if [[ -n ${BIN_DIR:-} ]]; then
  BIN=$(cd "$BIN_DIR" && pwd)
  PROFILE="binaries from BIN_DIR (taken for a release build of this commit)"
  log "using prebuilt binaries in $BIN"
else
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -p gateway -p writer -p reader)
  BIN=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 | jq -r .target_directory)/release
  PROFILE="release profile (cargo build --release)"
fi
for b in writer reader gateway; do [[ -x $BIN/$b ]] || die "no executable $BIN/$b"; done
log "run dir $RUN_DIR"

# ---- Redis (unix socket only), writer, reader: native ----
start redis "$RUN_DIR/redis.log" redis-server --port 0 --unixsocket "$SCRATCH/redis.sock" \
  --save "" --appendonly no --daemonize no --dir "$RUN_DIR"
for ((i = 0; i < 100; i++)); do
  [[ $(timeout 2 redis-cli -s "$SCRATCH/redis.sock" ping 2>/dev/null) == PONG ]] && break
  sleep 0.1
done
[[ $(timeout 2 redis-cli -s "$SCRATCH/redis.sock" ping 2>/dev/null) == PONG ]] || die "redis not ready"

# The services read a .env file from their working directory or any parent: they run in an
# empty directory under /tmp, so that a developer's .env cannot change what is counted.
mkdir -p "$SCRATCH/cwd"
cd "$SCRATCH/cwd"
export REDIS_URL=redis+unix://$SCRATCH/redis.sock
export SESSION_SECRET=cost-guard-fixed-secret-not-for-any-deployment-0000
# Logs at warn, as bench/run.sh runs them: at info every request opens a span and writes an
# access-log line, a third of a direct read's instructions. Only the start-up lines that carry
# the bound addresses are kept: the gateway's own, and actix-server's for writer and reader
# (their `listening` line shares its target with the access log).
export LOG_FORMAT=json RUST_LOG=warn,gateway::startup=info,actix_server::server=info
export GATEWAY_WORKERS=2
SERVICE_ADDR='select(.target == "actix_server::server") | .message | capture("listening on: (?<a>[0-9.:]+)").a'
gateway_addr() { echo "select(.message == \"gateway listening\") | .$1"; }

# bound NAME JQ_FILTER TIMEOUT_S : an address read by JQ_FILTER from NAME's start-up log
# (JSON lines; valgrind's own messages go to a file of their own)
bound() {
  local name=$1 filter=$2 t=$3 i addr
  for ((i = 0; i < t * 10; i++)); do
    addr=$(grep -h '^{' "$RUN_DIR/$name.log" 2>/dev/null | jq -r "$filter // empty" 2>/dev/null |
      head -n1)
    [[ -n $addr ]] && { echo "$addr"; return 0; }
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  die "$name: no listening address in its log within $t s (see $RUN_DIR/$name.log)"
}

start writer "$RUN_DIR/writer.log" env WRITER_ADDR=127.0.0.1:0 "$BIN/writer"
start reader "$RUN_DIR/reader.log" env READER_ADDR=127.0.0.1:0 "$BIN/reader"
WRITER=$(bound writer "$SERVICE_ADDR" 30)
READER=$(bound reader "$SERVICE_ADDR" 30)
wait_ok writer "http://$WRITER/readyz" 30 || die "writer not ready (see $RUN_DIR/writer.log)"
wait_ok reader "http://$READER/readyz" 30 || die "reader not ready (see $RUN_DIR/reader.log)"

# login : a new session's cookie ("name=value"), straight from the writer, in the one shape
# every run can have. The sealed value is base64, in which '/' is sent percent-encoded (%2F):
# the services' decoding then copies and decodes from the first '%' on, so its cost depends on
# where the random value happens to hold a '/' (up to 2 % of a direct read). A value without
# '/' (about one login in 14) leaves only the padding's %3D at its fixed place at the end.
login() {
  local i cookie
  for ((i = 0; i < 500; i++)); do
    cookie=$(curl -s --max-time 5 -D - -o /dev/null "http://$WRITER/login" |
      sed -n 's/^[Ss]et-[Cc]ookie: *\([^;]*\).*/\1/p' | head -n1 | tr -d '\r')
    [[ -n $cookie ]] || die "no session cookie from $WRITER/login"
    [[ $cookie == *%2F* ]] || { echo "$cookie"; return 0; }
  done
  die "500 logins, every cookie with a '/' in it"
}
COOKIE=$(login)

# A throwaway certificate for 127.0.0.1, as bench/run.sh makes one
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$RUN_DIR/key.pem" -out "$RUN_DIR/cert.pem" 2>"$RUN_DIR/openssl.log" ||
  die "openssl could not make a certificate (see $RUN_DIR/openssl.log)"

# ---- counting ----
declare -A IR=() DUMPS=()
# start_cg NAME BINARY ENV... : BINARY under callgrind as process NAME (its dumps: NAME.out.K)
start_cg() {
  local name=$1 binary=$2
  shift 2
  DUMPS[$name]=0
  start "$name" "$RUN_DIR/$name.log" env "$@" GLIBC_TUNABLES=glibc.malloc.tcache_count=4096 \
    valgrind --tool=callgrind --trace-children=no \
    --log-file="$RUN_DIR/$name.valgrind.log" --callgrind-out-file="$RUN_DIR/$name.out" "$binary"
}
# count FIGURE NAME KEEPALIVE_ARGS... : FIGURE = instructions of process NAME per request for
# COST_N requests sent by bench/keepalive.py KEEPALIVE_ARGS (after COST_WARMUP uncounted)
count() {
  local figure=$1 name=$2 pid=${PID[$2]} dump total park
  shift 2
  log "$figure: $COST_WARMUP + $COST_N requests to $name under callgrind"
  timeout 900 python3 "$BENCH/keepalive.py" --warmup "$COST_WARMUP" \
    --between "timeout 60 callgrind_control -z $pid" "$@" "$COST_N" 120 \
    >>"$RUN_DIR/keepalive.log" 2>&1 || die "$figure: requests failed (see $RUN_DIR/keepalive.log)"
  timeout 60 callgrind_control -d "$pid" >>"$RUN_DIR/keepalive.log" 2>&1 ||
    die "$figure: callgrind_control -d failed"
  DUMPS[$name]=$((DUMPS[$name] + 1))
  dump=$RUN_DIR/$name.out.${DUMPS[$name]}
  read -r total park < <(python3 "$BENCH/callgrind_sum.py" "$dump" 'current_thread::Context::park') ||
    die "$figure: no total in $dump"
  ((park > 0)) || die "$figure: no call into tokio's park in $dump (renamed? see the header of $0)"
  IR[$figure]=$(awk -v t="$total" -v p="$park" -v n="$COST_N" 'BEGIN{printf "%.0f", (t - p) / n}')
  log "  ($total - $park in park) instructions / $COST_N = ${IR[$figure]} per request"
}

# gateway (both listeners), in front of the native writer and reader
start_cg cg_gateway "$BIN/gateway" GATEWAY_ADDR=127.0.0.1:0 GATEWAY_ADMIN_ADDR=127.0.0.1:0 \
  GATEWAY_TLS_ADDR=127.0.0.1:0 GATEWAY_TLS_CERT="$RUN_DIR/cert.pem" GATEWAY_TLS_KEY="$RUN_DIR/key.pem" \
  GATEWAY_ROUTES="$ROOT/routes/routes.toml" WRITER_URL="http://$WRITER" READER_URL="http://$READER"
GATEWAY=$(bound cg_gateway "$(gateway_addr addr)" 120)
wait_ok cg_gateway "http://$(bound cg_gateway "$(gateway_addr admin)" 10)/readyz" 120 || die "gateway not ready"
count gateway_read cg_gateway 127.0.0.1 "${GATEWAY##*:}" / "$COOKIE"
TLS=$(bound cg_gateway "$(gateway_addr https)" 10)
count gateway_https_read cg_gateway --cafile "$RUN_DIR/cert.pem" 127.0.0.1 "${TLS##*:}" / "$COOKIE"
stop cg_gateway

# a second reader, on its own port, under callgrind
start_cg cg_reader "$BIN/reader" READER_ADDR=127.0.0.1:0
CG_READER=$(bound cg_reader "$SERVICE_ADDR" 120)
wait_ok cg_reader "http://$CG_READER/readyz" 120 || die "reader under valgrind not ready"
count reader_read cg_reader 127.0.0.1 "${CG_READER##*:}" / "$COOKIE"
stop cg_reader

# a second writer; a session of its own, so every run counts up from 0
start_cg cg_writer "$BIN/writer" WRITER_ADDR=127.0.0.1:0
CG_WRITER=$(bound cg_writer "$SERVICE_ADDR" 120)
wait_ok cg_writer "http://$CG_WRITER/readyz" 120 || die "writer under valgrind not ready"
INCREMENT_COOKIE=$(login)
count writer_increment cg_writer --method POST 127.0.0.1 "${CG_WRITER##*:}" /increment "$INCREMENT_COOKIE"
stop cg_writer
stop_all
ELAPSED=$((SECONDS - T_START))

# ---- the baseline ----
# baseline FIGURE : its value in $BASELINE ("name = number" lines; # starts a comment)
baseline() {
  [[ -f $BASELINE ]] || return 0
  awk -v k="$1" '{sub(/#.*/, "")} $1==k && $2=="=" {gsub(/_/, "", $3); print $3; exit}' "$BASELINE"
}
# grouped N : 47123 -> 47,123
grouped() { printf '%s' "$1" | sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta'; }

# write_baseline : the measured figures, each with what was measured, how and at which commit
write_baseline() {
  local commit rustc cpu f
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n $(git -C "$ROOT" status --porcelain -- Cargo.toml Cargo.lock common session gateway \
    writer reader 2>/dev/null) ]]; then
    commit="$commit + uncommitted changes"
  fi
  rustc=$(rustc --version 2>/dev/null | awk '{print $2}' || echo unknown)
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  {
    echo "# Instructions per request, as bench/cost.sh counts them (its header says how): callgrind on"
    echo "# one process, $COST_N requests on one keep-alive connection after $COST_WARMUP, tokio's park left"
    echo "# out. CI fails when a figure is more than TOLERANCE (3) % above its value here. Move figures"
    echo "# on purpose with UPDATE=1 bench/cost.sh; the commit that raises one says why and by how much."
    echo "#"
    echo "# Counts depend on the compiler (rustc $rustc here), the dependencies (Cargo.lock), valgrind"
    echo "# ($(valgrind --version | sed 's/^valgrind-//')) and the CPU, whose features decide which glibc routines run"
    echo "# ($cpu): measure again after changing any of them."
    for f in "${FIGURES[@]}"; do
      echo
      echo "# ${WHAT[$f]};"
      echo "# $PROFILE, commit $commit, $(date -u +%Y-%m-%d)"
      echo "$f = ${IR[$f]}"
    done
  } >"$BASELINE"
  log "wrote $BASELINE"
}
declare -A BEFORE=()
for f in "${FIGURES[@]}"; do BEFORE[$f]=$(baseline "$f"); done
if [[ $UPDATE == 1 ]]; then write_baseline; fi

echo "Instructions per request (callgrind, $COST_N after $COST_WARMUP; tolerance +$TOLERANCE %$(
  [[ $UPDATE != 1 ]] || echo "; UPDATE=1: measured figures written to the baseline")):"
echo
printf '%-20s %12s %12s %9s  %s\n' figure baseline measured change verdict

status=0
lower=()
for f in "${FIGURES[@]}"; do
  before=${BEFORE[$f]}
  after=${IR[$f]}
  if [[ -z $before ]]; then
    printf '%-20s %12s %12s %9s  %s\n' "$f" - "$(grouped "$after")" - "no baseline"
    [[ $UPDATE == 1 ]] || status=1
    continue
  fi
  change=$(awk -v a="$after" -v b="$before" 'BEGIN{printf "%+.2f", (a - b) * 100 / b}')
  verdict=$(awk -v c="$change" -v t="$TOLERANCE" 'BEGIN{print (c > t) ? "ABOVE" : (c < -t) ? "below" : "ok"}')
  case $verdict in
  ABOVE)
    verdict="FAIL: more than $TOLERANCE % above"
    if [[ $UPDATE == 1 ]]; then verdict="more than $TOLERANCE % above, now the baseline"; else status=1; fi
    ;;
  below)
    verdict="ok, more than $TOLERANCE % below"
    if [[ $UPDATE == 1 ]]; then verdict="more than $TOLERANCE % below, now the baseline"; else lower+=("$f"); fi
    ;;
  esac
  printf '%-20s %12s %12s %8s%%  %s\n' "$f" "$(grouped "$before")" "$(grouped "$after")" "$change" "$verdict"
done
echo
for f in "${FIGURES[@]}"; do printf '  %-20s %s\n' "$f" "${WHAT[$f]}"; done
echo "  (${ELAPSED} s; logs and dumps in ${RUN_DIR#"$ROOT"/})"

if [[ $UPDATE != 1 ]] && ((${#lower[@]} > 0)); then
  echo
  echo "Cheaper than the baseline by more than $TOLERANCE %: ${lower[*]}. If that is the change you"
  echo "made, move the baseline down (UPDATE=1 bench/cost.sh) so the guard keeps the gain."
fi
if ((status != 0)); then
  echo
  echo "A figure rose more than $TOLERANCE % above ${BASELINE#"$ROOT"/} (or has none). If the"
  echo "rise is intended, run UPDATE=1 bench/cost.sh and say why and by how much in the commit."
fi
exit "$status"
