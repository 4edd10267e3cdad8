#!/usr/bin/env bash
# One-time set-up on a fresh machine: .venv with sds, its test tools and the glTF validator.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  # torch first, pinned: where the small CPU build 2.13.0 lies on disk (pip's find-links), pip takes it;
  # an unpinned install would pull a multi-GB CUDA build. Elsewhere fall back to PyPI's default build.
  pip install -q "torch==2.13.0" || pip install -q torch
fi
pip install -q -e ".[dev]"
if command -v npm >/dev/null 2>&1; then
  bash scripts/install_gltf_validator.sh
else
  echo "setup: npm not found; the glTF validator tests will be skipped" >&2
fi
