#!/usr/bin/env bash
# One-time set-up on a fresh machine: .venv with sds, its test tools, the glTF validator and Chromium.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  # torch first, the CPU build: the package does not depend on torch, because an install that pulls it from PyPI
  # gets the multi-GB CUDA build on Linux (README: Install). The locked version comes from disk where its CPU
  # wheel lies there (pip's find-links), else from PyTorch's CPU index (SDS_TORCH_INDEX overrides it).
  TORCH="$(grep -E '^torch==' requirements.lock)"
  if pip install -q --no-index --no-deps "${TORCH}" 2>/dev/null; then
    pip install -q "${TORCH}"  # its own dependencies, from the package index
  else
    pip install -q "${TORCH}" --index-url "${SDS_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
# The package as `pip install` sees it, with the exact versions CI tests (constraints pin, they add nothing).
# torch is left out of them: the one installed above, or one of the user's own choosing already in .venv, stays.
grep -v '^torch==' requirements.lock > .venv/constraints.txt
pip install -q -c .venv/constraints.txt -e ".[dev]"
if command -v npm >/dev/null 2>&1; then
  bash scripts/install_gltf_validator.sh
else
  echo "setup: npm not found; the glTF validator tests will be skipped" >&2
fi
# Debian's Chromium, for the viewer's test in a real headless browser (tests/export/test_viewer.py). Optional: a
# failed install only says so, and that test is skipped.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "${SUDO}" ] || sudo -n true 2>/dev/null; } \
      && ${SUDO} apt-get update -qq >/dev/null 2>&1 \
      && ${SUDO} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; then
    echo "setup: installed $(chromium --version 2>/dev/null || echo chromium)" >&2
  else
    echo "setup: could not install Chromium (apt-get install chromium, as root); the viewer's browser test will" \
         "be skipped" >&2
  fi
fi
