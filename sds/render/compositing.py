"""Volume compositing, once for both kinds of samples: dense ([R, S] per ray, the pure-torch path and the
reference) and packed ([N] samples with the ray of each, nerfacc's occupancy-grid path on CUDA)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RaySamples:
    """Where rays are evaluated. Dense: t and deltas [R, S]. Packed: t and deltas [N] and ray_indices [N] of
    n_rays rays (nerfacc's layout)."""

    t: torch.Tensor
    """Distance of each sample (the middle of its interval) along its ray."""
    deltas: torch.Tensor
    """Length of each sample's interval."""
    ray_indices: torch.Tensor | None = None
    n_rays: int | None = None

    @property
    def packed(self) -> bool:
        return self.ray_indices is not None


def composite_weights(density: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample weights and transmittance along dense rays.

    density, deltas: [R, S] (density per world unit, sample interval lengths).
    alpha_i = 1 - exp(-sigma_i * delta_i); T_i = exp(-sum_{j<i} sigma_j delta_j); w_i = T_i * alpha_i.
    Returns weights [R, S] and transmittance [R, S]. The opacity of a ray is ``weights.sum(-1)``.
    """
    tau = density * deltas
    exclusive = torch.cumsum(tau, dim=-1) - tau
    transmittance = torch.exp(-exclusive)
    alpha = 1 - torch.exp(-tau)
    return transmittance * alpha, transmittance


def sample_weights(density: torch.Tensor, samples: RaySamples) -> torch.Tensor:
    """w_i = T_i * alpha_i for dense [R, S] or packed [N] samples (the packed formula is nerfacc's)."""
    if not samples.packed:
        return composite_weights(density, samples.deltas)[0]
    from nerfacc import render_weight_from_density

    starts = samples.t - samples.deltas / 2
    weights, _, _ = render_weight_from_density(starts, starts + samples.deltas, density,
                                               ray_indices=samples.ray_indices, n_rays=samples.n_rays)
    return weights


def along_rays(weights: torch.Tensor, values: torch.Tensor | None, samples: RaySamples | None = None) -> torch.Tensor:
    """sum_i w_i * v_i per ray: dense weights [R, S] and values [R, S, C] (or None: the weights alone) -> [R, C]
    (or [R]); packed weights [N] and values [N, C] -> [n_rays, C] (or [n_rays])."""
    if samples is None or not samples.packed:
        return weights.sum(-1) if values is None else (weights[..., None] * values).sum(-2)
    from nerfacc import accumulate_along_rays

    out = accumulate_along_rays(weights, values, ray_indices=samples.ray_indices, n_rays=samples.n_rays)
    return out[:, 0] if values is None else out


def accumulate_color(weights: torch.Tensor, color: torch.Tensor, color_depth_gradient_scale: float = 1.0,
                     samples: RaySamples | None = None) -> torch.Tensor:
    """sum_i w_i * c_i along rays, with the weights' gradient reshaped: [R, 3] (shapes as in ``along_rays``).

    The image is the same for any scale; what changes is what the density learns from it. The weights' true
    gradient is c_i: a surface moves in depth to show the colour behind or in front of it, so blotches in the
    albedo drag the surface into bumps. With scale s the weights see s * c_i + (1 - s) * (the ray's mean colour):
    at 0 every sample of a ray looks alike and only the ray's opacity (the silhouette) moves the density.
    """
    if color_depth_gradient_scale == 1 or not weights.requires_grad:
        return along_rays(weights, color, samples)
    fixed = weights.detach()
    rgb = along_rays(fixed, color, samples)  # the value, and the gradient that reaches the colours
    mean = rgb.detach() / along_rays(fixed, torch.ones_like(color[..., :1]), samples).clamp(min=1e-6)
    per_sample = mean[samples.ray_indices] if samples is not None and samples.packed else \
        mean[:, None, :].expand_as(color)
    seen = color_depth_gradient_scale * color.detach() + (1 - color_depth_gradient_scale) * per_sample
    return rgb + along_rays(weights - fixed, seen, samples)  # adds 0, and the reshaped gradient to the weights
