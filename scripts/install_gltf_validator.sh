#!/usr/bin/env bash
# Install the Khronos glTF validator (npm package `gltf-validator`) into ./.tools/ so that
# sds.export.validate and tests/export can check exported .glb files offline.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

VERSION="${GLTF_VALIDATOR_VERSION:-2.0.0-dev.3.10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${ROOT}/.tools"
PKG_JSON="${PREFIX}/node_modules/gltf-validator/package.json"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install_gltf_validator: node and npm are required (https://nodejs.org)" >&2
    exit 1
fi

if [[ -f "${PKG_JSON}" ]] && grep -q "\"version\": \"${VERSION}\"" "${PKG_JSON}"; then
    echo "gltf-validator ${VERSION} already installed in ${PREFIX}"
    exit 0
fi

mkdir -p "${PREFIX}"
npm install --prefix "${PREFIX}" --no-audit --no-fund --save-exact "gltf-validator@${VERSION}"
echo "gltf-validator ${VERSION} installed in ${PREFIX}"
