"""Procedural training images for the built-in prior: sphere-traced primitives, Lambertian shading.

Deterministic from a seed. The cameras are the world's own (the built-in recipe's training cameras are the
same), and lights and shading are ``sds.field.shading``'s, so what the NeRF renders during distillation looks
like what the prior saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sds.cameras import camera_rays, sample_orbit_cameras, view_label
from sds.field.shading import AMBIENT, LIGHT_JITTER_DEG, lambertian, sample_light_positions
from sds.prior.world import BACKGROUND_RGB, COLORS, SDF, SHAPES


@dataclass(frozen=True)
class DataConfig:
    """How the prior's training set is made."""

    images_per_caption: int = 1000
    resolution: int = 32  # stored images are resolution x resolution
    supersample: int = 2  # rendered at resolution * supersample, then average-pooled (anti-aliasing)
    radius_range: tuple[float, float] = (2.3, 2.7)
    elevation_range_deg: tuple[float, float] = (-10.0, 60.0)
    fov_range_deg: tuple[float, float] = (36.0, 44.0)
    light_jitter_deg: float = LIGHT_JITTER_DEG
    ambient: float = AMBIENT
    seed: int = 0


@dataclass
class PriorDataset:
    images: torch.Tensor  # [N, 3, H, W] uint8
    shape_index: torch.Tensor  # [N] index into SHAPES
    color_index: torch.Tensor  # [N] index into COLORS
    views: list[str]  # [N] view label of each image's camera


def sphere_trace(shape: str, origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float,
                 max_steps: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """March rays [R, 3] against an exact SDF. Returns hit points [R, 3] and a hit mask [R]."""
    fn = SDF[shape]
    t = torch.full(origins.shape[:1], near)
    active = torch.ones_like(t, dtype=torch.bool)
    hit = torch.zeros_like(active)
    for _ in range(max_steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        d = fn(origins[idx] + t[idx, None] * dirs[idx])
        t[idx] += d
        converged = d < 1e-4
        escaped = t[idx] > far
        hit[idx[converged]] = True
        # Frozen rays stop stepping: tiny steps on converged rays run into slow denormals.
        active[idx[converged | escaped]] = False
    return origins + t[:, None] * dirs, hit


def sdf_normals(shape: str, points: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    fn = SDF[shape]
    offsets = torch.eye(3) * eps
    grad = torch.stack([fn(points + o) - fn(points - o) for o in offsets], dim=-1)
    return grad / grad.pow(2).sum(-1, keepdim=True).sqrt().clamp(min=1e-12)


def render_primitive(shape: str, albedo: torch.Tensor, cfg: DataConfig, generator: torch.Generator,
                     batch: int) -> tuple[torch.Tensor, list[str]]:
    """Render `batch` images of one shape with per-image albedo [batch, 3]: returns [B, 3, H, W] float."""
    cams = sample_orbit_cameras(batch, cfg.radius_range, cfg.elevation_range_deg, cfg.fov_range_deg, generator)
    # A random start azimuth per image, so stratification in the sampler does not order the data set.
    size = cfg.resolution * cfg.supersample
    origins, dirs = camera_rays(cams, size, size)
    lights = sample_light_positions(cams, cfg.light_jitter_deg, generator)  # [B, 3]
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    points, hit = sphere_trace(shape, o, d, near=float(cams.radius.min()) - 1.0, far=float(cams.radius.max()) + 1.0)
    rgb = torch.tensor(BACKGROUND_RGB).expand(o.shape[0], 3).clone()
    if hit.any():
        normals = sdf_normals(shape, points[hit])
        ray_image = torch.arange(batch).repeat_interleave(size * size)[hit]
        to_light = lights[ray_image] - points[hit]
        to_light = to_light / to_light.pow(2).sum(-1, keepdim=True).sqrt()
        rgb[hit] = lambertian(albedo[ray_image], normals, to_light, cfg.ambient)
    images = rgb.reshape(batch, size, size, 3).permute(0, 3, 1, 2)
    images = F.avg_pool2d(images, cfg.supersample)
    labels = [view_label(float(a), float(e)) for a, e in zip(cams.azimuth_deg, cams.elevation_deg)]
    return images, labels


def make_dataset(cfg: DataConfig, show_progress: bool = False) -> PriorDataset:
    """Render images_per_caption images of every shape x colour pair."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(cfg.seed)
    colors = torch.tensor(list(COLORS.values()))
    images, shapes, color_ids, views = [], [], [], []
    chunk = 250
    jobs = [(s, c, start) for s in range(len(SHAPES)) for c in range(len(colors))
            for start in range(0, cfg.images_per_caption, chunk)]
    for s, c, start in tqdm(jobs, desc="rendering prior data", disable=not show_progress):
        n = min(chunk, cfg.images_per_caption - start)
        albedo = colors[c].expand(n, 3)
        imgs, labels = render_primitive(SHAPES[s], albedo, cfg, generator, n)
        images.append((imgs.clamp(0, 1) * 255).round().to(torch.uint8))
        shapes += [s] * n
        color_ids += [c] * n
        views += labels
    return PriorDataset(torch.cat(images), torch.tensor(shapes), torch.tensor(color_ids), views)


def caption(shape: str, color: str, view: str | None) -> str:
    """"a red cube" or "a red cube, side view" (the phrase the prompt processor appends)."""
    base = f"a {color} {shape}"
    return f"{base}, {view} view" if view else base


def sample_captions(data: PriorDataset, index: torch.Tensor, rng: random.Random, view_prob: float,
                    drop_prob: float) -> list[str]:
    """Captions for a batch: the view phrase with probability view_prob, empty with drop_prob (for CFG)."""
    colors = list(COLORS)
    out = []
    for i in index.tolist():
        if rng.random() < drop_prob:
            out.append("")
            continue
        view = data.views[i] if rng.random() < view_prob else None
        out.append(caption(SHAPES[int(data.shape_index[i])], colors[int(data.color_index[i])], view))
    return out
