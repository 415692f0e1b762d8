#!/usr/bin/env bash
# CI's check of the CPU image (a step of .ci/run; runs standalone too): builds mergefront:cpu,
# then, in containers without any network (`--network none`, so a run that tried to download
# anything would fail), trains the toy pool and runs a short search into a run directory mounted
# from the host, and finally reads that run's front with the host's own `mergefront front`
# (.venv, as `make install` makes it): the run directory a container writes is what the host reads.
#   docker/smoke.sh              the check; prints each step's wall time
#   SMOKE_KEEP=1 docker/smoke.sh keeps the run directory (its path is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

# Under docker/engine.sh exec, which starts a throwaway engine only when none answers and stops
# only that one, whatever happens below.
if [ -z "${MERGEFRONT_SMOKE_ENGINE:-}" ]; then
  MERGEFRONT_SMOKE_ENGINE=1 exec docker/engine.sh exec bash docker/smoke.sh "$@"
fi

step_start=$(date +%s)
total_start=$step_start
step() {
  local now; now=$(date +%s)
  echo "smoke: $1 in $((now - step_start)) s" >&2
  step_start=$now
}

# The build's long log is shown only when it fails (its tail), and its summary line otherwise.
log=$(mktemp)
docker/build.sh cpu >"$log" 2>&1 || { tail -60 "$log" >&2; exit 1; }
grep '^build.sh:' "$log" >&2 || true
rm -f "$log"
step "built mergefront:cpu"

# Nothing of this machine in any layer: CA bundle, local CAs, pip configuration, host paths.
python3 docker/audit.py mergefront:cpu | grep -v '^    /usr/share' >&2
step "audited the image's layers"

dir=$(mktemp -d /tmp/mergefront-smoke.XXXXXX)
[ -n "${SMOKE_KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
mkdir "$dir/toy" "$dir/runs"
# The image runs as uid 1000; as root (CI) the mounted directories are handed to it, otherwise
# the container runs as the caller, who owns them (docker/README.md).
user=()
if [ "$(id -u)" = 0 ]; then chown 1000:1000 "$dir/toy" "$dir/runs"; else user=(--user "$(id -u):$(id -g)" -e HOME=/tmp); fi

# The training's progress bars (carriage-return lines) would fill CI's log: they are left out.
docker run --rm --network none "${user[@]}" -v "$dir/toy:/work/toy" mergefront:cpu toy build 2>&1 \
  | tr '\r' '\n' | { grep -v -E '^toy pool: .*[0-9]+/[0-9]+ \[' || true; } >&2
step "mergefront toy build (in a container, no network)"

# Ray's local cluster comes up inside the container, on its loopback alone. 6 trials: the 4
# single checkpoints and the uniform soup, which every search scores first, and one sampled.
docker run --rm --network none "${user[@]}" \
  -v "$dir/toy:/work/toy:ro" -v "$dir/runs:/work/runs" \
  mergefront:cpu search experiments/toy.yaml --trials 6 --workers 1 --no-progress >&2
step "mergefront search, 6 trials (in a container, no network)"

.venv/bin/mergefront front "$dir/runs/toy"
# The front is not empty: at least one trial, with a score for each of the 4 objectives.
.venv/bin/mergefront front --json "$dir/runs/toy" | .venv/bin/python -c '
import json, sys
front = json.load(sys.stdin)
assert front and all(len(t["scores"]) == 4 for t in front), front
print(f"smoke: the front holds {len(front)} trial(s)", file=sys.stderr)'
step "host's mergefront front"
echo "smoke: total $(( $(date +%s) - total_start )) s${SMOKE_KEEP:+; run directory $dir/runs/toy}" >&2
