"""Where along each ray to evaluate the field."""

from __future__ import annotations

import torch


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances [R] of rays [R, 3] through the cube [-bound, bound]^3 (near >= 0).

    Rays that miss get near == far.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (-bound - origins) * inv
    t1 = (bound - origins) * inv
    near = torch.minimum(t0, t1).max(-1).values.clamp(min=0)
    far = torch.maximum(t0, t1).min(-1).values
    far = torch.maximum(far, near)
    return near, far


def stratified_samples(near: torch.Tensor, far: torch.Tensor, n_samples: int, perturb: bool,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n_samples per ray between near and far [R]: one per equal bin, jittered inside it when perturb.

    Returns sample distances t [R, S] (bin centres or jittered) and interval lengths deltas [R, S].
    """
    r = near.shape[0]
    bins = torch.linspace(0, 1, n_samples + 1, device=near.device, dtype=near.dtype)
    if perturb:
        u = torch.rand(r, n_samples, generator=generator).to(near.device, near.dtype)
    else:
        u = torch.full((r, n_samples), 0.5, device=near.device, dtype=near.dtype)
    frac = bins[:-1] + (bins[1:] - bins[:-1]) * u
    span = (far - near)[:, None]
    t = near[:, None] + span * frac
    deltas = (span / n_samples).expand(r, n_samples)
    return t, deltas
