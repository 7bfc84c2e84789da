#!/usr/bin/env bash
# Set-up for the container smoke test (stack/tests/e2e/containers.rs), with podman standing in
# for Docker: no image registry is reachable where the tests run, Debian's packages are.
#
#   deploy/smoke.sh images BIN_DIR   build the images the compose file needs:
#       debian:bookworm-slim          made from Debian's packages (mmdebstrap), once per machine
#       one-origin-redis-standin      Redis from Debian's package, entrypoint as the official image
#       one-origin-binaries           writer, reader, gateway from BIN_DIR, stripped
#       one-origin:latest             the repository's Dockerfile, runtime stage, fed the binaries
#                                     above through `--build-arg BINARIES` (its Rust build stages
#                                     need an image from Docker Hub and are not run here)
#   deploy/smoke.sh engine SOCKET     serve podman's Docker-compatible API on SOCKET (foreground),
#                                     for Debian's docker-compose (DOCKER_HOST=unix://SOCKET)
#   deploy/smoke.sh healthchecks      run every container's health check every 2 s (foreground):
#                                     podman schedules them with systemd timers, and there is no
#                                     systemd here, so `depends_on: service_healthy` would wait
#                                     forever
#
# Podman reads deploy/smoke/containers.conf (CONTAINERS_CONF): runc, and no default ulimits (this
# sandbox cannot raise them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CONTAINERS_CONF="$here/smoke/containers.conf"

images() {
  local bin_dir="$1" work
  if ! podman image exists docker.io/library/debian:bookworm-slim; then
    work="$(mktemp -d)"
    echo "smoke: building debian:bookworm-slim from Debian's packages (about a minute)" >&2
    mmdebstrap --quiet --variant=minbase \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      bookworm "$work/rootfs.tar"
    podman import --quiet "$work/rootfs.tar" docker.io/library/debian:bookworm-slim >/dev/null
    rm -rf "$work"
  fi
  podman build --quiet --pull=never -t localhost/one-origin-redis-standin \
    -f "$here/smoke/redis.Containerfile" "$here/smoke" >/dev/null

  work="$(mktemp -d)"
  for binary in writer reader gateway; do
    strip -o "$work/$binary" "$bin_dir/$binary"
  done
  printf 'FROM scratch\nCOPY writer reader gateway /out/\n' >"$work/Containerfile"
  podman build --quiet --pull=never -t localhost/one-origin-binaries \
    -f "$work/Containerfile" "$work" >/dev/null
  rm -rf "$work"

  podman build --quiet --pull=never --build-arg BINARIES=localhost/one-origin-binaries \
    -t localhost/one-origin:latest "$root" >/dev/null
  podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -E '^(localhost/one-origin|docker.io/library/debian)' >&2
}

engine() {
  exec podman system service --time=0 "unix://$1"
}

healthchecks() {
  while true; do
    for container in $(podman ps --quiet); do
      podman healthcheck run "$container" >/dev/null 2>&1 || true
    done
    sleep 2
  done
}

case "${1:-}" in
  images) images "${2:?usage: smoke.sh images BIN_DIR}" ;;
  engine) engine "${2:?usage: smoke.sh engine SOCKET}" ;;
  healthchecks) healthchecks ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
