"""Checking a .glb with the Khronos glTF validator (npm `gltf-validator`, run through node)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "install it with scripts/install_gltf_validator.sh (needs node + npm)"

# Reads the file, validates its bytes, prints the report as JSON on stdout.
_NODE_SNIPPET = r"""
const fs = require("fs");
const validator = require(process.argv[1]);
const bytes = new Uint8Array(fs.readFileSync(process.argv[2]));
validator.validateBytes(bytes, {maxIssues: 1000, writeTimestamp: false})
  .then((report) => { process.stdout.write(JSON.stringify(report)); })
  .catch((err) => { process.stderr.write(String(err)); process.exit(2); });
"""


class GltfValidatorUnavailable(RuntimeError):
    """node or the gltf-validator package is missing."""


def find_validator() -> Path:
    """The gltf-validator package folder: $SDS_GLTF_VALIDATOR_DIR, else <repo>/.tools/node_modules/."""
    env = os.environ.get("SDS_GLTF_VALIDATOR_DIR")
    candidate = Path(env) if env else REPO_ROOT / ".tools" / "node_modules" / "gltf-validator"
    if not (candidate / "package.json").is_file():
        raise GltfValidatorUnavailable(f"gltf-validator not found at {candidate}: {INSTALL_HINT}")
    return candidate


def validate_gltf(path: Path | str, timeout_s: float = 60.0) -> dict:
    """Validate a .glb/.gltf file; returns the validator's report.

    The report's ``report["issues"]["numErrors"]`` (and numWarnings, numInfos, numHints, messages)
    say what is wrong. Raises GltfValidatorUnavailable if node or the validator is missing, and
    RuntimeError if the validator itself fails.
    """
    node = shutil.which("node")
    if node is None:
        raise GltfValidatorUnavailable(f"node is not on PATH: {INSTALL_HINT}")
    package = find_validator()
    result = subprocess.run(
        [node, "-e", _NODE_SNIPPET, str(package), str(Path(path).resolve())],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"gltf-validator failed on {path}: {result.stderr.strip()[:500]}")
    return json.loads(result.stdout)
