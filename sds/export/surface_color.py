"""The colour a mesh point gets: what the NeRF shows there, not only the albedo at the point itself.

The mesh is cut at an iso-level matched to the NeRF's silhouettes, so it can lie a little inside or outside
the layer that the volume render actually composites. The albedo there may be one the render never shows
(an untrained interior, or a pale blend of the two), and the mesh then looks paler than the NeRF did. Looking
at the point along its normal, from `depth` outside to `depth` inside, and compositing the albedo with the
field's own density gives the colour a camera facing the surface sees.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sds.export.interfaces import DensityAlbedoField
from sds.render.compositing import along_rays, composite_weights

SEEN_SAMPLES = 12  # samples along each normal: a step of depth / 6
MIN_SEEN_OPACITY = 1e-3  # below this the normal ray sees nothing: keep the albedo at the point


def samples_per_point(depth: float) -> int:
    """Field queries per surface point in one call of surface_color_fn's function: callers divide their chunk
    size by it, so no single field call exceeds the chunk."""
    return SEEN_SAMPLES if depth > 0 else 1


def surface_color_fn(field: DensityAlbedoField, depth: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """[N, 6] (point, unit outward normal) -> [N, 3] colour in [0, 1].

    depth 0: the albedo at the point. depth > 0: the albedo composited along the normal ray from
    point + depth * normal to point - depth * normal, normalised by the ray's opacity.
    """

    def color(points_normals: torch.Tensor) -> torch.Tensor:
        points, normals = points_normals[:, :3], points_normals[:, 3:]
        at_point = field.albedo(points)
        if depth <= 0:
            return at_point
        offsets = torch.linspace(depth, -depth, SEEN_SAMPLES, device=points.device, dtype=points.dtype)
        samples = points[:, None] + offsets[None, :, None] * normals[:, None]  # [N, S, 3], outside first
        flat = samples.reshape(-1, 3)
        density = field.density(flat).reshape(len(points), SEEN_SAMPLES)
        deltas = torch.full_like(density, 2 * depth / (SEEN_SAMPLES - 1))
        weights, _ = composite_weights(density, deltas)
        opacity = weights.sum(-1, keepdim=True)
        seen = along_rays(weights, field.albedo(flat).reshape(len(points), SEEN_SAMPLES, 3))
        seen = seen / opacity.clamp(min=MIN_SEEN_OPACITY)
        return torch.where(opacity > MIN_SEEN_OPACITY, seen, at_point)

    return color
