"""Volume compositing in pure torch (the CPU path, and the reference the nerfacc path is tested against)."""

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
