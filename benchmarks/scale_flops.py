"""FLOPs of one SDS step, counted on the meta device, and a device's matrix-product peak: the floor of a step.

A step's work is one VAE encode of the render (with gradient), one UNet call on the [uncond; cond] batch and the
backward pass to the render. ``count_flops`` runs exactly those, through sds's own guidance classes
(``LatentGuidance``, ``SDXLGuidance``, ``PixelGuidance``), on modules built on the meta device from the published
configs (``model_shapes``), under ``torch.utils.flop_counter.FlopCounterMode``. Meta tensors have shapes and no
data, so this takes seconds and no memory at any model size; FLOPs do not depend on the device. Only matrix
products, convolutions and attention are counted (the counter's registry): norms and pointwise ops, which are
bound by memory traffic rather than arithmetic, are not in the floor.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from model_shapes import FAMILIES, make_scheduler, make_unet, make_vae, text_config

SPEC_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "RTX 4090": 165.0}
"""Dense fp16/bf16 tensor-core peak (TFLOP/s, vendor data sheets, SXM parts) by a substring of the device name;
printed beside the measured matrix-product throughput, which is the one the floor uses."""


SAVER_KEYS = {"attention-slicing": "attention_slicing", "vae-checkpointing": "vae_checkpointing",
              "channels-last": "channels_last"}
"""The benchmark's memory savers that are sds's own guidance keys, applied as a run applies them
(``sds.guidance.memory.apply_memory_savers``); "vae-tiling", an approximation, is the benchmark's alone."""


def with_savers(guidance_cfg, savers: tuple[str, ...]):
    """guidance_cfg with the keys of the savers asked for turned on."""
    return dataclasses.replace(guidance_cfg, **{SAVER_KEYS[s]: True for s in savers if s in SAVER_KEYS})


def meta_guidance(name: str, tiny: bool, guidance_cfg, savers: tuple[str, ...] = ()):
    """The family's sds guidance object with its UNet and VAE on the meta device and meta prompt embeddings."""
    import diffusers

    from sds.guidance.latent import LatentGuidance
    from sds.guidance.load import model_family
    from sds.guidance.memory import apply_memory_savers
    from sds.guidance.pixel import PixelGuidance
    from sds.guidance.sdxl import SDXLGuidance
    from sds.prompt import PromptEmbeddings

    diffusers.utils.logging.set_verbosity_error()  # as sds's loader does; casting a VAE to float32 warns
    family = FAMILIES[name]
    guidance_cfg = with_savers(guidance_cfg, savers)
    with torch.device("meta"):
        unet, vae = make_unet(family, tiny), make_vae(family, tiny)
        configs = [text_config(e, tiny) for e in family.text_encoders]
        width = sum(c.get("hidden_size", c.get("d_model", 0)) for c in configs)
        hidden = torch.zeros(1, 77, width)
        pooled = torch.zeros(1, configs[-1]["projection_dim"]) if len(configs) > 1 else None
    apply_memory_savers({"unet": unet, "vae": vae}, guidance_cfg)
    embeddings = PromptEmbeddings(hidden, {"": hidden}, pooled, None if pooled is None else {"": pooled})
    kind = model_family({"vae": vae, "text_encoder_2": True if len(configs) > 1 else None})
    cls = {"sdxl": SDXLGuidance, "latent": LatentGuidance, "pixel": PixelGuidance}[kind]
    args = (unet, vae) if vae is not None else (unet,)
    guidance = cls(*args, make_scheduler(family), embeddings, guidance_cfg, f"{name} (meta)")
    if "vae-tiling" in savers:
        apply_vae_tiling(guidance)
    return guidance


def apply_vae_tiling(guidance) -> None:
    """The VAE encodes overlapping tiles of half the input's side, 9 of them, blended: an approximation (so not an
    sds key) that does 2.25x the encoder's work; it lowers the peak only together with vae-checkpointing, since
    without it every tile's activations are kept for the backward pass. Nothing for a pixel-space model."""
    vae = getattr(guidance, "vae", None)
    if vae is not None:
        vae.use_tiling = True
        vae.tile_sample_min_size = guidance.image_size // 2
        vae.tile_latent_min_size = guidance.image_size // 2 // guidance.vae_scale


def count_flops(guidance, render_px: int, batch: int = 1) -> dict[str, float]:
    """FLOPs of one step's encode (render [batch, 3, render_px, render_px] -> the UNet's input, with gradient), UNet
    call on the [uncond; cond] batch (one CFG evaluation at t = 500), and backward pass to the render."""
    from torch.utils.flop_counter import FlopCounterMode

    device = guidance.device
    rgb = torch.rand(batch, 3, render_px, render_px, device=device, requires_grad=True)
    cond = guidance.embeddings.for_views([None] * batch)
    t = torch.full((batch,), 500, device=device, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        x = guidance.encode(rgb)
        encode = counter.get_total_flops()
        with torch.no_grad():
            guidance.predict_noise(x.detach(), t, cond, 100.0, [None] * batch)
        unet = counter.get_total_flops() - encode
        if x.requires_grad:
            x.backward(torch.ones_like(x))
        backward = counter.get_total_flops() - encode - unet
    return {"encode": float(encode), "unet": float(unet), "backward": float(backward),
            "total": float(encode + unet + backward)}


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 10,
                  tf32: bool = False) -> float:
    """Measured throughput (TFLOP/s) of a square matrix product on random data, after three warm-ups: the
    device's practical peak for this dtype (on an H200 about 790 in bf16 against a 989 data-sheet figure).
    tf32: let a float32 product use TF32 tensor cores, as cuDNN's float32 convolutions do by default."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        for _ in range(3):
            a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def spec_tflops(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its data-sheet fp16/bf16 dense peak (None when not in SPEC_TFLOPS)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in SPEC_TFLOPS.items() if k in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
