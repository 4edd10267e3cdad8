"""Sampling the field's density on a regular grid, in bounded-memory chunks."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from sds.lattice import grid_axis

logger = logging.getLogger(__name__)


@torch.no_grad()
def query_chunked(
    fn: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Apply ``fn`` to [N, 3] points in chunks of at most ``chunk_size``; results are concatenated on dim 0."""
    if points.shape[0] == 0:
        return fn(points)
    return torch.cat([fn(points[i : i + chunk_size]) for i in range(0, points.shape[0], chunk_size)], dim=0)


@torch.no_grad()
def sample_density_grid(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    bound: float,
    resolution: int,
    chunk_size: int,
    show_progress: bool = True,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Density at the nodes of a resolution^3 grid over [-bound, bound]^3.

    Returns [R, R, R] float32 on the CPU, indexed ``[ix, iy, iz]``: node ``[i, j, k]`` sits at
    ``(axis[i], axis[j], axis[k])`` with ``axis = grid_axis(bound, R)``. Points are generated per chunk
    on ``device`` (where the field lives), so peak memory is O(chunk_size), not O(R^3). Non-finite
    densities count as empty space (with a warning): they would otherwise poison marching cubes.
    """
    axis = grid_axis(bound, resolution).to(device)
    total = resolution**3
    out = torch.empty(total, dtype=torch.float32)
    starts = range(0, total, chunk_size)
    for start in tqdm(starts, desc="density grid", unit="chunk", disable=not show_progress, leave=False):
        index = torch.arange(start, min(start + chunk_size, total), device=device)
        ix, rem = index // (resolution * resolution), index % (resolution * resolution)
        iy, iz = rem // resolution, rem % resolution
        points = torch.stack([axis[ix], axis[iy], axis[iz]], dim=-1)
        out[start : start + index.shape[0]] = density_fn(points).reshape(-1).float().cpu()
    bad = ~torch.isfinite(out)
    if bad.any():
        logger.warning("density grid: %d non-finite values treated as 0", int(bad.sum()))
        out[bad] = 0.0
    return out.reshape(resolution, resolution, resolution)
