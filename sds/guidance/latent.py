"""Latent models (Stable Diffusion 1.x / 2.x): render -> VAE input size -> VAE encode (with gradient) -> SDS."""

from __future__ import annotations

import torch

from sds.guidance.base import Guidance


class LatentGuidance(Guidance):
    family = "latent"

    def __init__(self, unet, vae, scheduler, embeddings, cfg, model_id: str):
        super().__init__(unet, scheduler, embeddings, cfg, model_id)
        # The VAE is frozen too, but the gradient must flow through its encoder back to the render. It runs in the
        # dtype the loader gave it (``sds.guidance.load.vae_dtype``: float32 unless its config allows float16).
        self.vae = vae.eval().requires_grad_(False)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", 0.18215))

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> latents [B, 4, S/8, S/8]: the mean of the VAE posterior, scaled."""
        x = self.resize(images) * 2 - 1
        latents = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean
        return latents.float() * self.scaling_factor
