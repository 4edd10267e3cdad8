"""Score Distillation Sampling, written once for every model family.

Given a differentiable image x (pixels for pixel-space models, latents for latent models):

    t ~ U[t_min, t_max(step)],  eps ~ N(0, I),  x_t = sqrt(ab_t) x + sqrt(1 - ab_t) eps
    eps_hat = eps_u + s * (eps_c - eps_u)                 (classifier-free guidance, diffusers' convention)
    grad = w(t) * (eps_hat - eps)                         (the UNet Jacobian is skipped: no backprop through it)
    loss = 0.5 * || x - stopgrad(x - grad) ||^2 / B       so that d loss / d x = grad / B

The UNet runs under ``torch.no_grad()``; the gradient reaches the render only through ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``eps_u + s * (eps_c - eps_u)`` (s = 1: conditional model alone)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def perpendicular_component(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The part of x [B, ...] perpendicular to y [B, ...], per sample: x - (<x, y> / |y|^2) y."""
    xf, yf = x.flatten(1), y.flatten(1)
    coef = (xf * yf).sum(1) / yf.pow(2).sum(1).clamp(min=1e-12)
    return x - coef.view(-1, *[1] * (x.ndim - 1)) * y


def perp_neg_combine(eps_uncond: torch.Tensor, eps_pos: torch.Tensor, eps_negs: list[torch.Tensor],
                     neg_weights: list[torch.Tensor], scale: float) -> torch.Tensor:
    """Perp-Neg (Armandpour et al. 2023): ``eps_u + s * (d_pos - sum_i w_i * perp(d_neg_i, d_pos))`` with
    ``d = eps - eps_u``. Only the part of each negative direction perpendicular to the positive one is pushed
    away, so a negative prompt that shares the positive's content ("a dog, back view" against "a dog, front
    view") removes the view, not the dog. neg_weights: one [B] tensor per negative (0: that negative is off)."""
    d_pos = eps_pos - eps_uncond
    total = d_pos
    for eps_neg, w in zip(eps_negs, neg_weights):
        total = total - w.view(-1, *[1] * (d_pos.ndim - 1)) * perpendicular_component(eps_neg - eps_uncond, d_pos)
    return eps_uncond + scale * total


def guided_noise(unet, x_t: torch.Tensor, t: torch.Tensor, uncond: torch.Tensor, cond: torch.Tensor,
                 scale: float, added_cond_kwargs: dict | None = None) -> torch.Tensor:
    """CFG epsilon [B, C, h, w] from one UNet call on the batch [uncond; cond].

    t is [B] or a scalar timestep; uncond and cond are [B, L, D]. Models with learned variance
    (DeepFloyd IF) predict [eps, variance]: only the first C channels are eps. added_cond_kwargs: extra UNet
    conditioning for the whole [2B] batch (SDXL's pooled embeddings and time ids).
    """
    eps_uncond, eps_cond = unet_noise(unet, x_t, t, [uncond, cond], added_cond_kwargs)
    return cfg_combine(eps_uncond, eps_cond, scale)


def unet_noise(unet, x_t: torch.Tensor, t: torch.Tensor, embeddings: list[torch.Tensor],
               added_cond_kwargs: dict | None = None) -> list[torch.Tensor]:
    """One UNet call on x_t repeated for each [B, L, D] embedding: the epsilon [B, C, h, w] of each (models
    with learned variance, DeepFloyd IF, predict [eps, variance]: only the first C channels are eps)."""
    k = len(embeddings)
    t_in = torch.cat([t] * k) if t.ndim else t
    # cat, not repeat: it keeps x_t's memory layout (channels-last from the render), and with it the UNet's
    # exact floating-point results (repeat makes it contiguous, which changes the last bits of every step).
    extra = {} if added_cond_kwargs is None else {"added_cond_kwargs": added_cond_kwargs}
    out = unet(torch.cat([x_t] * k).to(unet.dtype), t_in, encoder_hidden_states=torch.cat(embeddings), **extra).sample
    return list(out[:, : x_t.shape[1]].float().chunk(k))


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
"""What a diffusers UNet may predict (its scheduler's ``prediction_type``); SDS needs epsilon, so the others
are converted by ``to_epsilon``."""


