"""The SDS training loop: sample cameras -> render -> guidance -> regularisers -> Adam step.

All randomness comes from one ``torch.Generator`` whose state is checkpointed, so the same seed and config
on CPU give the same result, and a resumed run continues to the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from sds.cameras import Cameras, sample_orbit_cameras, turntable_cameras, view_label
from sds.config import CameraConfig, RunConfig
from sds.errors import RunError, first_line
from sds.field.shading import sample_light_positions
from sds.interrupts import STOP
from sds.progress import Progress, on_terminal, preview_every, report_every
from sds.render.renderer import VIEW_MIN_SHADING_WEIGHT, RenderSettings
from sds.run import Run, write_atomic
from sds.schedule import StepPlan, plan
from sds.state_file import read_state

log = logging.getLogger(__name__)


@dataclass
class Trainer:
    """The objects a run trains; built by ``make_trainer``."""

    cfg: RunConfig
    field: torch.nn.Module
    background: torch.nn.Module
    renderer: object
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0

    @property
    def field_device(self) -> torch.device:
        return next(self.field.parameters()).device

    def state_dict(self) -> dict:
        state = {"field": self.field.state_dict(), "background": self.background.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                 "step": self.step}
        renderer = self.renderer.state_dict()  # the nerfacc occupancy grid on CUDA; nothing on the torch path
        return {**state, "renderer": renderer} if renderer else state

    def load_state_dict(self, state: dict) -> None:
        self.field.load_state_dict(state["field"])
        self.background.load_state_dict(state["background"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step = state["step"]
        self.renderer.load_state_dict(state.get("renderer", {}))  # after the field: an empty grid is filled from it


def make_trainer(cfg: RunConfig, device: torch.device) -> Trainer:
    from sds.build import build_scene

    torch.manual_seed(cfg.seed)  # initial weights of MLP parts
    field, background, renderer = build_scene(cfg, device)
    groups = field.param_groups(cfg.optim) + background.param_groups(cfg.optim)
    damped = [s.name for s in cfg.stages if s.geometry_growth != 1]
    if damped and field.growth_sign is None:
        log.warning("stages %s set geometry_growth, which only a grid field has (a hash grid's features have no "
                    "direction that grows): their geometry steps are kept whole", damped)
    limited = [s.name for s in cfg.stages if s.max_reach < 1]
    if limited and (field.growth_sign is None or field.reach() is None):
        log.warning("stages %s set max_reach, which only a grid sdf field has (it alone knows where its surface is "
                    "during the run): their shapes may grow to the box", limited)
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    generator = torch.Generator().manual_seed(cfg.seed)
    return Trainer(cfg, field, background, renderer, optimizer, generator)


def save_checkpoint(trainer: Trainer, run: Run) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    write_atomic(run.checkpoint, buffer.getvalue())


CHECKPOINT_KEYS = ("field", "background", "optimizer", "generator", "step")


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """The state saved by ``save_checkpoint``, never unpickling anything but plain data (``sds.state_file``);
    a crafted, truncated, empty or incomplete file raises RunError with one line."""
    state = read_state(path, device, "sds checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise RunError(f"{path} is not a complete sds checkpoint (missing {', '.join(missing)})")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise RunError(f"{path} is not a usable sds checkpoint (its step is {state['step']!r})")
    return state


def load_checkpoint(trainer: Trainer, run: Run) -> None:
    state = read_checkpoint(run.checkpoint, trainer.field_device)
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{run.checkpoint} does not fit the run's config.yaml (was the config edited, or the "
                       f"checkpoint copied from another run?): {first_line(e)}") from None


def pick_shading(p: StepPlan, generator: torch.Generator) -> str:
    """Grey (textureless) with probability p.textureless_prob, else the plan's shading ("albedo", or lambertian
    for "lit"). One draw every step, whatever the stage, so the generator's sequence does not depend on the
    schedule."""
    u = float(torch.rand(1, generator=generator))
    if u < p.textureless_prob:
        return "textureless"
    return "albedo" if p.shading == "albedo" else "lambertian"


def opacity_entropy(opacity: torch.Tensor) -> torch.Tensor:
    o = opacity.clamp(1e-5, 1 - 1e-5)
    return -(o * o.log() + (1 - o) * (1 - o).log()).mean()


def sample_views(c: CameraConfig, gen: torch.Generator,
                 device: torch.device | str) -> tuple[Cameras, torch.Tensor, list[str]]:
    """A batch of random training cameras (on device), light positions [B, 3] and view labels, drawn from gen."""
    cams = sample_orbit_cameras(c.batch_size, c.radius_range, c.elevation_range_deg, c.fov_range_deg, gen)
    cams = cams.to(device)
    light = sample_light_positions(cams, generator=gen)
    labels = [view_label(float(a), float(e)) for a, e in zip(cams.azimuth_deg, cams.elevation_deg)]
    return cams, light, labels


def total_loss(sds_loss: torch.Tensor, out, field, weights: dict[str, float]) -> torch.Tensor:
    """The SDS surrogate plus each regulariser at its weight (computed here, from the render's outputs)."""
    loss = (sds_loss + weights["orientation"] * out.backfacing.mean()
            + weights["opacity_entropy"] * opacity_entropy(out.opacity))
    if weights["eikonal"] > 0:
        loss = loss + weights["eikonal"] * field.eikonal()
    if weights["normal_roughness"] > 0:
        loss = loss + weights["normal_roughness"] * field.normal_roughness()
    return loss


def damp_growth(before: torch.Tensor, after: torch.Tensor, growth_sign: float, share: float) -> torch.Tensor:
    """`after` with the part of the step from `before` that grows the shape (its sign is growth_sign) scaled by
    share; a step that carves is kept whole."""
    step = after - before
    return before + torch.where(step * growth_sign > 0, share * step, step)


def stage_reach(field, p: StepPlan) -> float | None:
    """How far out the shape reaches (a share of the scene box's half-width) where the stage limits it (max_reach
    below 1), else None; also None for a field that cannot say. Measured on the field as it stands, before the
    step, so a resumed run agrees."""
    return field.reach() if p.max_reach < 1 and field.growth_sign is not None else None


def optimizer_step(trainer: Trainer, p: StepPlan) -> tuple[bool, float | None]:
    """Adam with each group's base rate times its role's scale in the plan's stage (set from the plan, never
    accumulated, so a resumed run agrees), then the stage's share of the geometry's growing step kept: none while
    the shape reaches past the stage's max_reach. Returns whether growth was held, and the reach it was decided on
    (stage_reach: None where the stage sets no limit).

    Why damp growth after Adam, not its gradient: Adam moves each voxel by about its rate whatever the gradient's
    size, so a weak but steady outward push of the prior grows a shape as fast as a strong one, and on light
    colours it grows into the scene box; carving is left at full speed so holes (a torus's) still open. Why hold
    growth altogether past max_reach rather than clip the field there: a clip would cut the shape flat at the limit
    as the box does; holding leaves the prior to reshape it by carving."""
    for group in trainer.optimizer.param_groups:
        group["lr"] = group["initial_lr"] * getattr(p.lr_scale, group["role"])
    sign = trainer.field.growth_sign
    reach = stage_reach(trainer.field, p)
    held = reach is not None and reach > p.max_reach
    share = 0.0 if held else p.geometry_growth
    geometry = []
    if share != 1 and sign is not None:
        geometry = [(q, q.detach().clone()) for g in trainer.optimizer.param_groups if g["role"] == "geometry"
                    for q in g["params"]]
    trainer.optimizer.step()
    with torch.no_grad():
        for q, before in geometry:
            q.copy_(damp_growth(before, q, sign, share))
    return held, reach


def train_step(trainer: Trainer, guidance) -> dict[str, float]:
    """One optimisation step: plan -> views -> render -> SDS + regularisers -> optimiser step -> after-step hooks.
    Returns scalars for the log (``reach`` only where the stage limits it); raises FloatingPointError on a NaN
    loss."""
    cfg, gen = trainer.cfg, trainer.generator
    p = plan(cfg, trainer.step)
    batch = cfg.camera.batch_size
    device = trainer.field_device
    cams, light, labels = sample_views(cfg.camera, gen, device)
    shading = pick_shading(p, gen)
    u = torch.rand(batch, generator=gen)
    colors = torch.rand(batch, 3, generator=gen)
    # Random solid backgrounds on some views keep a learned background from absorbing the object.
    random_bg = u < cfg.render.random_background_prob
    bg_kw = {"background_rgb": colors.to(device), "background_mask": random_bg.to(device)} if random_bg.any() else {}
    res = cfg.render.resolution
    settings = RenderSettings(shading, perturb=True, normal_gradient_scale=cfg.render.normal_gradient_scale,
                              color_depth_gradient_scale=cfg.render.color_depth_gradient_scale)
    out = trainer.renderer.render(cams, res, res, settings, light, generator=gen, **bg_kw)
    sds = guidance(out.rgb, labels, p, gen)
    loss = total_loss(sds.loss, out, trainer.field, p.reg_weights)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} at step {p.step}")
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    held, reach = optimizer_step(trainer, p)
    trainer.step += 1
    if p.redistance and not trainer.field.redistance():
        log.warning("step %d: the field has no surface inside the grid, so there is no distance to reset",
                    trainer.step)
    trainer.renderer.update(trainer.step, gen)
    scalars = {"loss": float(loss.detach()), "sds_grad": sds.grad_norm, "opacity": float(out.opacity.detach().mean()),
               "growth_held": float(held)}
    return scalars if reach is None else {**scalars, "reach": reach}


