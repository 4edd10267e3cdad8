"""The method's schedule: one pure function from (config, step) to everything that varies over a run.

Like nanoGPT's ``get_lr(it)``: the training step asks ``plan(cfg, step)`` what to do (which stage, how to
shade, the guidance scale and timestep range, regulariser weights, learning-rate scales, whether to reset the
distance afterwards). Stages and ramps are declared in fractions of the run (``cfg.stages``), so ``steps=``
scales the whole schedule; a fraction becomes the nearest step. Nothing here draws random numbers or touches a
model, so every value is testable at its boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

from sds.config import GridEncoding, LrScale, Ramp, RunConfig, SdfGeometry, StageConfig


@dataclass(frozen=True)
class StepPlan:
    """What training step `step` does (0-based: the step that takes the field from `step` to `step + 1`)."""

    step: int
    stage: str
    shading: str
    """"albedo", or "lit" (lambertian); either is grey (textureless) with probability textureless_prob."""
    textureless_prob: float
    guidance_scale: float
    t_range: tuple[float, float]
    """(t_min, t_max) as fractions of the model's training timesteps."""
    reg_weights: dict[str, float]
    """Weight of each regulariser (orientation, opacity_entropy, eikonal, normal_roughness)."""
    lr_scale: LrScale
    """Multiplier of each parameter group's base learning rate."""
    geometry_growth: float
    """The share kept of the part of the geometry's step that grows the shape."""
    max_reach: float
    """The share of the scene box's half-width beyond which the shape takes no growing step."""
    redistance: bool
    """Reset the sdf grid to a true distance after this step."""


def at_step(fraction: float, steps: int) -> int:
    """The step a fraction of the run falls on (the nearest one, so 0.3333 of 450 is 150)."""
    return round(fraction * steps)


def stage_bounds(cfg: RunConfig) -> list[tuple[StageConfig, int, int]]:
    """Each stage with its first step and the step it ends before."""
    out, begin = [], 0
    for stage in cfg.stages:
        end = at_step(stage.until, cfg.steps)
        out.append((stage, begin, end))
        begin = end
    return out


def stage_at(cfg: RunConfig, step: int) -> StageConfig:
    for stage, _, end in stage_bounds(cfg):
        if step < end:
            return stage
    return cfg.stages[-1]


def ramp_at(ramp: Ramp, step: int, steps: int) -> float:
    """``ramp.start`` until its start point, ``ramp.end`` from its end point, linear between."""
    start, end = at_step(ramp.start_at, steps), at_step(ramp.end_at, steps)
    if step <= start:
        return ramp.start
    if step >= end:
        return ramp.end
    return ramp.start + (step - start) / (end - start) * (ramp.end - ramp.start)


def t_range_at(cfg: RunConfig, step: int) -> tuple[float, float]:
    """Both bounds move linearly from guidance.t_start to guidance.t_end over the first t_anneal_until of the run."""
    g = cfg.guidance
    anneal_steps = g.t_anneal_until * cfg.steps
    if anneal_steps <= 0 or step >= anneal_steps:
        return g.t_end
    return tuple(a + (b - a) * step / anneal_steps for a, b in zip(g.t_start, g.t_end))


def _sdf_grid(cfg: RunConfig) -> SdfGeometry | None:
    geo = cfg.field.geometry
    return geo if isinstance(geo, SdfGeometry) and isinstance(cfg.field.encoding, GridEncoding) else None


def plan(cfg: RunConfig, step: int) -> StepPlan:
    """The plan of training step `step` of a run with config cfg."""
    stage = stage_at(cfg, step)
    sdf = _sdf_grid(cfg)
    every = sdf.redistance_every if sdf else 0
    return StepPlan(
        step=step,
        stage=stage.name,
        shading=stage.shading,
        textureless_prob=stage.textureless_prob,
        guidance_scale=stage.guidance_scale,
        t_range=t_range_at(cfg, step),
        reg_weights={"orientation": ramp_at(cfg.reg.orientation, step, cfg.steps),
                     "opacity_entropy": ramp_at(cfg.reg.opacity_entropy, step, cfg.steps),
                     "eikonal": sdf.eikonal if sdf else 0.0,
                     "normal_roughness": ramp_at(cfg.reg.normal_roughness, step, cfg.steps) if sdf else 0.0},
        lr_scale=stage.lr_scale,
        geometry_growth=stage.geometry_growth,
        max_reach=stage.max_reach,
        redistance=bool(every) and stage.redistance and (step + 1) % every == 0,
    )


def stage_table(cfg: RunConfig) -> str:
    """The resolved stages as a small table (steps, shading, guidance scale, learning-rate scales, growth share and
    reach)."""
    sdf = _sdf_grid(cfg)
    rows = [("stage", "steps", "shading", "guidance", "lr geometry/albedo/bg", "growth", "reach", "textureless", "redistance")]
    for stage, begin, end in stage_bounds(cfg):
        lr = stage.lr_scale
        every = sdf.redistance_every if sdf and stage.redistance else 0
        rows.append((stage.name, f"{begin}-{end - 1}", stage.shading, f"{stage.guidance_scale:g}",
                     f"{lr.geometry:g} / {lr.albedo:g} / {lr.background:g}", f"{stage.geometry_growth:g}",
                     f"{stage.max_reach:g}",
                     f"{stage.textureless_prob:g}",
                     f"every {every}" if every else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
