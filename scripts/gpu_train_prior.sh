#!/usr/bin/env bash
# Train the built-in prior on a lent GPU machine (the device tool), then hand the exported model back.
# Usage there: bash scripts/gpu_train_prior.sh MINUTES [RESOLUTION]  (needs the diffusers wheel in .whl/, see docs/prior.md)
set -euo pipefail
minutes=${1:-6}
resolution=${2:-32}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
start=$(date +%s)
python3 -m sds.cli train-prior prior_runs/gpu --device cuda --minutes "$minutes" --batch-size 512 --resolution "$resolution" \
  > "${OUT:-/tmp}/train_prior.log" 2>&1 || { tail -c 3000 "${OUT:-/tmp}/train_prior.log"; exit 1; }
echo "train-prior wall time: $(( $(date +%s) - start )) s"
tr '\r' '\n' < "${OUT:-/tmp}/train_prior.log" | grep -E "INFO|training prior" | awk 'NR % 40 == 0 || /INFO/' | tail -30
tar czf "${OUT:-/tmp}/prior_model.tgz" -C prior_runs/gpu model
ls -la "${OUT:-/tmp}"
