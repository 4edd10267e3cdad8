"""SDXL: a latent model whose UNet also takes a pooled text embedding and "time ids" (original size, crop
offset, target size), and whose text embedding joins two encoders' penultimate layers (``encode_prompts``)."""

from __future__ import annotations

import torch

from sds.guidance.latent import LatentGuidance
from sds.guidance.sds import cfg_combine, to_epsilon


class SDXLGuidance(LatentGuidance):
    def time_ids(self, batch: int) -> torch.Tensor:
        """[B, 6]: the render is a full, uncropped image at the model's own size (no crop conditioning)."""
        s = float(self.image_size)
        return torch.tensor([[s, s, 0.0, 0.0, s, s]], device=self.device, dtype=self.dtype).expand(batch, -1)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, scale: float,
                      labels: list[str | None] | None = None) -> torch.Tensor:
        """CFG epsilon with the pooled embeddings of the same views as cond (labels; None: no view phrase)."""
        batch = x_t.shape[0]
        labels = labels if labels is not None else [None] * batch
        e = self.embeddings
        pooled = torch.cat([e.pooled_uncond.expand(batch, -1), e.pooled_for_views(labels)])
        out = self.unet(torch.cat([x_t, x_t]).to(self.dtype), torch.cat([t, t]),
                        encoder_hidden_states=torch.cat([e.uncond.expand(batch, -1, -1), cond]),
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": self.time_ids(2 * batch)}).sample
        eps_uncond, eps_cond = out[:, : x_t.shape[1]].float().chunk(2)
        alpha_bar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return to_epsilon(cfg_combine(eps_uncond, eps_cond, scale), x_t.float(), alpha_bar, self.prediction_type)
