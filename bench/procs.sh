# shellcheck shell=bash
# Helpers shared by bench/run.sh and bench/cost.sh (source it; do not execute): Debian packages a
# fresh machine lacks, and process bookkeeping in which only PIDs started here are ever signalled.
# The sourcing script defines log (a line on stderr) first.

# ensure_packages COMMAND=PACKAGE... : apt-get install the packages whose command is missing
ensure_packages() {
  local kv missing=() sudo=()
  for kv in "$@"; do
    command -v "${kv%%=*}" >/dev/null 2>&1 || missing+=("${kv#*=}")
  done
  ((${#missing[@]} > 0)) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ((EUID != 0)); then sudo=(sudo); fi
  log "installing missing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

declare -A PID=()
STARTED=() # names in start order; stopped in reverse

# start NAME LOGFILE CMD... : run CMD in the background, remember its PID under NAME
start() {
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  PID[$name]=$!
  STARTED+=("$name")
}

# PID and all its descendants (nginx workers, anything HAProxy may fork)
tree_pids() {
  local c
  echo "$1"
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$c"; done
}

# stop NAME : SIGTERM the process, wait (bounded), SIGKILL; then the same for any descendant
# still alive (e.g. nginx workers whose master had to be killed). Names starting with cg_ run
# under valgrind, which writes its last dump on the way out: they get 30 s instead of 5.
stop() {
  local name=$1 p=${PID[$1]:-} pids i q grace=50
  [[ -n $p ]] || return 0
  unset "PID[$name]"
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
  [[ $name == cg_* ]] && grace=300
  pids=$(tree_pids "$p")
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < grace; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  wait "$p" 2>/dev/null || true
  for q in $pids; do
    [[ $q == "$p" ]] && continue
    kill -0 "$q" 2>/dev/null || continue
    kill -TERM "$q" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$q" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$q" 2>/dev/null || true
  done
}

# stop_all : stop every process started here, the last started first
stop_all() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop "${STARTED[$i]}"; done
  STARTED=()
}

# wait_ok NAME URL TIMEOUT_S : until URL answers 200 (ANY status if NAME is prefixed with
# "any:"); gives up early if the process started as NAME has exited
wait_ok() {
  local name=${1#any:} url=$2 t=$3 i code
  for ((i = 0; i < t * 10; i++)); do
    code=$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "$url" || true)
    [[ $code == 200 || ($1 == any:* && $code != 000 && -n $code) ]] && return 0
    kill -0 "${PID[$name]}" 2>/dev/null || { log "$name exited"; return 1; }
    sleep 0.1
  done
  return 1
}
