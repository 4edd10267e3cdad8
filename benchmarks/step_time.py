"""Seconds per SDS step with a breakdown: render forward, guidance (UNet), backward, optimiser.

    python benchmarks/step_time.py [--steps 20] [--device cpu|cuda] [--models builtin,sd-tiny]

"builtin" is the shipped prior with the default config; "sd-tiny" is a Stable-Diffusion-shaped latent
pipeline (VAE + 4-channel UNet, tiny widths) at the SD render path, to time the latent branch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sds.config import load_config
from sds.guidance.load import load_guidance
from sds.render.renderer import RenderSettings
from sds.run import peak_memory_mb
from sds.schedule import plan
from sds.train import make_trainer, sample_views


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(cfg, device, steps: int) -> dict[str, float]:
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, device)
    trainer = make_trainer(cfg, device)
    gen = trainer.generator
    phases = {"render": [], "guidance": [], "backward": [], "optimizer": [], "total": []}
    for i in range(steps + 3):
        t0 = time.perf_counter()
        p = plan(cfg, 300)
        cams, light, labels = sample_views(cfg.camera, gen, trainer.field_device)
        settings = RenderSettings("lambertian", perturb=True, normal_gradient_scale=cfg.render.normal_gradient_scale,
                                  color_depth_gradient_scale=cfg.render.color_depth_gradient_scale)
        out = trainer.renderer.render(cams, cfg.render.resolution, cfg.render.resolution, settings, light,
                                      generator=gen)
        _sync(device)
        t1 = time.perf_counter()
        sds = guidance(out.rgb, labels, p, gen)
        _sync(device)
        t2 = time.perf_counter()
        trainer.optimizer.zero_grad()
        sds.loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        trainer.optimizer.step()
        _sync(device)
        t4 = time.perf_counter()
        if i >= 3:  # warm-up steps are not counted
            for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                phases[k].append(v)
    return {k: statistics.median(v) for k, v in phases.items()}


def sd_tiny_folder() -> Path:
    """Build and save a tiny SD-shaped pipeline (same code as the tests' fixture)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from conftest import _save_common, _tiny_text_encoder, _tiny_unet
    from diffusers import AutoencoderKL

    folder = Path(tempfile.mkdtemp()) / "sd_tiny"
    te, tok = _tiny_text_encoder()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=8, layers_per_block=1)
    vae.save_pretrained(folder / "vae")
    _save_common(folder, _tiny_unet(4, 64), te, tok, {"vae": ["diffusers", "AutoencoderKL"]})
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="builtin,sd-tiny")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.models.split(","):
        extra = []
        if name == "sd-tiny":
            extra = [f"model={sd_tiny_folder()}", "render.resolution=64", "camera.batch_size=1"]
        cfg = load_config(None, [f"device={args.device}", *extra, *args.overrides], prompt="a red cube")
        r = time_steps(cfg, device, args.steps)
        breakdown = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r.items() if k != "total")
        print(f"{name}: {r['total']:.3f} s/step ({breakdown}); render {cfg.render.resolution}px x "
              f"{cfg.camera.batch_size} views, {cfg.render.samples_per_ray} samples/ray, field {cfg.field.encoding.kind} {cfg.field.geometry.kind}")
    print(f"peak RSS {peak_memory_mb():.0f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
