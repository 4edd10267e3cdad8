"""SDXL: a latent model whose UNet also takes a pooled text embedding and "time ids" (original size, crop
offset, target size), and whose text embedding joins two encoders' penultimate layers (``encode_prompts``)."""

from __future__ import annotations

import torch

from sds.guidance.latent import LatentGuidance


class SDXLGuidance(LatentGuidance):
    family = "sdxl"

    def time_ids(self, batch: int) -> torch.Tensor:
        """[B, 6]: the render is a full, uncropped image at the model's own size (no crop conditioning)."""
        s = float(self.image_size)
        return torch.tensor([[s, s, 0.0, 0.0, s, s]], device=self.device, dtype=self.dtype).expand(batch, -1)

    def added_conditions(self, labels: list[str | None] | None, batch: int,
                         negative_views: list[list[str | None]] | None = None) -> dict:
        """The pooled embeddings of [uncond; the cameras' views (labels; None: no view phrase); each Perp-Neg
        negative slot's views], the same order as the UNet's batch of text embeddings, and a time id per row."""
        e = self.embeddings
        views = [labels if labels is not None else [None] * batch, *(negative_views or [])]
        pooled = torch.cat([e.pooled_uncond.expand(batch, -1), *(e.pooled_for_views(v) for v in views)])
        return {"text_embeds": pooled, "time_ids": self.time_ids(pooled.shape[0])}
