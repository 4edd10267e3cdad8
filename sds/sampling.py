"""2D samples from the guidance model (``sds sample``): check the model knows a prompt before a 3D run.

Two samplers over the model's training schedule, with classifier-free guidance (empty prompt as the
unconditional branch):

- ``ddim``: a few dozen steps. Timesteps are spaced "trailing" (the first step is t = T-1, where the
  initial pure noise actually belongs), and when the scheduler clips the predicted clean image (pixel
  models such as the built-in prior: ``clip_sample=True``) the noise estimate is re-derived from the
  clipped prediction (``use_clipped_model_output``). Without that, DDIM keeps the raw epsilon next to a
  clipped x0, the two disagree wherever clipping bit (at high noise almost everywhere with the cosine
  schedule, where x0 = (x - sqrt(1-a) eps) / sqrt(a) amplifies any epsilon error by up to 2e4), and
  samples drift to frame-filling blobs on tinted backgrounds. ``eta`` (default 1: DDPM-like posterior
  noise at each step) re-injects fresh noise so early x0 errors are not carried deterministically to
  the end; eta = 0 is the deterministic DDIM, noticeably worse for the small built-in prior.
- ``ddpm``: the full ancestral chain (every training timestep), slow but the reference.
"""

from __future__ import annotations

import torch

from sds.config import GuidanceConfig
from sds.guidance.load import ModelLoadError, load_components
from sds.guidance.sds import guided_noise

DEFAULT_DDIM_ETA = 1.0


def make_scheduler(base_config, scheduler_kind: str, steps: int):
    """A sampling scheduler from the model's (training) scheduler config, timesteps set."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if scheduler_kind == "ddim":
        scheduler = DDIMScheduler.from_config(base_config, timestep_spacing="trailing")
        scheduler.set_timesteps(steps)
    elif scheduler_kind == "ddpm":
        scheduler = DDPMScheduler.from_config(base_config)
        scheduler.set_timesteps(scheduler.config.num_train_timesteps)  # the full chain
    else:
        raise ValueError(f"unknown scheduler {scheduler_kind!r}; use 'ddim' or 'ddpm'")
    return scheduler


@torch.no_grad()
def sample_from_components(parts: dict, prompts: list[str], n_per_prompt: int, scheduler_kind: str = "ddim",
                           steps: int = 30, guidance_scale: float = 3.0, seed: int = 0,
                           eta: float = DEFAULT_DDIM_ETA, batch_size: int = 64, show_progress: bool = False,
                           ) -> torch.Tensor:
    """n_per_prompt images of each prompt, prompt-major: [len(prompts) * n_per_prompt, H, W, 3] in [0, 1].

    `parts` as returned by ``load_components`` (load once, sample many prompts). Images are sampled in
    chunks of `batch_size`; all noise comes from one CPU generator seeded with `seed` (the initial noise
    drawn first, in prompt-major order), so a call is reproducible for a given batch_size.
    """
    from tqdm.auto import tqdm

    tok, enc, unet = parts["tokenizer"], parts["text_encoder"], parts["unet"]
    device, dtype = unet.device, unet.dtype
    ids = tok(["", *prompts], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids.to(device)
    hidden = enc(ids)[0].to(dtype)
    cond_all = hidden[1:].repeat_interleave(n_per_prompt, 0)
    total = cond_all.shape[0]
    c, size = unet.config.in_channels, unet.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(total, c, size, size, generator=generator)
    scheduler = make_scheduler(parts["scheduler"].config, scheduler_kind, steps)
    step_kw = {"eta": eta, "use_clipped_model_output": True} if scheduler_kind == "ddim" else {}
    out = []
    chunks = range(0, total, batch_size)
    bar = tqdm(total=len(chunks) * len(scheduler.timesteps), desc=f"{scheduler_kind} sampling",
               disable=not show_progress)
    for start in chunks:
        cond = cond_all[start:start + batch_size]
        n = cond.shape[0]
        uncond = hidden[:1].expand(n, -1, -1)
        x = noise[start:start + n].to(device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = guided_noise(unet, scheduler.scale_model_input(x, t), t, uncond, cond, guidance_scale)
            x = scheduler.step(eps, t, x, generator=generator, **step_kw).prev_sample
            bar.update(1)
        if "vae" in parts:
            vae = parts["vae"]
            x = vae.decode((x / vae.config.scaling_factor).to(vae.dtype)).sample.float()
        out.append(((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu())
    bar.close()
    return torch.cat(out)


@torch.no_grad()
def sample_images(model: str, prompt: str, n: int, scheduler_kind: str = "ddim", steps: int = 30,
                  guidance_scale: float = 3.0, seed: int = 0, device: torch.device | None = None,
                  show_progress: bool = False, eta: float = DEFAULT_DDIM_ETA) -> torch.Tensor:
    """n images [n, H, W, 3] in [0, 1] for the prompt (CFG with the empty prompt as unconditional).

    scheduler_kind "ddim" uses `steps` steps; "ddpm" runs the full training chain (`steps` ignored).
    """
    device = device or torch.device("cpu")
    parts, _ = load_components(GuidanceConfig(model=model), device)
    if "text_encoder_2" in parts:
        raise ModelLoadError(f"sds sample does not draw from SDXL models yet ({model}); sds generate uses them")
    return sample_from_components(parts, [prompt], n, scheduler_kind, steps, guidance_scale, seed, eta,
                                  show_progress=show_progress)


def image_grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """[n, H, W, 3] -> one [rows*H, columns*W, 3] image (white padding)."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    grid = torch.ones(rows * h, columns * w, 3)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = images[i]
    return grid