def to_epsilon(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The noise epsilon implied by a model's output at x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.

    - "epsilon": the output is eps.
    - "v_prediction" (Salimans & Ho 2022; SD 2.x 768 and many fine-tunes): v = sqrt(ab) eps - sqrt(1 - ab) x0,
      so eps = sqrt(ab) v + sqrt(1 - ab) x_t.
    - "sample": the output is x0, so eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab).
    The conversion is affine in the output with the same offset for both CFG branches, so it may be applied
    before or after ``cfg_combine`` with the same result. alpha_bar broadcasts against x_t ([B, 1, 1, 1]).
    """
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * output + (1 - alpha_bar).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - alpha_bar.sqrt() * output) / (1 - alpha_bar).sqrt()
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; sds supports {', '.join(PREDICTION_TYPES)}")


def sample_timesteps(t_range: tuple[float, float], num_train_timesteps: int, batch: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """[B] integer timesteps uniform in [t_min, t_max] * num_train_timesteps (t_range: fractions)."""
    lo = int(round(t_range[0] * num_train_timesteps))
    hi = max(lo + 1, int(round(t_range[1] * num_train_timesteps)))
    hi = min(hi, num_train_timesteps - 1)
    lo = min(lo, hi)
    return torch.randint(lo, hi + 1, (batch,), generator=generator)


def sds_weight(kind: str, alpha_bar: torch.Tensor) -> torch.Tensor:
    """w(t) from alpha_bar_t: "one_minus_alpha_bar", "uniform" or "sqrt_one_minus_over_alpha_bar"."""
    if kind == "one_minus_alpha_bar":
        return 1 - alpha_bar
    if kind == "uniform":
        return torch.ones_like(alpha_bar)
    if kind == "sqrt_one_minus_over_alpha_bar":
        return ((1 - alpha_bar) / alpha_bar).sqrt()
    raise ValueError(f"unknown SDS weighting {kind!r}")


def sds_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Surrogate loss whose gradient w.r.t. x is grad / B (x and grad: [B, C, H, W])."""
    target = (x - grad).detach()
    return 0.5 * ((x - target) ** 2).sum() / x.shape[0]


@dataclass
class SDSOutput:
    loss: torch.Tensor  # scalar surrogate loss (backpropagate this)
    grad_norm: float  # mean L2 norm of the per-image SDS gradient
    timesteps: torch.Tensor  # [B]


def score_distillation(
    x: torch.Tensor,
    predict_noise,
    alphas_cumprod: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    weighting: str,
) -> SDSOutput:
    """One SDS evaluation on x [B, C, H, W] (in the model's input range) at integer timesteps t [B] with the
    noise eps [B, C, H, W] (both given, as to diffusers' ``add_noise``: the caller draws them).

    ``predict_noise(x_t, t)`` returns the CFG-combined noise prediction [B, C, H, W]; it is called under
    ``torch.no_grad()``, so nothing of the model enters the autograd graph. Raises FloatingPointError when the
    gradient is not finite.
    """
    t = t.to(x.device)
    noise = noise.to(device=x.device, dtype=x.dtype)
    ab = alphas_cumprod.to(x.device, torch.float32)[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        x_t = ab.sqrt() * x.detach() + (1 - ab).sqrt() * noise
        eps_hat = predict_noise(x_t, t)
        grad = sds_weight(weighting, ab) * (eps_hat.float() - noise.float())
        if not torch.isfinite(grad).all():  # a broken guidance signal is a failed run, never a silent zero
            raise FloatingPointError(f"the SDS gradient is not finite at t = {t.tolist()} (the model's output "
                                     "overflowed or is NaN)")
    grad_norm = float(grad.flatten(1).pow(2).sum(1).sqrt().mean())
    return SDSOutput(sds_loss(x, grad.to(x.dtype)), grad_norm, t)
