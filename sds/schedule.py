"""The method's schedule: one pure function from (config, step) to everything that varies over a run.

Like nanoGPT's ``get_lr(it)``: the training step asks ``plan(cfg, step)`` what to do at this step (which
stage, how to shade, the guidance scale and timestep range, regulariser weights, learning-rate scales, whether
to redistance afterwards) instead of reading ramps and step thresholds in several places. Nothing here draws
random numbers or touches a model, so every value is testable at its boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sds.config import GuidanceConfig, RunConfig


@dataclass(frozen=True)
class StepPlan:
    """What training step `step` does (0-based: the step that takes the field from `step` to `step + 1`)."""

    step: int
    stage: str
    """"shape" (albedo warm-up and the rest before the texture stage) or "texture" (optim.freeze_density_from on)."""
    shading: str
    """"albedo", or "lit": lambertian, grey (textureless) with probability textureless_prob."""
    textureless_prob: float
    guidance_scale: float
    t_range: tuple[float, float]
    """(t_min, t_max) as fractions of the model's training timesteps."""
    low_view_fraction: float
    color_depth_gradient_scale: float
    reg_weights: dict[str, float]
    """Weight of each regulariser (orientation, opacity_sparsity, opacity_entropy, density_tv, eikonal)."""
    lr_scale: float
    """Multiplier of every parameter group's base learning rate."""
    density_step: float
    """Fraction of each optimiser step the density keeps (1 outside the texture stage)."""
    redistance_blur_voxels: float | None
    """After this step, reset the sdf to a true distance with this blur (None: not after this step)."""


def _annealed(start: float, end: float, cfg: GuidanceConfig, step: int, total_steps: int) -> float:
    """Linear from start to end over the first anneal_fraction of the run, then end."""
    anneal_steps = cfg.anneal_fraction * total_steps
    if anneal_steps <= 0 or step >= anneal_steps:
        return end
    return start + (end - start) * step / anneal_steps


def t_max_at(cfg: GuidanceConfig, step: int, total_steps: int) -> float:
    """t_max falls linearly from cfg.t_max to cfg.t_max_end over the first anneal_fraction of the run."""
    return _annealed(cfg.t_max, cfg.t_max_end, cfg, step, total_steps)


def t_min_at(cfg: GuidanceConfig, step: int, total_steps: int) -> float:
    """t_min falls linearly from cfg.t_min_start (when set) to cfg.t_min over the same window."""
    start = cfg.t_min if cfg.t_min_start is None else cfg.t_min_start
    return _annealed(start, cfg.t_min, cfg, step, total_steps)


REGULARIZERS = ("orientation", "opacity_sparsity", "opacity_entropy", "density_tv", "eikonal")


def in_texture_stage(cfg: RunConfig, step: int) -> bool:
    """From optim.freeze_density_from on, every view is lit and the density keeps only texture_density_step of
    each step."""
    return cfg.optim.freeze_density_from is not None and step >= cfg.optim.freeze_density_from


def lr_factor(cfg: RunConfig, step: int) -> float:
    """Multiplier of every base learning rate at `step`: 1 until lr_decay_start of the run, then half a cosine
    down to lr_final_fraction at the last step."""
    o = cfg.optim
    start = o.lr_decay_start * cfg.steps
    if o.lr_final_fraction == 1.0 or step <= start:
        return 1.0
    frac = min(1.0, (step - start) / max(cfg.steps - 1 - start, 1))
    return o.lr_final_fraction + (1 - o.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * frac))


def _redistance_blur(cfg: RunConfig, step: int, texture: bool) -> float | None:
    every = cfg.field.redistance_every
    after = step + 1
    if not every or after % every != 0 or texture:
        return None
    return cfg.field.redistance_blur_voxels.at(after)


def plan(cfg: RunConfig, step: int) -> StepPlan:
    """The plan of training step `step` of a run with config cfg."""
    texture = in_texture_stage(cfg, step)
    g = cfg.guidance
    return StepPlan(
        step=step,
        stage="texture" if texture else "shape",
        shading="albedo" if step < cfg.render.albedo_warmup_steps else "lit",
        textureless_prob=0.0 if texture else cfg.render.textureless_prob,  # grey views train only the density
        guidance_scale=g.guidance_scale.at(step),
        t_range=(t_min_at(g, step, cfg.steps), t_max_at(g, step, cfg.steps)),
        low_view_fraction=cfg.camera.low_view_fraction.at(step),
        color_depth_gradient_scale=cfg.render.color_depth_gradient_scale.at(step),
        reg_weights={name: getattr(cfg.reg, name).at(step) for name in REGULARIZERS},
        lr_scale=lr_factor(cfg, step) * (cfg.optim.texture_lr_scale if texture else 1.0),
        density_step=cfg.optim.texture_density_step.at(step) if texture else 1.0,
        redistance_blur_voxels=_redistance_blur(cfg, step, texture),
    )
