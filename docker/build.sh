#!/usr/bin/env bash
# Builds mergefront's images with BuildKit (`make image-cpu`, `make image-gpu` run it under
# docker/engine.sh exec, which provides an engine):
#   docker/build.sh cpu [DOCKER_BUILD_ARGS...]   -> mergefront:cpu (docker/Dockerfile.cpu)
#   docker/build.sh gpu [DOCKER_BUILD_ARGS...]   -> mergefront:gpu (docker/Dockerfile.gpu)
#   docker/build.sh --raw DOCKER_BUILD_ARGS...   a plain build with the options below
# and prints the build's wall time and the image's size.
#
# What it adds to a plain `docker build -f docker/Dockerfile.X .`, each only where needed:
# - the base: the public image (BASE_IMAGE overrides it) when the engine has it or can pull it,
#   else docker/engine.sh's local stand-in;
# - the CPU torch wheel from $TORCH_WHEELS_DIR (default /opt/wheels) when it is there, for
#   machines that cannot reach the PyTorch index; it reaches the build as a small image mounted
#   during one RUN, so no host path is named in the image;
# - the host's CA bundle ($PIP_CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) as the
#   build secret `pip_cert`, for networks that re-sign TLS with a CA of their own; a secret is
#   mounted only during the RUNs that ask for it and is never stored in a layer;
# - `--network host` ($BUILD_NETWORK; empty for the engine's default): the throwaway engine has
#   no bridge, so a build step reaches the network only through the host's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ca_bundle=${PIP_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
network=${BUILD_NETWORK-host}
wheels_dir=${TORCH_WHEELS_DIR:-/opt/wheels}

log() { echo "build.sh: $*" >&2; }

# BuildKit is required (RUN --mount). Docker >= 23 builds with it through the buildx plugin; an
# engine package without the plugin (Debian's docker.io 20.10) has a client that runs BuildKit
# builds itself when asked with DOCKER_BUILDKIT=1, so that client is used when buildx is missing.
build_cmd=()
if docker buildx version >/dev/null 2>&1; then
  build_cmd=(docker build)
elif [ -x /usr/bin/docker ] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.'; then
  build_cmd=(env DOCKER_BUILDKIT=1 /usr/bin/docker build)
else
  log "no BuildKit-capable client: install Docker's buildx plugin (or Debian's docker.io)"
  exit 1
fi

raw_build() {
  local opts=(--progress=plain)
  [ -z "$network" ] || opts+=(--network "$network")
  if [ -n "$ca_bundle" ] && [ -f "$ca_bundle" ]; then opts+=(--secret "id=pip_cert,src=$ca_bundle"); fi
  "${build_cmd[@]}" "${opts[@]}" "$@"
}

report() {
  local image=$1 start=$2 size
  size=$(docker image inspect --format '{{.Size}}' "$image")
  log "$image: built in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB ($(numfmt --to=iec "$size"))"
}

build_cpu() {
  local start; start=$(date +%s)
  local args=(--build-arg "BASE_IMAGE=${BASE_IMAGE:-$("$here/engine.sh" base python:3.11.15-slim-bookworm)}")
  local version; version=$(sed -n 's/^TORCH := torch==//p' "$root/Makefile")
  local wheel; wheel=$(find "$wheels_dir" -maxdepth 1 -name "torch-${version}+cpu-cp311-cp311-*x86_64.whl" 2>/dev/null | sort | tail -1)
  if [ -n "$wheel" ]; then
    log "torch from $(basename "$wheel")"
    local ctx; ctx=$(mktemp -d)
    cp "$wheel" "$ctx/"
    printf 'FROM scratch\nCOPY *.whl /\n' >"$ctx/Dockerfile"
    raw_build -q -t local/torch-wheels "$ctx" >/dev/null
    rm -rf "$ctx"
    # Pinned to the local +cpu build; the rest of torch's requirements come from PyPI.
    args+=(--build-arg WHEELS_IMAGE=local/torch-wheels --build-arg "TORCH_VERSION=${version}+cpu"
           --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
  fi
  raw_build -f "$here/Dockerfile.cpu" -t mergefront:cpu "${args[@]}" "$@" "$root"
  report mergefront:cpu "$start"
}

build_gpu() {
  local start; start=$(date +%s)
  local args=(--build-arg "BASE_IMAGE=${BASE_IMAGE:-$("$here/engine.sh" base nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04)}")
  raw_build -f "$here/Dockerfile.gpu" -t mergefront:gpu "${args[@]}" "$@" "$root"
  report mergefront:gpu "$start"
}

case "${1:-}" in
  cpu) shift; build_cpu "$@" ;;
  gpu) shift; build_gpu "$@" ;;
  --raw) shift; raw_build "$@" ;;
  *) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
