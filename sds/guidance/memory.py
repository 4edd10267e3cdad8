"""Memory savers for the frozen model, chosen by guidance keys and applied once, where the model loads.

None changes what SDS computes: each trades time (or nothing) for memory, and the gradient a step gives is the same
to float rounding (tests/guidance/test_memory.py). ``benchmarks/model_scale.py`` applies them through this same
function, so a figure measured with a saver is what a run with the key gets.
"""

from __future__ import annotations

import logging

import torch

from sds.config import GuidanceConfig

log = logging.getLogger(__name__)


def apply_memory_savers(parts: dict, cfg: GuidanceConfig) -> list[str]:
    """Set the savers `cfg` asks for on the loaded parts ("unet", and "vae" for latent models; a missing or None
    VAE is skipped); returns the names of those applied.

    - attention_slicing: the UNet's attention computed heads / 2 (image, head) pairs at a time (diffusers' "auto"
      slice) instead of in one call of torch's fused scaled_dot_product_attention. It holds one [heads / 2, N, N]
      score matrix at a time, which saves memory only where the fused kernel would build the whole one (no
      memory-efficient kernel for the device or dtype); elsewhere it costs time for nothing.
    - vae_checkpointing: the VAE encoder keeps no activations for the backward pass to the render and recomputes
      them there (one more encoder pass per step). The UNet runs without gradient, so at SDXL's 1024 px these are
      most of what a step keeps (reasoned from the shapes; the benchmark has not run SDXL without the saver).
    - channels_last: the UNet's and VAE's convolution weights in NHWC layout, the one cuDNN's fast kernels use.
    """
    unet, vae = parts["unet"], parts.get("vae")
    applied = []
    if cfg.attention_slicing:
        unet.set_attention_slice("auto")
        applied.append("attention_slicing")
    if cfg.vae_checkpointing and vae is not None:
        vae.enable_gradient_checkpointing()
        applied.append("vae_checkpointing")
    elif cfg.vae_checkpointing:
        log.info("guidance.vae_checkpointing: this model has no VAE (a pixel-space model); nothing to checkpoint")
    if cfg.channels_last:
        for module in (unet, vae):
            if module is not None:
                module.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    if applied:
        log.info("memory savers: %s", ", ".join(applied))
    return applied
