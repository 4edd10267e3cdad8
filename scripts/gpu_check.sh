#!/usr/bin/env bash
# The GPU check, run once on a lent GPU machine (device tool) from the repo root:
#   CUDA-only tests (nerfacc path, training on CUDA, fp16 guidance), then the step-time benchmark on CUDA.
# Needs the wheels in .whl/ (diffusers, importlib_metadata, nerfacc) since that machine has no registry.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, nerfacc; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'nerfacc', nerfacc.__version__)"
echo "== nerfacc CUDA extension build (JIT, first use)"
start=$(date +%s)
export MAX_JOBS=16
timeout 150 python3 -c "from nerfacc.cuda._backend import _C; print('nerfacc extension ok' if _C is not None else 'nerfacc extension NOT built')" 2>&1 | tail -3
echo "build took $(( $(date +%s) - start )) s"
echo "== CUDA tests"
timeout 90 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tail -15
echo "== step time on CUDA"
timeout 60 python3 benchmarks/step_time.py --device cuda --steps 10 2>&1 | grep -v Warning | tail -8
