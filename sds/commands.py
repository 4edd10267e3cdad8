"""What each CLI command does, in plain functions (argument parsing stays in cli.py)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sds import record
from sds.config import ConfigError, RunConfig, from_dict
from sds.errors import RunError
from sds.progress import on_terminal
from sds.run import peak_memory_mb
from sds.run_log import capture as capture_run_log

log = logging.getLogger("sds")

RESUME_KEYS = ("steps", "preview_every", "checkpoint_every", "device", "guidance.attention_slicing",
               "guidance.vae_checkpointing", "guidance.channels_last")
"""What `sds resume` may change: anything else would not continue the same run. The memory savers change memory and
time, not the gradient (sds.guidance.memory), so a run that ran out of memory resumes with one on."""
EXPORT_KEYS = ("export", "device")
"""What `sds export` may change: the export.* section and the device."""


def train_prior(args) -> int:
    from dataclasses import replace

    from sds.prior.train import PriorTrainConfig
    from sds.prior.train import train_prior as run_training

    cfg = PriorTrainConfig(device=args.device)
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    if args.minutes is not None:
        cfg = replace(cfg, minutes=args.minutes)
    if args.batch_size is not None:
        cfg = replace(cfg, batch_size=args.batch_size)
    if args.images_per_caption is not None:
        cfg = replace(cfg, data=replace(cfg.data, images_per_caption=args.images_per_caption))
    if args.resolution is not None:
        cfg = replace(cfg, arch=replace(cfg.arch, resolution=args.resolution),
                      data=replace(cfg.data, resolution=args.resolution))
    model_dir = run_training(args.out_dir, cfg)
    log.info("prior exported to %s", model_dir)
    if args.install:
        from sds.prior import builtin_prior_path

        target = builtin_prior_path()
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(model_dir, target)
        log.info("installed as the built-in prior: %s", target)
    return 0


# ------------------------------------------------------------------------------------ generate


def nerf_render_fn(renderer):
    """What the exporter calls: NeRF colour (lambertian, light at the camera; unlit when not shaded) and opacity."""
    import torch

    from sds.render.renderer import VIEW_MIN_SHADING_WEIGHT, RenderSettings

    def render(cameras, height, width, shaded=True):
        settings = RenderSettings("lambertian" if shaded else "albedo", min_shading_weight=VIEW_MIN_SHADING_WEIGHT)
        with torch.no_grad():  # opacity does not depend on the shading; unlit skips the normals' 6 queries per sample
            out = renderer.render(cameras.to(renderer.field_device), height, width, settings, chunk_rays=8192)
        return {"rgb": out.rgb, "opacity": out.opacity}

    return render


def export_run(trainer, run, cfg: RunConfig, show_progress: bool) -> None:
    """Export the trained field into run/result and record the export's figures, timing and warnings in run.json."""
    from sds.export import export_result
    from sds.export.pipeline import SCENE_BOX_WARNING
    from sds.run import slugify

    started = time.perf_counter()
    try:
        out = export_result(trainer.field, trainer.field.bound, nerf_render_fn(trainer.renderer), run.path / "result",
                            cfg.export, show_progress=show_progress and on_terminal(), name=slugify(cfg.prompt))
    finally:
        run.set_timing("export", time.perf_counter() - started)  # this export's time: a re-export replaces it
        run.info.peak_memory_mb["cpu_rss"] = round(peak_memory_mb(), 1)
        run.save()
    run.info.export = {
        "threshold": out.threshold, "threshold_is_automatic": out.threshold_is_automatic,
        "silhouette_iou": out.silhouette_iou, "faces_before_cleanup": out.faces_before_cleanup,
        "faces_after_cleanup": out.faces_after_cleanup, "vertices": out.num_vertices,
        "texture_size": out.texture_size, "touches_bound": out.touches_bound, "timings_s": out.timings_s,
        "files": {kind: path.name for kind, path in out.files.items()},
        # world = mesh / scale + center maps the files' vertices back onto the NeRF (its cameras, its scene box)
        "center": list(out.center), "scale": out.scale, "watertight": out.watertight,
    }
    # A re-export replaces the last export's warnings instead of adding to them.
    run.info.warnings = [w for w in run.info.warnings if not w.startswith("export:")]
    if out.touches_bound:
        run.info.warnings.append(SCENE_BOX_WARNING)
    run.save()  # `sds export` saves nothing after this: without it run.json would keep the last export's figures
    for path in out.files.values():
        log.info("wrote %s", path)


def _prepare(cfg: RunConfig):
    """Load guidance (encoding the prompt once) and build the trainer; nothing is written yet."""
    from sds.guidance.hub import check_model

    check_model(cfg.guidance.model, cfg.guidance.revision)  # a hub id offline fails in a second, before the imports
    from sds.build import pick_device
    from sds.guidance.load import load_guidance
    from sds.train import make_trainer

    device = pick_device(cfg.device)
    started = time.perf_counter()
    guidance, warnings = load_guidance(cfg.guidance, cfg.prompt, device)
    load_seconds = time.perf_counter() - started
    for w in warnings:
        log.warning("prompt: %s", w)
    return guidance, make_trainer(cfg, device), warnings, load_seconds


