"""2D samples from the guidance model (``sds sample``): check the model knows a prompt before a 3D run."""

from __future__ import annotations

import torch

from sds.config import GuidanceConfig
from sds.guidance.load import load_components
from sds.guidance.sds import cfg_combine


@torch.no_grad()
def sample_images(model: str, prompt: str, n: int, scheduler_kind: str = "ddim", steps: int = 50,
                  guidance_scale: float = 7.5, seed: int = 0, device: torch.device | None = None,
                  show_progress: bool = False) -> torch.Tensor:
    """n images [n, H, W, 3] in [0, 1] for the prompt (CFG with the empty prompt as unconditional)."""
    from diffusers import DDIMScheduler, DDPMScheduler
    from tqdm.auto import tqdm

    device = device or torch.device("cpu")
    parts, source = load_components(GuidanceConfig(model=model), device)
    sched_cls = DDIMScheduler if scheduler_kind == "ddim" else DDPMScheduler
    scheduler = sched_cls.from_config(parts["scheduler"].config)
    scheduler.set_timesteps(steps if scheduler_kind == "ddim" else scheduler.config.num_train_timesteps)
    tok, enc, unet = parts["tokenizer"], parts["text_encoder"], parts["unet"]
    ids = tok(["", prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids.to(device)
    hidden = enc(ids)[0]
    uncond, cond = hidden[:1].expand(n, -1, -1), hidden[1:].expand(n, -1, -1)
    generator = torch.Generator().manual_seed(seed)
    c = unet.config.in_channels
    size = unet.config.sample_size
    x = torch.randn(n, c, size, size, generator=generator).to(device) * scheduler.init_noise_sigma
    for t in tqdm(scheduler.timesteps, desc=f"{scheduler_kind} sampling", disable=not show_progress):
        out = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample[:, :c]
        eps_u, eps_c = out.chunk(2)
        x = scheduler.step(cfg_combine(eps_u, eps_c, guidance_scale), t, x, generator=generator).prev_sample
    if "vae" in parts:
        vae = parts["vae"]
        x = vae.decode(x / vae.config.scaling_factor).sample
    return ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu()


def image_grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """[n, H, W, 3] -> one [rows*H, columns*W, 3] image (white padding)."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    grid = torch.ones(rows * h, columns * w, 3)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = images[i]
    return grid