@torch.no_grad()
def save_preview(trainer: Trainer, path, resolution: int = 64):
    """Four views (albedo-lit, lambertian) side by side as a PNG; returns the image (uint8 [H, 4 W, 3])."""
    import imageio.v3 as iio

    radius = sum(trainer.cfg.camera.radius_range) / 2
    fov = sum(trainer.cfg.camera.fov_range_deg) / 2
    cams = turntable_cameras(4, 20.0, radius, fov).to(trainer.field_device)
    settings = RenderSettings("lambertian", min_shading_weight=VIEW_MIN_SHADING_WEIGHT)
    rgb = trainer.renderer.render(cams, resolution, resolution, settings, chunk_rays=8192).rgb
    row = torch.cat(list(rgb.clamp(0, 1)), dim=1)
    image = (row.cpu().numpy() * 255).round().astype("uint8")
    write_atomic(path, iio.imwrite("<bytes>", image, extension=".png"))
    return image


METRICS_HEADER = "step,loss,sds_grad,opacity,growth_held,reach"


def metrics_row(step: int, scalars: dict[str, float]) -> str:
    """One step's row of METRICS_HEADER; ``reach`` is blank where the stage sets no limit (it is not measured)."""
    reach = f"{scalars['reach']:.4f}" if "reach" in scalars else ""
    return (f"{step},{scalars['loss']:.6g},{scalars['sds_grad']:.6g},{scalars['opacity']:.4f},"
            f"{scalars['growth_held']:.0f},{reach}")