def _train_and_export(cfg: RunConfig, run, guidance, trainer, show_progress: bool) -> int:
    """Train, then export; run.json says "running" until the mesh is written, then "ok"."""
    import torch

    from sds.train import train

    run.info.status, run.info.message = "running", ""
    run.save()
    with record.true_status(run, "training"):
        status = train(trainer, guidance, run, show_progress=show_progress)
    run.info.status = status if status != "ok" else "running"
    if torch.cuda.is_available():
        run.info.peak_memory_mb["cuda_allocated"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    run.info.peak_memory_mb["cpu_rss"] = round(peak_memory_mb(), 1)
    run.save()
    if status != "ok":
        hint = f"continue with: sds resume {run.path}" if status == "interrupted" else "lower the learning rates or guidance scale"
        log.error("run ended with status %s at step %d; %s", status, run.info.steps_done, hint)
        return 130 if status == "interrupted" else 1
    with record.true_status(run, "export"):
        export_run(trainer, run, cfg, show_progress)
    _finish(run)
    print(run.path.resolve() / "result", flush=True)  # the result on stdout, one line; logs are on stderr
    return 0 if run.info.status == "ok" else 1


CUT_BY_BOX_MESSAGE = ("the surface reached the scene box, which cut it flat: the mesh is written but is not the "
                      "object; try another seed")


def _finish(run) -> None:
    """The status of a run whose mesh is written: ok, or cut_by_box when its surface reached the scene box."""
    if run.info.export.get("touches_bound"):
        run.info.status, run.info.message = "cut_by_box", CUT_BY_BOX_MESSAGE
        log.error("run ended with status cut_by_box: %s (%s)", CUT_BY_BOX_MESSAGE, run.path / "result")
    else:
        run.info.status, run.info.message = "ok", ""
        log.info("done: %s", run.path / "result")
    run.save()


def generate(cfg: RunConfig, show_progress: bool = True, recipe_reason: str = "",
             allow_unknown_words: bool = False) -> int:
    """A new run: refuse a prompt the built-in prior cannot draw (unless `allow_unknown_words`), load the model,
    make the run folder (its run.log starts with what was logged while loading), train and export."""
    from sds.run import Run, check_output_dir, now_iso

    started_at = now_iso()
    if cfg.guidance.model == "builtin" and not allow_unknown_words:
        from sds.prior import check_drawable

        check_drawable(cfg.prompt)  # before minutes of compute on a prompt that can only give a blob
    check_output_dir(Path(cfg.output_dir).expanduser().resolve())  # before minutes of loading, not after
    with capture_run_log() as run_log:
        # Load first: a bad model path or prompt must not leave an empty run folder behind.
        guidance, trainer, warnings, load_seconds = _prepare(cfg)
        run = Run.create(cfg, started_at=started_at)
        run_log.open(run.path / "run.log")
        with record.command_on(run, started_at, later=False):
            log.info("run folder: %s", run.path)
            if cfg.recipe:
                log.info("recipe %s: %s", cfg.recipe, recipe_reason or "as configured")
            run.info.recipe, run.info.recipe_reason = cfg.recipe, recipe_reason
            record.setup(run, guidance, trainer, warnings, load_seconds)
            return _train_and_export(cfg, run, guidance, trainer, show_progress)


def open_run(run_dir: Path):
    """(Run, RunConfig) of an existing run folder; a folder that is not one, or a config this sds cannot read, is a
    one-line RunError."""
    from sds.run import Run

    if not (run_dir / "config.yaml").is_file() or not (run_dir / "run.json").is_file():
        raise RunError(f"{run_dir} is not a run folder (no config.yaml / run.json)")
    import yaml

    path = run_dir / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise RunError(f"{path} is not readable YAML ({type(e).__name__}); restore it from a copy") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} does not hold a config (expected a mapping of keys); restore it from a copy")
    if "stages" not in data:  # every config saved since 0.2 (recipes and stages) lists its stages
        from sds import __version__

        raise RunError(f"{path} was written by an sds older than 0.3 (it has no stages), whose settings and "
                       f"checkpoints this sds {__version__} cannot read; resume or export the run with that version "
                       "(git checkout 15abc41), or start a new run")
    try:
        cfg = from_dict(data)
    except ConfigError as e:
        raise RunError(f"{path} is not a valid config for this version of sds: {e}") from None
    return Run.open(run_dir), cfg


def _require_checkpoint(run) -> None:
    if not run.checkpoint.is_file():
        raise RunError(f"{run.path} has no checkpoint (ckpt/last.pt); start a new run with sds generate")


def _load_trainer_state(run, trainer) -> None:
    from sds.train import load_checkpoint

    _require_checkpoint(run)
    load_checkpoint(trainer, run)


def load_trained(run, cfg: RunConfig):
    """The run's field, background and renderer as its last checkpoint left them, on the config's device."""
    from sds.build import pick_device
    from sds.train import make_trainer

    trainer = make_trainer(cfg, pick_device(cfg.device))
    _load_trainer_state(run, trainer)
    return trainer


