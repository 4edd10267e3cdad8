"""Pixel-space models (the built-in prior, DeepFloyd IF stage I): SDS directly on the resized render."""

from __future__ import annotations

import torch

from sds.guidance.base import Guidance


class PixelGuidance(Guidance):
    family = "pixel"

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, 3, S, S] in [-1, 1], differentiably."""
        return self.resize(images) * 2 - 1