def metrics_rows(path: Path, up_to: int) -> list[str]:
    """The rows of a run's metrics CSV for steps <= up_to (a resumed run redoes the steps after its checkpoint)."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[1:]
    return [line for line in lines if line and int(line.split(",", 1)[0]) <= up_to]


def write_metrics(run: Run, rows: list[str]) -> None:
    """progress/metrics.csv as it stands (every N steps and at checkpoints). Rows past the last checkpoint are
    dropped when the run resumes (``metrics_rows``), so after a resume the file and the checkpoint agree."""
    write_atomic(run.metrics, "\n".join([METRICS_HEADER, *rows]) + "\n")


def save_progress(trainer: Trainer, run: Run, rows: list[str]) -> None:
    """The checkpoint and the per-step metrics (progress/metrics.csv) up to the same step."""
    save_checkpoint(trainer, run)
    write_metrics(run, rows)


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[threading.Event]:
    """While training, Ctrl-C (SIGINT) and a polite kill (SIGTERM) only ask the loop to stop after the step it is
    in, so the checkpoint written then is the state at a step boundary and a resumed run continues exactly. A
    second signal stops at once (KeyboardInterrupt; the last periodic checkpoint is kept). Outside the main thread
    (where Python cannot install handlers) signals keep their usual meaning."""
    requested = STOP  # already set if a signal came during start-up and its KeyboardInterrupt was lost
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        log.warning("%s: stopping after this step (again to stop at once)", signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        requested.clear()  # acted on: the next training loop in this process starts afresh


@dataclass(frozen=True)
class Cadence:
    """Every how many steps the loop writes a progress image, a checkpoint, and a report (the progress line,
    progress/metrics.csv and run.json's ``progress``, so that a running job can be watched)."""

    preview: int
    checkpoint: int
    report: int


def _after_step(trainer: Trainer, run: Run, rows: list[str], progress: Progress, cadence: Cadence) -> bool:
    """Whatever falls due after this step; returns whether a checkpoint was written."""
    step = trainer.step
    if step % cadence.preview == 0:
        progress.image(step, save_preview(trainer, run.path / "progress" / f"step_{step:06d}.png"))
    checkpointed = step % cadence.checkpoint == 0
    reported = step % cadence.report == 0
    if checkpointed:
        save_progress(trainer, run, rows)
        run.info.steps_done = step  # what a resume would start from
    elif reported:
        write_metrics(run, rows)
    if checkpointed or reported:
        run.info.progress = progress.last
        run.save()
        progress.flush()
    return checkpointed


def train(trainer: Trainer, guidance, run: Run, show_progress: bool = True, stop_at: int | None = None) -> str:
    """Run until cfg.steps (or stop_at). Returns the final status: ok / nan / interrupted.

    Every step's loss, SDS gradient norm, mean render opacity (how much of the views the object covers: it
    shows a shape growing) and whether growth was held (max_reach) go to progress/metrics.csv, written every tenth
    of the run and with each checkpoint.
    The bar shows only when `show_progress` and stderr is a terminal; otherwise a line every tenth of the run."""
    cfg = trainer.cfg
    rows = metrics_rows(run.metrics, up_to=trainer.step)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    every = report_every(cfg.steps)
    cadence = Cadence(preview_every(cfg.preview_every, cfg.steps), cfg.checkpoint_every, every)
    progress = Progress(cfg.steps, trainer.step, bar=show_progress and on_terminal(), every=every,
                        tb_dir=run.path / "tb")
    started = time.perf_counter()
    status = "ok"
    at_boundary = True  # whether the trainer's state is that of a step boundary (safe to checkpoint)
    # The step of the run's last checkpoint (a resumed trainer starts from it; None: none written yet).
    saved = trainer.step if run.checkpoint.exists() else None
    try:
        with stop_at_step_boundary() as stop_requested:
            while trainer.step < end and not stop_requested.is_set():
                at_boundary = False
                scalars = train_step(trainer, guidance)
                at_boundary = True
                rows.append(metrics_row(trainer.step, scalars))
                progress.update(trainer.step, scalars)
                if _after_step(trainer, run, rows, progress, cadence):
                    saved = trainer.step
            if stop_requested.is_set():
                status = "interrupted"
    except FloatingPointError as e:
        if saved is None:
            log.error("%s; stopping. No checkpoint was written before it (the first is at step %d).", e,
                      cfg.checkpoint_every)
        else:
            log.error("%s; stopping. The last good checkpoint (step %d) is kept.", e, saved)
        run.info.message = str(e)
        status = "nan"
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        progress.close()
        run.add_timing("train", time.perf_counter() - started)
    run.info.progress = progress.last or run.info.progress
    return _finish(trainer, run, rows, status, at_boundary, saved)


def _finish(trainer: Trainer, run: Run, rows: list[str], status: str, at_boundary: bool, saved: int | None) -> str:
    """The last checkpoint (where the state is a step boundary) and the run's true status."""
    cfg = trainer.cfg
    if status != "nan" and at_boundary:
        save_progress(trainer, run, rows)
        run.info.steps_done = trainer.step
    else:
        run.info.steps_done = saved or 0
    if status == "ok" and trainer.step < cfg.steps:
        status = "interrupted"
    if status == "interrupted":
        run.info.message = f"interrupted at step {run.info.steps_done}; continue with: sds resume {run.path}"
        log.warning("%s", run.info.message)
    return status
