"""Shading of albedo by a point light near the camera (shared by the prior's data and the NeRF)."""

from __future__ import annotations

import torch

from sds.cameras import Cameras, orbit_cameras


def lambertian(albedo: torch.Tensor, normal: torch.Tensor, light_dir: torch.Tensor, ambient: float) -> torch.Tensor:
    """``albedo * (ambient + (1 - ambient) * max(0, n.l))``.

    albedo [..., 3], normal and light_dir [..., 3] unit vectors (light_dir points towards the light).
    """
    n_dot_l = (normal * light_dir).sum(-1, keepdim=True).clamp(min=0)
    return albedo * (ambient + (1 - ambient) * n_dot_l)


def textureless(normal: torch.Tensor, light_dir: torch.Tensor, ambient: float) -> torch.Tensor:
    """Lambertian shading of a mid-grey albedo: shape cues only, so colour cannot hide geometry."""
    grey = torch.full_like(normal, 0.75)
    return lambertian(grey, normal, light_dir, ambient)


def sample_light_positions(
    cameras: Cameras, jitter_deg: float, generator: torch.Generator | None = None, distance_scale: float = 1.2
) -> torch.Tensor:
    """[B, 3] point-light positions near each camera: its azimuth/elevation jittered by up to jitter_deg."""
    u = torch.rand(2, len(cameras), generator=generator) * 2 - 1
    azimuth = cameras.azimuth_deg.cpu() + u[0] * jitter_deg
    elevation = (cameras.elevation_deg.cpu() + u[1] * jitter_deg).clamp(-89.0, 89.0)
    lights = orbit_cameras(azimuth, elevation, cameras.radius.cpu() * distance_scale, cameras.fov_deg.cpu())
    return lights.position.to(cameras.c2w.device)
