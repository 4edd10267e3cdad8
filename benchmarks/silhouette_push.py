"""Which way the prior pushes a TRUE primitive's silhouette, per colour and diffusion time: growth or shrinkage.

    OMP_NUM_THREADS=1 python benchmarks/silhouette_push.py --shape cube --colors red,blue,yellow \
        [--times 0.3,0.5,0.7,0.8,0.9,0.98] [--model builtin] [--images 16] [--repeats 6]

It renders the exact primitive with the prior's own data renderer (so the image is what the prior was trained on),
takes the SDS gradient at one fixed diffusion time (the default config's guidance scale and w(t)), and averages
the descent direction over the one-pixel ring of background just outside the silhouette, projected on the unit
colour step from the background to the object's albedo. Positive: SDS would paint object colour onto the
background there, i.e. the silhouette grows; negative: it shrinks. A fair prior gives about 0 at the true size;
a colour that is pushed outward much more than the others grows until something stops it (docs/tuning.md,
sweep 14: the yellow cubes reach the scene box).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from torch.nn import functional as F

from sds.config import load_config
from sds.guidance.load import load_guidance
from sds.prior.data import DataConfig, render_primitive
from sds.prior.world import BACKGROUND_RGB, COLORS
from sds.schedule import plan


def outside_ring(images: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] mask of background pixels 8-adjacent to the object in images [B, 3, H, W]."""
    background = torch.tensor(BACKGROUND_RGB).view(1, 3, 1, 1)
    obj = ((images - background).abs().sum(1, keepdim=True) > 0.05).float()
    return (F.max_pool2d(obj, 3, 1, 1) > 0).float() - obj


def silhouette_push(guidance, images: torch.Tensor, labels: list[str], albedo: tuple[float, float, float],
                    t: float, repeats: int, cfg, seed: int = 100) -> float:
    """Mean SDS descent direction on the outside ring, projected on (albedo - background) / |...|, at time t
    (the plan of step 0 of cfg's run, with its timestep range narrowed to t)."""
    p = dataclasses.replace(plan(cfg, 0), t_range=(max(t - 0.01, 0.0), t))
    ring = outside_ring(images)
    step = torch.tensor(albedo) - torch.tensor(BACKGROUND_RGB)
    direction = (step / step.norm()).view(1, 3, 1, 1)
    total = 0.0
    for rep in range(repeats):
        rgb = images.permute(0, 2, 3, 1).clone().requires_grad_(True)
        guidance(rgb, labels, p, torch.Generator().manual_seed(seed + rep)).loss.backward()
        descent = -rgb.grad.permute(0, 3, 1, 2)
        total += float(((descent * direction).sum(1, keepdim=True) * ring).sum() / ring.sum())
    return total / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="cube")
    parser.add_argument("--colors", default="red,blue,yellow")
    parser.add_argument("--times", default="0.3,0.5,0.7,0.8,0.9,0.98")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. guidance.guidance_scale=25)")
    args = parser.parse_args()
    times = [float(t) for t in args.times.split(",")]
    print(f"{args.shape}: SDS push on the ring just outside the true silhouette (+ grows, - shrinks)")
    print(f"{'colour':8}" + "".join(f"  t={t:<5}" for t in times))
    for color in args.colors.split(","):
        cfg = load_config(None, [f"prompt=a {color} {args.shape}", f"guidance.model={args.model}", *args.overrides])
        guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
        data = dataclasses.replace(DataConfig(), resolution=guidance.image_size)
        albedo = torch.tensor(COLORS[color]).expand(args.images, 3)
        images, labels = render_primitive(args.shape, albedo, data, torch.Generator().manual_seed(1), args.images)
        pushes = [silhouette_push(guidance, images, labels, COLORS[color], t, args.repeats, cfg) for t in times]
        print(f"{color:8}" + "".join(f"  {p:+.3f}  " for p in pushes), flush=True)


if __name__ == "__main__":
    main()
