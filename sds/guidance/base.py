"""The guidance interface shared by every model family.

A family differs only in how a render becomes the UNet's input (``encode``): pixel-space models take the
resized image, latent models its VAE encoding. Everything else (CFG, timesteps, w(t), the Jacobian-free
loss) is ``sds.guidance.sds``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch

from sds.config import GuidanceConfig
from sds.guidance.sds import (
    SDSOutput,
    guided_noise,
    perp_neg_combine,
    sample_timesteps,
    score_distillation,
    to_epsilon,
    unet_noise,
)
from sds.prompt import PromptEmbeddings, perp_neg_views

if TYPE_CHECKING:
    from sds.schedule import StepPlan

GuidanceOutput = SDSOutput


class Guidance:
    """SDS from a frozen UNet. Subclasses implement ``encode(images [B, 3, H, W] in [0, 1])``."""

    family = ""
    """The model family ("pixel", "latent", "sdxl": ``sds.guidance.load.model_family``), recorded in run.json."""

    def __init__(self, unet, scheduler, embeddings: PromptEmbeddings, cfg: GuidanceConfig, model_id: str):
        self.unet = unet.eval().requires_grad_(False)
        self.cfg = cfg
        self.model_id = model_id
        self.device = next(unet.parameters()).device
        self.dtype = next(unet.parameters()).dtype
        self.embeddings = embeddings.to(self.device, self.dtype)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.prediction_type = str(getattr(scheduler.config, "prediction_type", "epsilon"))
        """What the UNet predicts; its output is converted to epsilon before SDS (``to_epsilon``)."""

    @property
    def image_size(self) -> int:
        """Side of the square image the model is given (pixels)."""
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 3, S, S] at the model's input size (bilinear, antialiased when shrinking)."""
        size = self.image_size
        if images.shape[-1] == size and images.shape[-2] == size:
            return images
        return torch.nn.functional.interpolate(images, (size, size), mode="bilinear", align_corners=False,
                                               antialias=images.shape[-1] > size)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, scale: float,
                      labels: list[str | None] | None = None) -> torch.Tensor:
        """CFG-combined epsilon (guidance scale `scale`) for x_t [B, C, h, w] at timesteps t [B] and conditional
        embeddings cond [B, L, D] of the cameras' view labels (families that condition on more than cond, SDXL,
        read them); a v- or sample-predicting model's output is converted to epsilon."""
        uncond = self.embeddings.uncond.expand(x_t.shape[0], -1, -1)
        output = guided_noise(self.unet, x_t, t, uncond, cond, scale, self.added_conditions(labels, x_t.shape[0]))
        alpha_bar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return to_epsilon(output, x_t.float(), alpha_bar, self.prediction_type)

    def added_conditions(self, labels: list[str | None] | None, batch: int,
                         negative_views: list[list[str | None]] | None = None) -> dict | None:
        """Extra UNet conditioning for the [uncond; cond; negatives...] batch of `batch` cameras: cond's view labels
        (None: no view phrase), then those of each Perp-Neg negative slot. None: the UNet takes none."""
        return None

    def predict_noise_perp_neg(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                               labels: list[str | None], scale: float) -> torch.Tensor:
        """Perp-Neg epsilon: one UNet call on [uncond; cond; 2 negative views] (``perp_neg_combine``). The
        combination uses differences from the unconditional output, so converting v or x0 to epsilon after it
        gives the same result as before it (the conversion scales every difference by the same sqrt(ab))."""
        uncond = self.embeddings.uncond.expand(x_t.shape[0], -1, -1)
        views, weights = perp_neg_views(labels, self.cfg.perp_neg_weight)
        negatives = [self.embeddings.for_views(v) for v in views]
        extra = self.added_conditions(labels, x_t.shape[0], views)
        eps_uncond, eps_pos, *eps_negs = unet_noise(self.unet, x_t, t, [uncond, cond, *negatives], extra)
        output = perp_neg_combine(eps_uncond, eps_pos, eps_negs, [w.to(x_t.device) for w in weights], scale)
        alpha_bar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return to_epsilon(output, x_t.float(), alpha_bar, self.prediction_type)

    def __call__(self, rgb: torch.Tensor, view_labels: list[str | None], p: StepPlan,
                 generator: torch.Generator | None = None) -> SDSOutput:
        """SDS loss for renders rgb [B, H, W, 3] in [0, 1] (channels-last) seen from cameras with view_labels, at
        the plan's guidance scale and timestep range (``sds.schedule.plan``)."""
        images = rgb.permute(0, 3, 1, 2).to(self.device)
        x = self.encode(images)
        labels = view_labels if self.cfg.view_dependent_prompts else [None] * len(view_labels)
        cond = self.embeddings.for_views(labels)
        scale = p.guidance_scale
        if self.cfg.perp_neg:
            predict = partial(self.predict_noise_perp_neg, cond=cond, labels=labels, scale=scale)
        else:
            predict = partial(self.predict_noise, cond=cond, scale=scale, labels=labels)
        t = sample_timesteps(p.t_range, self.alphas_cumprod.shape[0], x.shape[0], generator)
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
        return score_distillation(x, predict, self.alphas_cumprod, t, noise, self.cfg.weighting)
