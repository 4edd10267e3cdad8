"""Camera rigs the exporter renders from, and batched calls of the NeRF's render function."""

from __future__ import annotations

import torch

from sds.cameras import Cameras, orbit_cameras, turntable_cameras
from sds.export.interfaces import RenderFn

FOV_DEG = 40.0
# Training cameras sit at ~2.5 x bound; previews match that so the NeRF is seen as it was trained.
PREVIEW_RADIUS_PER_BOUND = 2.5
PREVIEW_ELEVATION_DEG = 20.0
# Silhouette views step back to 3 x bound, so most of the [-bound, bound]^3 cube stays in frame.
SILHOUETTE_RADIUS_PER_BOUND = 3.0
# Alternating above/below views: floaters under an object (dark undersides) show up from below only.
SILHOUETTE_ELEVATIONS_DEG = (30.0, -15.0)


def silhouette_cameras(bound: float, n_views: int = 8) -> Cameras:
    """n_views cameras evenly spread in azimuth, alternating the elevations above, looking at the origin."""
    azimuth = torch.arange(n_views, dtype=torch.float32) * 360.0 / n_views
    elevation = torch.tensor([SILHOUETTE_ELEVATIONS_DEG[i % 2] for i in range(n_views)])
    full = torch.ones(n_views)
    return orbit_cameras(azimuth, elevation, full * SILHOUETTE_RADIUS_PER_BOUND * bound, full * FOV_DEG)


def preview_cameras(bound: float, n_views: int) -> Cameras:
    """A turntable of n_views cameras at the preview elevation, starting at the front (azimuth 0)."""
    return turntable_cameras(n_views, PREVIEW_ELEVATION_DEG, PREVIEW_RADIUS_PER_BOUND * bound, FOV_DEG)


def camera_slice(cameras: Cameras, start: int, stop: int) -> Cameras:
    """Cameras ``start:stop`` of a batch."""
    return Cameras(
        cameras.c2w[start:stop],
        cameras.fov_deg[start:stop],
        cameras.azimuth_deg[start:stop],
        cameras.elevation_deg[start:stop],
        cameras.radius[start:stop],
    )


@torch.no_grad()
def render_views(
    render_fn: RenderFn, cameras: Cameras, size: int, views_per_call: int = 1, shaded: bool = True
) -> dict[str, torch.Tensor]:
    """Render square views a few at a time (bounds the NeRF's memory) and gather them on the CPU.

    shaded=False: only the opacity is wanted (see ``RenderFn``).

    Returns "rgb" [B, size, size, 3] and "opacity" [B, size, size], float32, clamped to [0, 1].
    """
    rgb, opacity = [], []
    for start in range(0, len(cameras), views_per_call):
        out = render_fn(camera_slice(cameras, start, start + views_per_call), size, size, shaded=shaded)
        rgb.append(out["rgb"].detach().float().cpu().clamp(0, 1))
        opacity.append(out["opacity"].detach().float().cpu().clamp(0, 1))
    return {"rgb": torch.cat(rgb), "opacity": torch.cat(opacity)}
