"""CUDA sampler: nerfacc's occupancy grid skips empty space; its packed samples are composited by
``sds.render.renderer.render_samples`` like the dense ones.

nerfacc's estimator and packed compositing are CUDA-only (its extension is JIT-compiled on first use);
``VolumeRenderer`` only takes this path on a CUDA device. The pure-torch path is the reference.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from sds.render.compositing import RaySamples


def make_estimator(bound: float, device: torch.device, resolution: int = 64):
    from nerfacc import OccGridEstimator

    aabb = torch.tensor([-bound, -bound, -bound, bound, bound, bound], device=device)
    return OccGridEstimator(roi_aabb=aabb, resolution=resolution, levels=1).to(device)


def _step_size(field, samples_per_ray: int) -> float:
    return 2 * math.sqrt(3) * field.bound / samples_per_ray


@contextlib.contextmanager
def global_rng_seeded_from(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """nerfacc draws its random numbers from torch's global RNG, not from a generator we can pass. Inside this
    block the global RNG (of the CPU and of `device`) is seeded from one draw of the run's generator, and
    restored afterwards: nerfacc's draws are then fixed by the seed and replayed exactly after a resume (the
    generator's state is checkpointed). Without a generator nothing changes."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def update_estimator(estimator, field, step: int, samples_per_ray: int,
                     generator: torch.Generator | None = None) -> None:
    """Refresh the occupancy grid with the render's own step size (from samples_per_ray)."""
    step_size = _step_size(field, samples_per_ray)
    with global_rng_seeded_from(generator, estimator.binaries.device):
        estimator.update_every_n_steps(step=step, occ_eval_fn=lambda x: field.density(x) * step_size,
                                       occ_thre=0.01, n=16)


def refresh_estimator(estimator, field, samples_per_ray: int) -> None:
    """Mark every cell of the occupancy grid from the field's current density (after weights were loaded into a
    new renderer: its grid starts empty, and the periodic update refreshes only some cells after warm-up)."""
    step_size = _step_size(field, samples_per_ray)
    estimator.update_every_n_steps(step=0, occ_eval_fn=lambda x: field.density(x) * step_size, occ_thre=0.01,
                                   ema_decay=0.0, warmup_steps=1, n=1)


def packed_samples(estimator, field, origins: torch.Tensor, dirs: torch.Tensor, samples_per_ray: int, perturb: bool,
                   generator: torch.Generator | None = None) -> RaySamples:
    """Samples only in occupied cells (and where the field is not empty), packed: nerfacc's layout."""
    def sigma_fn(t_starts, t_ends, ray_indices):
        mid = (t_starts + t_ends)[:, None] / 2
        return field.density(origins[ray_indices] + dirs[ray_indices] * mid)

    with global_rng_seeded_from(generator if perturb else None, origins.device):
        ray_indices, t_starts, t_ends = estimator.sampling(
            origins, dirs, sigma_fn=sigma_fn, render_step_size=_step_size(field, samples_per_ray),
            stratified=perturb, alpha_thre=0.0)
    return RaySamples((t_starts + t_ends) / 2, t_ends - t_starts, ray_indices, origins.shape[0])
