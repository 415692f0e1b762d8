#!/usr/bin/env bash
# A Docker engine for building and running mergefront's images, on a machine where none runs.
#   eval "$(docker/engine.sh start)"  uses the engine `docker info` reaches; when there is none,
#                                     starts a throwaway dockerd (as root) and prints
#                                     `export DOCKER_HOST=unix://...` for it
#   docker/engine.sh stop             stops the dockerd that `start` started, and nothing else
#   docker/engine.sh exec CMD...      CMD with an engine: started and stopped around it if needed
#   docker/engine.sh base IMAGE       prints IMAGE when the engine has it or can pull it, else
#                                     makes a local stand-in and prints its name (below)
#   docker/engine.sh clean            removes the throwaway engine's data (images, build cache)
#
# The throwaway engine keeps its data in $MERGEFRONT_DOCKER_DIR (default /var/tmp/mergefront-docker)
# across start/stop, so images built by one `make image-cpu` are there for the next `docker run`
# and the build cache makes a rebuild quick. It runs without iptables and without a bridge
# (--iptables=false --bridge=none), so it leaves the host's firewall and interfaces as they were;
# builds and containers that need the network therefore use `--network host`.
#
# Stand-ins, for machines that cannot reach Docker Hub: local/debian:bookworm is debootstrap's
# minbase from Debian's mirror; local/python:3.11-slim is that plus Debian's Python 3.11 in a
# virtual environment (docker/Dockerfile.python-slim), which the Dockerfiles use as they would use
# python:3.11-slim (`python` and `pip` on PATH, installing into a non-system site-packages).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${MERGEFRONT_DOCKER_DIR:-/var/tmp/mergefront-docker}
sock=$state/docker.sock
pidfile=$state/dockerd.pid
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "engine.sh: $*" >&2; }

# Debian's packages, as .ci/postgres installs its server: `apt-get update` only when needed.
need_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  for p in "$@"; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }; } >&2
}

# Ours: the pid in our pidfile is a live dockerd serving our socket. A stale pidfile (the process
# died, or the pid was reused by something else) is not ours.
ours_running() {
  [ -f "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "dockerd .*unix://$sock"
}

start() {
  if ours_running; then
    echo "export DOCKER_HOST=unix://$sock"
    return 0
  fi
  if docker info >/dev/null 2>&1; then
    log "using the running engine ($(docker info --format '{{.Name}} {{.ServerVersion}}'))"
    return 0
  fi
  [ "$(id -u)" = 0 ] || { log "no Docker engine answers, and starting one needs root"; exit 1; }
  need_packages
  mkdir -p "$state/data" "$state/exec"
  rm -f "$sock" "$pidfile"
  # setsid: the daemon is not in the caller's process group, so a Ctrl-C there reaches `stop`
  # (through its trap) rather than killing dockerd halfway through a layer commit.
  setsid dockerd --data-root "$state/data" --exec-root "$state/exec" --pidfile "$pidfile" \
    --host "unix://$sock" --iptables=false --bridge=none \
    </dev/null >"$state/dockerd.log" 2>&1 &
  for _ in $(seq 60); do
    if DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1; then
      log "started dockerd (pid $(cat "$pidfile"), data in $state)"
      echo "export DOCKER_HOST=unix://$sock"
      return 0
    fi
    sleep 1
  done
  log "dockerd did not answer within 60 s; its log:"
  tail -20 "$state/dockerd.log" >&2
  exit 1
}

stop() {
  if ! ours_running; then
    rm -f "$pidfile"
    return 0
  fi
  local pid; pid=$(cat "$pidfile")
  # dockerd stops the containerd it started itself on SIGTERM; give it the time to do so.
  kill -TERM "$pid"
  for _ in $(seq 60); do
    [ -d "/proc/$pid" ] || { log "stopped dockerd (pid $pid)"; rm -f "$pidfile"; return 0; }
    sleep 1
  done
  log "dockerd (pid $pid) still runs 60 s after SIGTERM; killing it"
  kill -KILL "$pid" || true
  rm -f "$pidfile"
}

with_engine() {
  local started=
  if ! ours_running && ! docker info >/dev/null 2>&1; then
    eval "$(start)"
    started=1
  elif ours_running; then
    export DOCKER_HOST=unix://$sock
  fi
  local rc=0
  "$@" || rc=$?
  [ -z "$started" ] || stop
  return "$rc"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

debian_base() {
  local image=local/debian:bookworm
  have_image "$image" && return 0
  need_packages debootstrap
  local rootfs; rootfs=$(mktemp -d /var/tmp/mergefront-rootfs.XXXXXX)
  log "debootstrap bookworm into $rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
  # Security fixes and point-release updates, as Docker Hub's debian images have them.
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
    "$mirror" "$mirror" "${mirror%/debian}/debian-security" >"$rootfs/etc/apt/sources.list"
  # The build host's resolver and name are debootstrap's copies; a container gets its own at run
  # time, so none of the host's is kept in the image.
  rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/* "$rootfs"/root/.cache
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$image" >/dev/null
  rm -rf "$rootfs"
  log "made $image"
}

python_base() {
  local image=local/python:3.11-slim
  have_image "$image" && return 0
  debian_base
  "$here/build.sh" --raw -f "$here/Dockerfile.python-slim" -t "$image" "$here" >&2
  log "made $image"
}

# The public base when it is here or can be pulled; otherwise the local stand-in. A pull that
# cannot reach its registry fails within seconds (no DNS) or at the timeout.
base() {
  local want=$1
  if have_image "$want"; then echo "$want"; return 0; fi
  if timeout 120 docker pull -q "$want" >/dev/null 2>&1; then echo "$want"; return 0; fi
  case "$want" in
    python:3.11*) log "cannot pull $want; using local/python:3.11-slim"; python_base; echo local/python:3.11-slim ;;
    *) log "cannot pull $want; using local/debian:bookworm"; debian_base; echo local/debian:bookworm ;;
  esac
}

clean() {
  if ours_running; then log "stop the engine first (docker/engine.sh stop)"; exit 1; fi
  # overlay mounts of a daemon that was killed would make rm fail; there are none after a stop
  rm -rf "$state"
  log "removed $state"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  exec) shift; with_engine "$@" ;;
  base) shift; [ $# -eq 1 ] || { echo "usage: docker/engine.sh base IMAGE" >&2; exit 2; }; base "$1" ;;
  clean) clean ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
