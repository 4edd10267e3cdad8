"""Volume compositing in pure torch: the CPU path, and the reference the nerfacc path is tested against
(accumulate_color also takes the nerfacc path's packed samples)."""

from __future__ import annotations

import torch


def composite_weights(density: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample weights and transmittance along rays.

    density, deltas: [R, S] (density per world unit, sample interval lengths).
    alpha_i = 1 - exp(-sigma_i * delta_i); T_i = exp(-sum_{j<i} sigma_j delta_j); w_i = T_i * alpha_i.
    Returns weights [R, S] and transmittance [R, S]. The opacity of a ray is ``weights.sum(-1)``.
    """
    tau = density * deltas
    exclusive = torch.cumsum(tau, dim=-1) - tau
    transmittance = torch.exp(-exclusive)
    alpha = 1 - torch.exp(-tau)
    return transmittance * alpha, transmittance


def accumulate(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_i w_i * v_i along rays: weights [R, S], values [R, S, C] -> [R, C]."""
    return (weights[..., None] * values).sum(-2)


def accumulate_color(weights: torch.Tensor, color: torch.Tensor, color_depth_gradient_scale: float = 1.0,
                     ray_indices: torch.Tensor | None = None, n_rays: int | None = None) -> torch.Tensor:
    """sum_i w_i * c_i along rays, with the weights' gradient reshaped: [n_rays, 3].

    Dense samples: weights [R, S], color [R, S, 3]. Packed samples (the nerfacc path): weights [N], color [N, 3]
    and the ray of each, ray_indices [N], of n_rays.

    The image is the same for any scale; what changes is what the density learns from it. The weights' true
    gradient is c_i: a surface moves in depth to show the colour behind or in front of it, so blotches in the
    albedo drag the surface into bumps. With scale s the weights see s * c_i + (1 - s) * (the ray's mean colour):
    at 0 every sample of a ray looks alike and only the ray's opacity (the silhouette) moves the density.
    """

    def along_rays(w: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        if ray_indices is None:
            return accumulate(w, values)
        from nerfacc import accumulate_along_rays

        return accumulate_along_rays(w, values, ray_indices=ray_indices, n_rays=n_rays)

    if color_depth_gradient_scale == 1 or not weights.requires_grad:
        return along_rays(weights, color)
    fixed = weights.detach()
    rgb = along_rays(fixed, color)  # the value, and the gradient that reaches the colours
    mean = rgb.detach() / along_rays(fixed, torch.ones_like(color[..., :1])).clamp(min=1e-6)
    per_sample = mean[:, None, :].expand_as(color) if ray_indices is None else mean[ray_indices]
    seen = color_depth_gradient_scale * color.detach() + (1 - color_depth_gradient_scale) * per_sample
    return rgb + along_rays(weights - fixed, seen)  # adds 0, and the reshaped gradient to the weights
