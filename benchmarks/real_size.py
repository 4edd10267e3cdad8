"""One SDS step through a full-size Stable Diffusion 2.1-base (random weights, built from its published config):
how long it takes and how much memory it needs on this machine. No weights can be downloaded here, and
random weights cost exactly what trained ones do.

    OMP_NUM_THREADS=2 python benchmarks/real_size.py [--steps 3] [--render 128] [--device cpu]

benchmarks/model_scale.py does this for five model families, through sds's loader and split by part; this script
times the guidance objects built directly, as sds.doctor's memory estimate was calibrated on (docs/benchmarks.md).

Builds the UNet (866M parameters), the VAE and the 23-layer OpenCLIP-H text encoder (with the built-in prior's
word-level tokenizer at 77 tokens: the text encoder runs once per run, so its tokenizer does not matter here), then
times the guidance part of a training step: a [1, render, render, 3] image resized to 512 px, VAE-encoded with
gradient, the UNet on [uncond; cond] at 64 x 64 latents, and the backward pass to the image. Prints the seconds
per step (median) and the peak resident memory (CPU) or the peak allocated memory (CUDA).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sds.config import GuidanceConfig, RunConfig, constant
from sds.guidance.latent import LatentGuidance
from sds.prompt import encode_prompts
from sds.run import peak_memory_mb
from sds.schedule import plan


def sd21_base(device: torch.device):
    """UNet, VAE, scheduler and text encoder shaped like stabilityai/stable-diffusion-2-1-base (random weights; the
    published configs live in model_shapes.py, shared with model_scale.py)."""
    from diffusers import DDPMScheduler
    from model_shapes import FAMILIES, make_scheduler, make_text_encoder, make_unet, make_vae

    from sds.prior.tokenizer import build_tokenizer

    family = FAMILIES["sd21-base"]
    torch.manual_seed(0)
    unet, vae = make_unet(family, tiny=False), make_vae(family, tiny=False)
    text_encoder = make_text_encoder(family.text_encoders[0], tiny=False)
    scheduler = DDPMScheduler.from_config(make_scheduler(family).config)  # as sds's loader reads any scheduler
    return unet.to(device), vae.to(device), scheduler, build_tokenizer(77), text_encoder.to(device)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--render", type=int, default=128, help="render size before the resize to 512 px")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    started = time.perf_counter()
    unet, vae, scheduler, tokenizer, text_encoder = sd21_base(device)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    cfg = RunConfig(guidance=GuidanceConfig(model="sd21-base-random", guidance_scale=constant(100.0), t_max_end=0.98,
                                            t_min_start=None, weighting="one_minus_alpha_bar"), steps=5000)
    embeddings = encode_prompts([(tokenizer, text_encoder)], "a red cube", "", True, device)
    del text_encoder
    guidance = LatentGuidance(unet, vae, scheduler, embeddings, cfg.guidance, "sd21-base-random")
    print(f"built in {time.perf_counter() - started:.1f} s: UNet {params:.0f}M parameters, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    times = []
    for step in range(args.steps):
        rgb = torch.rand(1, args.render, args.render, 3, device=device, requires_grad=True)
        t0 = time.perf_counter()
        out = guidance(rgb, ["front"], plan(cfg, step), torch.Generator().manual_seed(step))
        out.loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        print(f"step {step}: {times[-1]:.2f} s, SDS grad norm {out.grad_norm:.3g}", flush=True)
    memory = (f"peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda"
              else f"peak RSS {peak_memory_mb() / 1024:.2f} GiB")
    print(f"SD 2.1-base guidance step at 512 px (render {args.render} px): median {statistics.median(times):.2f} "
          f"s/step over {len(times)}, {memory}")


if __name__ == "__main__":
    main()
