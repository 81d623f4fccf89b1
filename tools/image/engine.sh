#!/usr/bin/env bash
# Makes a container engine answer: `docker info` works, else podman, else (as root, with apt-get)
# Debian's docker.io is installed and its daemon started in the background.
# Usage: tools/image/engine.sh [start|stop]   -> start prints the engine command (docker|podman) on stdout
#   stop: stops a dockerd that this script started (pid in $RACKFIT_ENGINE_DIR/dockerd.pid).
# There is no systemd on the project's build machines, so the daemon is started here, as the service
# would; it keeps running after a build (later builds reuse its layer cache) until `stop`.
set -euo pipefail
dir=${RACKFIT_ENGINE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rackfit/engine}
log() { echo "[engine] $*" >&2; }

stop() {
  local pid
  pid=$(cat "$dir/dockerd.pid" 2>/dev/null) || { log "no dockerd started by this script"; return 0; }
  if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = dockerd ]; then
    kill -TERM "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$dir/dockerd.pid"
}

start() {
  if docker info >/dev/null 2>&1; then echo docker; return; fi
  if command -v podman >/dev/null && podman info >/dev/null 2>&1; then echo podman; return; fi
  if [ "$(id -u)" != 0 ]; then
    log "no container engine answers (docker info, podman info) and starting one needs root:"
    log "install Docker or Podman and start it, then run this again"
    exit 3
  fi
  if ! command -v dockerd >/dev/null; then
    command -v apt-get >/dev/null || { log "no dockerd and no apt-get to install Debian's docker.io"; exit 3; }
    log "installing Debian's docker.io (dockerd, containerd, runc)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq docker.io >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; }
  fi
  mkdir -p "$dir"
  log "starting dockerd (log: $dir/dockerd.log)"
  # its own session: it outlives this script as a service would (stop with `engine.sh stop`)
  setsid dockerd >"$dir/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$dir/dockerd.pid"
  for _ in $(seq 120); do
    if docker info >/dev/null 2>&1; then echo docker; return; fi
    kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null || break
    sleep 0.5
  done
  log "dockerd did not answer within 60 s; last lines of $dir/dockerd.log:"
  tail -n 20 "$dir/dockerd.log" >&2
  exit 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
