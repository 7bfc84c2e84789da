#!/usr/bin/env bash
# How many session operations Redis itself can serve on this machine, on one Redis and on a
# Redis Cluster of three primaries, in the same run: the ceiling the scaling guide in the book
# compares the services' throughput against. Nothing but redis-server, redis-cli and
# redis-benchmark (Debian's redis-server / redis-tools); everything on 127.0.0.1, free ports,
# stopped on exit.
#
#   bench/redis-ceiling.sh              200,000 requests per operation and topology
#   REQUESTS=20000 bench/redis-ceiling.sh   (CI-sized smoke run)
#
# The operations are the ones a request costs (docs/src/sessions/redis-layout.md):
#   read       GETEX session:{u}:id PX <ttl>                          (GET /)
#   increment  EVAL of the store's increment script, two keys          (POST /increment)
#              (EVAL, not EVALSHA: redis-benchmark cannot load a script first; Redis caches the
#              compiled script after the first call, so the difference is the SHA1 of the body)
# with 50 clients and no pipelining, keys spread over 10,000 users. One Redis runs as compose
# runs it (append-only file, fsync every second); the cluster's nodes likewise.
set -euo pipefail

REQUESTS="${REQUESTS:-200000}"
CLIENTS="${CLIENTS:-50}"
USERS=10000
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A cluster node also needs port+10000 free (its bus).
cluster_port() {
  local port
  while :; do
    port="$(free_port)"
    if [ "$port" -lt 55535 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

start_redis() { # port dir extra-args...
  local port="$1" dir="$2"
  shift 2
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly yes \
    --appendfsync everysec "$@" >"$dir/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "redis on $port did not start" >&2
  exit 1
}

# The store's increment script (session/src/store/scripts.rs), without the cluster-only
# operation key.
INCREMENT="if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return nil end
redis.call('PEXPIRE', KEYS[2], ARGV[2], 'GT')
return redis.call('INCR', KEYS[1])"

# ops/s of one redis-benchmark command line (-q prints "<name>: <n> requests per second, ...").
bench() { # port cluster-flag command...
  local port="$1" cluster="$2"
  shift 2
  redis-benchmark -p "$port" $cluster -n "$REQUESTS" -c "$CLIENTS" -r "$USERS" -q "$@" 2>/dev/null \
    | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1
}

# Sessions to read and increment: one per user, as login leaves them.
seed() { # port cluster-flag
  redis-benchmark -p "$1" $2 -n "$USERS" -c "$CLIENTS" -r "$USERS" -q \
    SET 'session:{tag}:__rand_int__' 0 >/dev/null 2>&1
}

# redis-benchmark counts an error answer as a request: make sure there were none.
no_errors() { # port...
  local port errors
  for port in "$@"; do
    errors="$(redis-cli -p "$port" info errorstats | grep '^errorstat_' || true)"
    if [ -n "$errors" ]; then
      echo "redis-ceiling: Redis on $port answered errors: $errors" >&2
      exit 1
    fi
  done
}

measure() { # label port cluster-flag
  local label="$1" port="$2" cluster="$3"
  seed "$port" "$cluster"
  local read increment
  read="$(bench "$port" "$cluster" GETEX 'session:{tag}:__rand_int__' PX 86400000)"
  increment="$(bench "$port" "$cluster" EVAL "$INCREMENT" 2 'session:{tag}:__rand_int__' \
    'user:{tag}:sessions' 86400000 172800000)"
  echo "$label $read $increment"
}

echo "redis-ceiling: one Redis" >&2
single_port="$(free_port)"
start_redis "$single_port" "$work/single"
single="$(measure single "$single_port" "")"
no_errors "$single_port"

echo "redis-ceiling: a cluster of three primaries" >&2
nodes=()
for i in 1 2 3; do
  port="$(cluster_port)"
  start_redis "$port" "$work/node$i" --cluster-enabled yes --cluster-config-file nodes.conf
  nodes+=("127.0.0.1:$port")
done
redis-cli --cluster create "${nodes[@]}" --cluster-yes >/dev/null
first="${nodes[0]#*:}"
# Every node must call the cluster ok (and know every slot's owner) before the clients start.
for node in "${nodes[@]}"; do
  for _ in $(seq 200); do
    redis-cli -p "${node#*:}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
  done
done
cluster="$(measure cluster "$first" --cluster)"
no_errors "${nodes[@]##*:}"

read -r _ single_read single_increment <<<"$single"
read -r _ cluster_read cluster_increment <<<"$cluster"
cores="$(nproc)"
cat <<EOF

| Redis ($cores cores, $CLIENTS clients, $REQUESTS requests) | session reads/s (GETEX) | increments/s (script) |
|---|---:|---:|
| one Redis | $single_read | $single_increment |
| cluster, 3 primaries | $cluster_read | $cluster_increment |

redis_ceiling.single.read $single_read
redis_ceiling.single.increment $single_increment
redis_ceiling.cluster.read $cluster_read
redis_ceiling.cluster.increment $cluster_increment
EOF
