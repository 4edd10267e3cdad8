"""The built-in prior: a small pixel-space text-to-image diffusion model of a world of primitives."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def builtin_prior_path() -> Path:
    """Folder of the shipped prior (diffusers format)."""
    return WEIGHTS_DIR
