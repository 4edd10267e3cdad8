"""Does the built-in prior draw what the caption says? Sample every shape x colour caption, classify.

For each of the 45 captions "a <colour> <shape>" the prior samples K images (DDIM by default); an
independent checker that never touches the diffusion model scores each image:

- shape: a small CNN trained here, for about a minute, on fresh renders from ``sds.prior.data`` only
  (random albedos, so it cannot lean on colour; augmented with background tint and noise), fed the image
  minus its estimated background colour;
- colour: nearest palette albedo (``sds.prior.world.COLORS``) of the foreground pixels, shading-robust:
  each pixel p is compared with s * albedo at its best shading factor s, foreground = pixels far from
  the background colour (estimated from the image border), eroded by one pixel so anti-aliased edges
  (albedo mixed with white) do not vote; majority vote of the most saturated half.

The checker is first validated on held-out true renders (a different seed); if it is not near 100%
there, the benchmark's figures mean nothing.

    OMP_NUM_THREADS=1 python benchmarks/prior_quality.py --k 4 --guidance-scale 3 --steps 30
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sds.prior.data import DataConfig, render_primitive
from sds.prior.world import COLORS, SHAPES

PALETTE = torch.tensor(list(COLORS.values()))  # [9, 3]
COLOR_NAMES = list(COLORS)


# ---------------------------------------------------------------- true renders (the checker's only data)
def render_set(per_shape: int, seed: int, random_albedo: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Renders [N, 3, H, W] in [0, 1] of every shape, with shape and colour labels (colour -1 if random)."""
    g = torch.Generator().manual_seed(seed)
    cfg = DataConfig(seed=seed)
    images, shapes, colors = [], [], []
    for s, shape in enumerate(SHAPES):
        if random_albedo:
            albedo = 0.05 + 0.92 * torch.rand(per_shape, 3, generator=g)
            palette_idx = torch.randint(0, len(PALETTE), (per_shape,), generator=g)
            use_palette = torch.rand(per_shape, generator=g) < 0.5
            albedo = torch.where(use_palette[:, None], PALETTE[palette_idx], albedo)
            color = torch.where(use_palette, palette_idx, torch.full_like(palette_idx, -1))
        else:
            color = torch.arange(per_shape) % len(PALETTE)
            albedo = PALETTE[color]
        img, _ = render_primitive(shape, albedo, cfg, g, per_shape)
        images.append(img.clamp(0, 1))
        shapes.append(torch.full((per_shape,), s))
        colors.append(color)
    return torch.cat(images), torch.cat(shapes), torch.cat(colors)


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Sampler-like nuisances: a global tint, smooth blotches, pixel noise, mirror flips."""
    n = images.shape[0]
    tint = 1 - 0.12 * torch.rand(n, 3, 1, 1, generator=g) * (torch.rand(n, 1, 1, 1, generator=g) < 0.7)
    blotch = F.interpolate(torch.randn(n, 3, 4, 4, generator=g), size=images.shape[-2:], mode="bilinear",
                           align_corners=False) * 0.04 * torch.rand(n, 1, 1, 1, generator=g)
    sigma = 0.05 * torch.rand(n, 1, 1, 1, generator=g)
    out = images * tint + blotch + sigma * torch.randn(images.shape, generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.clamp(0, 1)


def background(images: torch.Tensor) -> torch.Tensor:
    """[N, 3] background colour: per-channel median of the one-pixel image border."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    return border.median(dim=-1).values


