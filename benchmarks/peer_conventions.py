"""sds's SDS gradient against the two peers' conventions, on one model, timestep and noise.

    python benchmarks/peer_conventions.py [--family sd21-base] [--t 500] [--scale 100]

Loads a tiny folder of the family (model_shapes, built from its published config with small widths) through
sds's loader, encodes one random image, and compares the gradient on the latents that sds's own
``score_distillation`` gives (backpropagated, times the batch size) with the formulas of
- threestudio (``stable_diffusion_guidance.py``, without Perp-Neg): eps_hat = eps_c + s (eps_c - eps_u);
- stable-dreamfusion (``guidance/sd_utils.py``): eps_hat = eps_u + s (eps_c - eps_u);
both with grad = (1 - alpha_bar_t) (eps_hat - eps), from the same UNet outputs, x_t, t and noise. The formulas are
written here from the peers' code as read; neither peer is installed. The latents are the VAE posterior's mean for
all three (the peers sample the posterior; with random VAE weights the size of that difference would mean
nothing, so it is not compared here).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from model_scale import quiet_progress, run_config
from model_shapes import FAMILY_NAMES, build_folder


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def main() -> None:
    from sds.guidance.load import load_guidance
    from sds.guidance.sds import score_distillation, unet_noise

    p = argparse.ArgumentParser()
    p.add_argument("--family", default="sd21-base", choices=[f for f in FAMILY_NAMES if f != "if-i"])
    p.add_argument("--t", type=int, default=500)
    p.add_argument("--scale", type=float, default=100.0)
    args = p.parse_args()
    quiet_progress()
    folder = build_folder(args.family, Path(tempfile.mkdtemp()) / args.family, tiny=True)
    cfg = run_config(folder, fp16=False)
    guidance, _ = load_guidance(cfg.guidance, "a red cube", torch.device("cpu"))
    assert cfg.guidance.weighting == "one_minus_alpha_bar"  # the dreamfusion recipe's w(t), as both peers'
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, guidance.image_size, guidance.image_size, generator=g)
    with torch.no_grad():
        latents = guidance.encode(images)
    t = torch.tensor([args.t])
    noise = torch.randn(latents.shape, generator=g)
    ab = guidance.alphas_cumprod[t].view(-1, 1, 1, 1)
    cond = guidance.embeddings.for_views([None])
    with torch.no_grad():
        x_t = ab.sqrt() * latents + (1 - ab).sqrt() * noise
        eps_u, eps_c = unet_noise(guidance.unet, x_t, t, [guidance.embeddings.uncond, cond],
                                  guidance.added_conditions([None], 1))

    def ours(scale: float) -> torch.Tensor:
        x = latents.clone().requires_grad_(True)
        out = score_distillation(x, lambda x_t, t: guidance.predict_noise(x_t, t, cond, scale, [None]),
                                 guidance.alphas_cumprod, t, noise, "one_minus_alpha_bar")
        out.loss.backward()
        return x.grad * x.shape[0]  # sds's loss is divided by the batch size

    threestudio = (1 - ab) * (eps_c + args.scale * (eps_c - eps_u) - noise)
    stable_dreamfusion = (1 - ab) * (eps_u + args.scale * (eps_c - eps_u) - noise)
    s = args.scale
    print(f"{args.family} (tiny, random weights), t = {args.t}, the latents' posterior mean, one noise draw:")
    print(f"  sds s={s + 1:g} vs threestudio s={s:g}: relative max difference {relative(ours(s + 1), threestudio):.2e}")
    print(f"  sds s={s:g} vs threestudio s={s:g}: {relative(ours(s), threestudio):.2e}")
    print(f"  sds s={s:g} vs stable-dreamfusion s={s:g}: {relative(ours(s), stable_dreamfusion):.2e}")


if __name__ == "__main__":
    main()
