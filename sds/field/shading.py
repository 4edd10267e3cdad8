"""Shading of albedo by a point light near the camera (shared by the prior's data and the NeRF), and the one
per-sample shading step both render paths (pure torch and nerfacc) use."""

from __future__ import annotations

import torch

from sds.cameras import Cameras, orbit_cameras

AMBIENT = 0.35
"""Share of light every surface gets whatever its normal (the built-in prior's world is lit this way)."""
LIGHT_JITTER_DEG = 30.0
"""The point light sits at the camera's azimuth and elevation jittered by up to this much."""


def lambertian(albedo: torch.Tensor, normal: torch.Tensor, light_dir: torch.Tensor,
               ambient: float = AMBIENT) -> torch.Tensor:
    """``albedo * (ambient + (1 - ambient) * max(0, n.l))``.

    albedo [..., 3], normal and light_dir [..., 3] unit vectors (light_dir points towards the light).
    """
    n_dot_l = (normal * light_dir).sum(-1, keepdim=True).clamp(min=0)
    return albedo * (ambient + (1 - ambient) * n_dot_l)


def textureless(normal: torch.Tensor, light_dir: torch.Tensor, ambient: float = AMBIENT) -> torch.Tensor:
    """Lambertian shading of a mid-grey albedo: shape cues only, so colour cannot hide geometry."""
    grey = torch.full_like(normal, 0.75)
    return lambertian(grey, normal, light_dir, ambient)


def sample_light_positions(
    cameras: Cameras, jitter_deg: float = LIGHT_JITTER_DEG, generator: torch.Generator | None = None, distance_scale: float = 1.2
) -> torch.Tensor:
    """[B, 3] point-light positions near each camera: its azimuth/elevation jittered by up to jitter_deg."""
    u = torch.rand(2, len(cameras), generator=generator) * 2 - 1
    azimuth = cameras.azimuth_deg.cpu() + u[0] * jitter_deg
    elevation = (cameras.elevation_deg.cpu() + u[1] * jitter_deg).clamp(-89.0, 89.0)
    lights = orbit_cameras(azimuth, elevation, cameras.radius.cpu() * distance_scale, cameras.fov_deg.cpu())
    return lights.position.to(cameras.c2w.device)


TRAIN_MIN_SHADING_WEIGHT = 1e-4
"""Samples lighter than this get no normal (it costs 6 density queries) and so only ambient light."""


def shade(field, points: torch.Tensor, albedo: torch.Tensor, weights: torch.Tensor, dirs: torch.Tensor,
          light_pos: torch.Tensor, shading: str, min_weight: float = TRAIN_MIN_SHADING_WEIGHT,
          normal_gradient_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample colour [R, S, 3] and how much each sample's normal faces away from the camera [R, S]
    (max(0, n . d)^2, 0 where unlit: what DreamFusion's orientation loss penalises).

    Normals (6 extra density queries per point) are only computed where the sample's weight exceeds min_weight.
    normal_gradient_scale scales the gradient that reaches the density through the normals (the image is the
    same): 0 computes them without one, so the loss moves the density only through the compositing weights
    (silhouette and depth), not through the lighting.
    points/albedo [R, S, 3|3], weights [R, S], dirs [R, 3], light_pos [R, 3].
    """
    if shading == "albedo":
        return albedo, torch.zeros(points.shape[:-1], device=points.device)
    mask = weights.detach() > min_weight
    normals = torch.zeros_like(points)
    if mask.any():
        with torch.set_grad_enabled(normal_gradient_scale != 0 and torch.is_grad_enabled()):
            n = field.normals(points[mask])
        if n.requires_grad and normal_gradient_scale != 1:
            n = n.detach() + normal_gradient_scale * (n - n.detach())
        normals[mask] = n
    to_light = light_pos[:, None, :] - points
    to_light = to_light / to_light.pow(2).sum(-1, keepdim=True).sqrt().clamp(min=1e-9)
    if shading == "lambertian":
        color = lambertian(albedo, normals, to_light)
    else:
        color = textureless(normals, to_light)
    facing_away = (normals * dirs[:, None, :]).sum(-1).clamp(min=0)
    return color, facing_away**2