# ---------------------------------------------------------------- shape: a small CNN on renders
class ShapeNet(torch.nn.Module):
    def __init__(self, n_classes: int = len(SHAPES)):
        super().__init__()

        def block(cin, cout):
            return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(cout, cout, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.MaxPool2d(2))

        self.features = torch.nn.Sequential(block(3, 16), block(16, 32), block(32, 48))  # 32 -> 4
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.2),
                                        torch.nn.Linear(48 * 4 * 4, n_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [0, 1]; input is the image minus its background, so tint does not matter."""
        x = images - background(images)[:, :, None, None]
        return self.head(self.features(x * 2))


def train_shape_classifier(seconds: float, per_shape: int, seed: int = 1234, log=print) -> ShapeNet:
    torch.manual_seed(seed)
    t0 = time.time()
    images, shapes, _ = render_set(per_shape, seed, random_albedo=True)
    log(f"  rendered {len(images)} training images in {time.time() - t0:.1f} s")
    net = ShapeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    t1, step, batch = time.time(), 0, 128
    while (elapsed := time.time() - t1) < seconds:
        for group in opt.param_groups:  # cosine decay over the time budget
            group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * elapsed / seconds))
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x = augment(images[idx], g)
        loss = F.cross_entropy(net(x), shapes[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    log(f"  trained the shape CNN {step} steps (batch {batch}) in {time.time() - t1:.1f} s, last loss {loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def classify_shape(net: ShapeNet, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(chunk).argmax(-1) for chunk in images.split(256)])


# ---------------------------------------------------------------- colour: nearest palette albedo
def classify_color(images: torch.Tensor, fg_threshold: float = 0.1) -> torch.Tensor:
    """[N] palette index of each image's object colour (-1: no foreground found)."""
    out = []
    bg = background(images)
    for img, b in zip(images, bg):
        dev = (img - b[:, None, None]).abs().amax(0)  # [H, W]
        fg = dev > fg_threshold
        eroded = -F.max_pool2d(-fg[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0.5
        mask = eroded if eroded.sum() >= 4 else fg
        if mask.sum() == 0:
            out.append(-1)
            continue
        p = img[:, mask].T  # [M, 3]
        saturation = p.amax(-1) - p.amin(-1)
        keep = saturation >= saturation.median()
        p = p[keep]
        # Best shading factor per palette colour, then the residual of p - s * albedo.
        s = ((p @ PALETTE.T) / PALETTE.pow(2).sum(-1)).clamp(0.25, 1.1)  # [M, 9]
        resid = (p[:, None, :] - s[..., None] * PALETTE[None]).pow(2).sum(-1)  # [M, 9]
        votes = torch.bincount(resid.argmin(-1), minlength=len(PALETTE))
        out.append(int(votes.argmax()))
    return torch.tensor(out)


# ---------------------------------------------------------------- background tint
def background_tint(images: torch.Tensor) -> torch.Tensor:
    """[N] how far the background is from white: max over channels of 1 - border median (renders: 0)."""
    return (1 - background(images)).amax(-1).clamp(min=0)


# ---------------------------------------------------------------- the benchmark
def parse_captions(text: str | None) -> list[tuple[str, str]]:
    """'red cube,blue sphere' or 'a red cube;...' -> [(colour, shape)]; None: all 45."""
    if not text:
        return [(c, s) for c in COLOR_NAMES for s in SHAPES]
    pairs = []
    for item in text.replace(";", ",").split(","):
        words = [w for w in item.split() if w not in ("a", "an", "the")]
        if len(words) != 2 or words[0] not in COLORS or words[1] not in SHAPES:
            raise SystemExit(f"caption {item!r}: expected '<colour> <shape>' with colour in {COLOR_NAMES} "
                             f"and shape in {list(SHAPES)}")
        pairs.append((words[0], words[1]))
    return pairs


def save_grid(images: torch.Tensor, pairs: list[tuple[str, str]], k: int, path: Path, scale: int = 2) -> None:
    """One row per colour, shapes side by side (K samples each), a white gap between groups.

    A subset that is not a full colour x shape table gets one row per caption instead.
    """
    from PIL import Image

    h, w = images.shape[1:3]
    colors = [c for c in COLOR_NAMES if any(pc == c for pc, _ in pairs)]
    shapes = [s for s in SHAPES if any(ps == s for _, ps in pairs)]
    table = len(set(pairs)) == len(colors) * len(shapes)
    rows, cols = (len(colors), len(shapes)) if table else (len(pairs), 1)
    gap = 4
    canvas = torch.ones(rows * (h + gap), cols * (k * w + gap), 3)
    for i, (c, s) in enumerate(pairs):
        r, col = (colors.index(c), shapes.index(s)) if table else (i, 0)
        for j in range(k):
            y, x = r * (h + gap), col * (k * w + gap) + j * w
            canvas[y:y + h, x:x + w] = images[i * k + j]
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray((canvas * 255).round().byte().numpy())
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=4, help="samples per caption")
    ap.add_argument("--guidance-scale", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=30, help="DDIM steps (DDPM runs the full chain)")
    ap.add_argument("--scheduler", choices=("ddim", "ddpm"), default="ddim")
    ap.add_argument("--eta", type=float, default=None, help="DDIM eta (default: sds.sampling's)")
    ap.add_argument("--captions", default=None, help="subset, e.g. 'red cube,blue sphere' (default: all 45)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--classifier-seconds", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path("outputs/prior_quality.png"), help="sample grid PNG")
    args = ap.parse_args(argv)

    from sds.config import GuidanceConfig
    from sds.guidance.load import load_components
    from sds.sampling import DEFAULT_DDIM_ETA, sample_from_components

    t_start = time.time()
    pairs = parse_captions(args.captions)

    print("checker (no diffusion model involved):")
    net = train_shape_classifier(args.classifier_seconds, per_shape=800)
    val_images, val_shapes, val_colors = render_set(per_shape=180, seed=98765, random_albedo=False)
    shape_ok = classify_shape(net, val_images) == val_shapes
    color_ok = classify_color(val_images) == val_colors
    g = torch.Generator().manual_seed(4321)
    noisy = augment(val_images, g)
    print(f"  held-out true renders ({len(val_images)}, palette colours, unseen seed): "
          f"shape {shape_ok.float().mean():.1%}, colour {color_ok.float().mean():.1%}")
    print(f"  same renders with tint/blotches/noise: shape "
          f"{(classify_shape(net, noisy) == val_shapes).float().mean():.1%}, colour "
          f"{(classify_color(noisy) == val_colors).float().mean():.1%}")
    t_checker = time.time() - t_start

    eta = DEFAULT_DDIM_ETA if args.eta is None else args.eta
    parts, _ = load_components(GuidanceConfig(model=args.model), torch.device("cpu"))
    prompts = [f"a {c} {s}" for c, s in pairs]
    t0 = time.time()
    images = sample_from_components(parts, prompts, args.k, args.scheduler, args.steps, args.guidance_scale,
                                    args.seed, eta=eta)
    t_sample = time.time() - t0
    chw = images.permute(0, 3, 1, 2).contiguous()
    pred_shape = classify_shape(net, chw).view(len(pairs), args.k)
    pred_color = classify_color(chw).view(len(pairs), args.k)
    true_shape = torch.tensor([SHAPES.index(s) for _, s in pairs])[:, None]
    true_color = torch.tensor([COLOR_NAMES.index(c) for c, _ in pairs])[:, None]
    shape_hit, color_hit = pred_shape == true_shape, pred_color == true_color
    both_hit = shape_hit & color_hit

    sched = f"DDIM {args.steps} steps, eta {eta:g}" if args.scheduler == "ddim" else "DDPM full chain"
    print(f"\nsamples: {len(prompts)} captions x K={args.k}, {sched}, CFG {args.guidance_scale:g}, seed {args.seed}")
    print(f"{'caption':<22} {'shape':>6} {'colour':>7}  most frequent wrong (shape/colour)")
    for i, (c, s) in enumerate(pairs):
        wrong_s = [SHAPES[j] for j in pred_shape[i].tolist() if j != SHAPES.index(s)]
        wrong_c = [COLOR_NAMES[j] if j >= 0 else "none" for j in pred_color[i].tolist()
                   if j != COLOR_NAMES.index(c)]
        note = "/".join([max(set(w), key=w.count) if w else "-" for w in (wrong_s, wrong_c)])
        print(f"{'a ' + c + ' ' + s:<22} {shape_hit[i].float().mean():>6.0%} {color_hit[i].float().mean():>7.0%}  "
              f"{note if note != '-/-' else ''}")
    print("\nper shape (shape acc / colour acc):")
    for s in SHAPES:
        rows = [i for i, (_, ps) in enumerate(pairs) if ps == s]
        if rows:
            print(f"  {s:<9} {shape_hit[rows].float().mean():6.1%} {color_hit[rows].float().mean():6.1%}")
    print("per colour (shape acc / colour acc):")
    for c in COLOR_NAMES:
        rows = [i for i, (pc, _) in enumerate(pairs) if pc == c]
        if rows:
            print(f"  {c:<9} {shape_hit[rows].float().mean():6.1%} {color_hit[rows].float().mean():6.1%}")
    tint = background_tint(chw)
    print(f"\noverall: shape {shape_hit.float().mean():.1%}, colour {color_hit.float().mean():.1%}, "
          f"both {both_hit.float().mean():.1%} of {shape_hit.numel()} samples")
    print(f"background tint (1 - border colour, max channel; renders: 0): median {tint.median():.3f}, "
          f"{(tint > 0.1).float().mean():.0%} of samples above 0.1")
    save_grid(images, pairs, args.k, args.out)
    print(f"time: checker {t_checker:.0f} s, sampling {t_sample:.0f} s "
          f"({t_sample / images.shape[0]:.2f} s/image), total {time.time() - t_start:.0f} s; grid: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