def resume(run_dir: Path, overrides: list[str], show_progress: bool = True) -> int:
    """Continue from ckpt/last.pt in the same folder; steps=N extends a finished run.

    Nothing in the run folder changes (config.yaml, run.json, run.log) until the model and the checkpoint have
    loaded: a resume that fails leaves the run folder as it was."""
    from sds.config import to_yaml, with_overrides
    from sds.run import now_iso, write_atomic

    started_at = now_iso()
    with capture_run_log() as run_log:
        run, cfg = open_run(run_dir)
        if overrides:
            cfg = with_overrides(cfg, overrides, allowed=RESUME_KEYS)
        from sds.train import read_checkpoint

        _require_checkpoint(run)  # the cheap checks first: loading a model can take minutes
        done = read_checkpoint(run.checkpoint)["step"]
        if done > cfg.steps:
            raise RunError(f"the run is at step {done}, past steps={cfg.steps}; resume with steps >= {done}")
        guidance, trainer, warnings, load_seconds = _prepare(cfg)
        _load_trainer_state(run, trainer)
        if overrides:
            write_atomic(run.path / "config.yaml", to_yaml(cfg))
        run_log.open(run.path / "run.log")  # appended to: the run's log continues
        with record.command_on(run, started_at, later=True):
            record.setup(run, guidance, trainer, warnings, load_seconds)
            log.info("resuming %s at step %d of %d", run.path, trainer.step, cfg.steps)
            run.info.steps_total = cfg.steps
            return _train_and_export(cfg, run, guidance, trainer, show_progress)


def export(run_dir: Path, overrides: list[str]) -> int:
    """Re-export a run's mesh; overrides are export.* settings (and device)."""
    from sds.config import with_overrides
    from sds.run import now_iso

    started_at = now_iso()
    with capture_run_log() as run_log:
        run, cfg = open_run(run_dir)
        cfg = with_overrides(cfg, overrides, allowed=EXPORT_KEYS)
        trainer = load_trained(run, cfg)
        run_log.open(run.path / "run.log")
        with record.command_on(run, started_at, later=True):
            run.info.hardware = record.machine(trainer.field_device)
            # A failed re-export changes nothing: the last result stays (files are published only once all are
            # written) and so does the run's status.
            export_run(trainer, run, cfg, show_progress=True)
            if run.info.status in ("ok", "cut_by_box", "interrupted", "empty", "failed") and trainer.step >= cfg.steps:
                _finish(run)  # training had finished; the status is this mesh's
    print(run.path.resolve() / "result", flush=True)  # the result on stdout, one line; logs are on stderr
    return 1 if run.info.status == "cut_by_box" else 0


def view(run_dir: Path, open_browser: bool = True) -> int:
    from sds.export.viewer import write_viewer_html

    glb = run_dir / "result" / "model.glb"
    if not glb.is_file():
        raise RunError(f"{glb} not found; export first: sds export {run_dir}")
    html = run_dir / "result" / "viewer.html"
    write_viewer_html(glb, html, title=_run_prompt(run_dir))
    log.info("viewer: %s", html)
    if open_browser:
        import webbrowser

        webbrowser.open(html.resolve().as_uri())
    print(html.resolve(), flush=True)  # the result on stdout; logs are on stderr
    return 0


def _run_prompt(run_dir: Path) -> str | None:
    """The run's prompt, read leniently (run.json, else config.yaml): only a title, never worth an error."""
    import json

    import yaml

    for name, read in (("run.json", json.loads), ("config.yaml", yaml.safe_load)):
        try:
            prompt = read((run_dir / name).read_text(encoding="utf-8")).get("prompt")
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            continue
        if isinstance(prompt, str) and prompt.strip():
            return prompt
    return None


def sample(args) -> int:
    import imageio.v3 as iio

    from sds.build import pick_device
    from sds.run import slugify
    from sds.sampling import image_grid, sample_images

    images = sample_images(args.model, args.prompt, args.n, args.scheduler, args.steps, args.guidance_scale,
                           args.seed, pick_device(args.device), show_progress=on_terminal())
    steps = args.steps if args.scheduler == "ddim" else "all"
    caption = f"{args.prompt!r}  {args.scheduler}, {steps} steps, guidance scale {args.guidance_scale:g}"
    grid = _captioned((image_grid(images, columns=min(args.n, 8)).numpy() * 255).round().astype("uint8"), caption)
    out = args.out or Path("outputs") / "samples" / f"{slugify(args.prompt)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, grid)
    log.info("%s: %d samples of %r, %s, %s steps, guidance scale %g", out, args.n, args.prompt, args.scheduler,
             steps, args.guidance_scale)
    return 0


def _captioned(image, caption: str):
    """The image (upscaled so text fits) with a white strip of text under it."""
    import numpy as np
    from PIL import Image, ImageDraw

    scale = max(1, 512 // image.shape[1])
    img = Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 16), "white")
    canvas.paste(img, (0, 0))
    ImageDraw.Draw(canvas).text((4, img.height + 2), caption, fill="black")
    return np.asarray(canvas)
