"""The regular lattice of nodes over the scene cube [-bound, bound]^3, shared by the grid field and the export.

Kept free of heavy imports: the field uses it at start-up, the export (trimesh, xatlas) only at the end.
"""

from __future__ import annotations

import torch


def grid_axis(bound: float, resolution: int) -> torch.Tensor:
    """[R] node coordinates along one axis: R points from -bound to +bound inclusive (world units)."""
    return torch.linspace(-bound, bound, resolution)


def grid_spacing(bound: float, resolution: int) -> float:
    """Distance between neighbouring grid nodes (world units)."""
    return 2.0 * bound / (resolution - 1)
