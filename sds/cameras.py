"""Orbit cameras, rays and view labels.

Conventions, used everywhere in sds (training data of the prior, SDS, export):
- world space is right-handed with **+Y up**; objects sit at the origin;
- a camera at azimuth ``a`` and elevation ``e`` (degrees) and radius ``r`` sits at
  ``r * (cos e sin a, sin e, cos e cos a)``: azimuth 0 looks at the object's front (+Z side),
  azimuth 90 at its +X side;
- camera-to-world matrices use the OpenGL convention (the camera looks down its own -Z, +Y is up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Cameras:
    """A batch of B pinhole cameras looking at the origin."""

    c2w: torch.Tensor  # [B, 4, 4] camera-to-world
    fov_deg: torch.Tensor  # [B] vertical = horizontal field of view (square images)
    azimuth_deg: torch.Tensor  # [B]
    elevation_deg: torch.Tensor  # [B]
    radius: torch.Tensor  # [B]

    @property
    def position(self) -> torch.Tensor:
        """[B, 3] camera centres in world space."""
        return self.c2w[:, :3, 3]

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(self.c2w.to(device), self.fov_deg.to(device), self.azimuth_deg.to(device),
                       self.elevation_deg.to(device), self.radius.to(device))


def look_at_origin(position: torch.Tensor) -> torch.Tensor:
    """[B, 3] camera positions -> [B, 4, 4] camera-to-world matrices looking at the origin, +Y up."""
    forward = -position / position.pow(2).sum(-1, keepdim=True).sqrt()
    up = torch.tensor([0.0, 1.0, 0.0], dtype=position.dtype, device=position.device).expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)
    # Straight above or below the object the up vector is parallel to forward: pick +Z as "up" there.
    degenerate = right.pow(2).sum(-1) < 1e-12
    if degenerate.any():
        alt_up = torch.tensor([0.0, 0.0, -1.0], dtype=position.dtype, device=position.device)
        right[degenerate] = torch.linalg.cross(forward[degenerate], alt_up.expand_as(forward[degenerate]), dim=-1)
    right = right / right.pow(2).sum(-1, keepdim=True).sqrt()
    true_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.zeros(position.shape[0], 4, 4, dtype=position.dtype, device=position.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = true_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = position
    c2w[:, 3, 3] = 1.0
    return c2w


def orbit_cameras(
    azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, radius: torch.Tensor, fov_deg: torch.Tensor
) -> Cameras:
    """Cameras on a sphere around the origin from per-camera angles (degrees), radius and FOV."""
    az = torch.deg2rad(azimuth_deg)
    el = torch.deg2rad(elevation_deg)
    position = torch.stack(
        [radius * torch.cos(el) * torch.sin(az), radius * torch.sin(el), radius * torch.cos(el) * torch.cos(az)],
        dim=-1,
    )
    return Cameras(look_at_origin(position), fov_deg, azimuth_deg, elevation_deg, radius)


def sample_orbit_cameras(
    batch_size: int,
    radius_range: tuple[float, float],
    elevation_range_deg: tuple[float, float],
    fov_range_deg: tuple[float, float],
    generator: torch.Generator | None = None,
    azimuth_range_deg: tuple[float, float] = (0.0, 360.0),
) -> Cameras:
    """Random orbit cameras; azimuths are stratified so a batch of B covers the circle evenly.

    Elevation is sampled uniformly in degrees; radius and FOV uniformly in their ranges.
    """
    u = torch.rand(4, batch_size, generator=generator)
    lo, hi = azimuth_range_deg
    azimuth = lo + (hi - lo) * (torch.arange(batch_size) + u[0]) / batch_size
    elevation = elevation_range_deg[0] + (elevation_range_deg[1] - elevation_range_deg[0]) * u[1]
    radius = radius_range[0] + (radius_range[1] - radius_range[0]) * u[2]
    fov = fov_range_deg[0] + (fov_range_deg[1] - fov_range_deg[0]) * u[3]
    return orbit_cameras(azimuth, elevation, radius, fov)


def turntable_cameras(
    n_views: int, elevation_deg: float, radius: float, fov_deg: float, start_azimuth_deg: float = 0.0
) -> Cameras:
    """n_views cameras evenly spaced in azimuth at one elevation, for previews and videos."""
    azimuth = start_azimuth_deg + torch.arange(n_views, dtype=torch.float32) * 360.0 / n_views
    full = torch.full((n_views,), 1.0)
    return orbit_cameras(azimuth, full * elevation_deg, full * radius, full * fov_deg)


def camera_rays(cameras: Cameras, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel centres: origins and unit directions, each [B, H, W, 3]."""
    device, dtype = cameras.c2w.device, cameras.c2w.dtype
    j = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width * 2 - 1
    i = 1 - (torch.arange(height, device=device, dtype=dtype) + 0.5) / height * 2
    tan_half = torch.tan(torch.deg2rad(cameras.fov_deg) / 2)[:, None, None]  # [B,1,1]
    v, u = torch.meshgrid(i, j, indexing="ij")
    u = u[None] * tan_half
    v = v[None] * tan_half
    dirs_cam = torch.stack([u, v, -torch.ones_like(u)], dim=-1)  # [B, H, W, 3]
    dirs = torch.einsum("bij,bhwj->bhwi", cameras.c2w[:, :3, :3], dirs_cam)
    dirs = dirs / dirs.pow(2).sum(-1, keepdim=True).sqrt()
    origins = cameras.position[:, None, None, :].expand_as(dirs)
    return origins, dirs


VIEW_LABELS = ("front", "side", "back", "overhead")


def view_label(
    azimuth_deg: float, elevation_deg: float, front_half_width_deg: float = 45.0,
    back_half_width_deg: float = 45.0, overhead_elevation_deg: float = 60.0,
) -> str:
    """Which view phrase a camera gets.

    Sectors (half-open, azimuth wrapped to [-180, 180)):
    - "overhead" if elevation >= overhead_elevation_deg (checked first);
    - "front" if -front_half_width <= azimuth < front_half_width;
    - "back" if azimuth >= 180 - back_half_width or azimuth < -180 + back_half_width;
    - "side" otherwise.
    """
    if elevation_deg >= overhead_elevation_deg:
        return "overhead"
    a = math.fmod(azimuth_deg + 180.0, 360.0)
    a = (a + 360.0) % 360.0 - 180.0
    if -front_half_width_deg <= a < front_half_width_deg:
        return "front"
    if a >= 180.0 - back_half_width_deg or a < -180.0 + back_half_width_deg:
        return "back"
    return "side"
