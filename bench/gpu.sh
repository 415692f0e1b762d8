#!/usr/bin/env bash
# The GPU checks of the real-size pool work, as one script for a lent GPU machine (at most ~8 minutes):
#   1. bench/merge.py on cuda: device and host tiers against a device-to-device and a pinned
#      host-to-device copy measured in the same run;
#   2. an HF-backend search on cuda (bench/scale.py, small shape) whose pool exceeds a GPU memory
#      budget set low on purpose (--gpu-fraction), so `auto` puts the pool in host memory and streams it.
# Run from the repository root with the project's environment active (or PYTHON=.venv/bin/python).
# Everything it prints goes to $OUT/gpu.txt as well when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
LOG=${OUT:-/tmp}/gpu.txt
export RAY_AUTH_MODE=disabled
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  echo "== merge throughput per tier (bench/merge.py --device cuda)"
  timeout 240 "$PYTHON" bench/merge.py --device cuda --members 4
  echo "== HF-backend search on cuda, pool over a low GPU budget (bench/scale.py)"
  timeout 300 "$PYTHON" bench/scale.py --workdir /tmp/mergefront-gpu-scale --shape small --members 4 \
    --device cuda --workers 1 --trials 6 --limit 8 --gpu-fraction 0.006
} 2>&1 | tee "$LOG"
