#!/usr/bin/env bash
# The GPU check, run once, unattended, on a lent GPU machine (device tool) from the repo root, in under 10 minutes:
#   scale   benchmarks/model_scale.py on CUDA in fp16 for each model family (SD 2.1 base first: the target), each
#           with its own timeout: step time by part, peak memory, and the floor set by the step's counted FLOPs at
#           the GPU's measured matrix-product throughput (target: the SD 2.1 step within 2x the floor);
#   basics  the nerfacc extension build, the CUDA-only tests, and benchmarks/step_time.py on CUDA.
# Usage there: bash scripts/gpu_check.sh [scale] [basics]      (default: both, scale first; BUDGET=540 seconds in all)
# That machine has no registry: the wheels sds needs and it lacks travel in .whl/ (carry: [".whl"]). Made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl diffusers==0.42.1 importlib_metadata nerfacc==0.5.3
# (nerfacc is a pure-Python wheel that JIT-builds its CUDA extension on first use; /.whl/ is git-ignored.)
set -uo pipefail
sections=${*:-scale basics}
budget=${BUDGET:-540}
deadline=$(( $(date +%s) + budget ))
left() { local l=$(( deadline - $(date +%s) )); (( l < $1 )) && echo "$l" || echo "$1"; }  # min(own limit, time left)
out=${OUT:-/tmp}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"

if [[ " $sections " == *" scale "* ]]; then
  echo "== model families at full size on CUDA, fp16 (budget $budget s in all)"
  # seconds each family may take: building its folder (weights made on the GPU, saved in fp16), loading it through
  # sds's loader, 4 steps (the first a warm-up) and counting its FLOPs
  for spec in sd21-base:100 sd15:80 sd21-v:90 sdxl:130 if-i:170; do
    family=${spec%%:*}; limit=$(left "${spec##*:}")
    if (( limit < 20 )); then echo "$family: skipped, out of time"; continue; fi
    # --timeout: the script stops its own build / measure process at the limit; timeout(1) is the outer guard
    timeout "$(( limit + 20 ))" python3 benchmarks/model_scale.py --families "$family" --device cuda --dtype fp16 \
      --steps 4 --flops --timeout "$limit" --cache /tmp/model_scale --json "$out/scale_$family.json" 2>&1 \
      | grep -v -i -E "warn|^ *warnings?\."
    (( PIPESTATUS[0] == 124 )) && echo "$family: timed out after $(( limit + 20 )) s"
    rm -rf /tmp/model_scale/"$family"*  # the next family needs the disk (IF with T5-XXL is 18 GB in fp16)
  done
fi

if [[ " $sections " == *" basics "* ]]; then
  echo "== nerfacc CUDA extension build (JIT, first use)"
  start=$(date +%s)
  export MAX_JOBS=16
  timeout "$(left 150)" python3 -c "from nerfacc.cuda._backend import _C; print('nerfacc extension ok' if _C is not None else 'nerfacc extension NOT built')" 2>&1 | tail -3
  echo "build took $(( $(date +%s) - start )) s"
  echo "== CUDA tests"
  timeout "$(left 90)" python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tail -15
  echo "== step time on CUDA"
  timeout "$(left 60)" python3 benchmarks/step_time.py --device cuda --steps 10 2>&1 | grep -v Warning | tail -8
fi
echo "gpu_check done, $(( budget - (deadline - $(date +%s)) )) s of $budget"
