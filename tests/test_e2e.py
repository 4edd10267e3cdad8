"""End to end: the CLI on a tiny model, resume equality, NaN handling, bad input at the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sds.config import load_config
from sds.guidance.load import load_guidance
from sds.run import Run
from sds.train import load_checkpoint, make_trainer, read_checkpoint, train

SMALL = ["steps=12", "checkpoint_every=4", "preview_every=6", "render.resolution=16", "camera.batch_size=2",
         "render.samples_per_ray=16", "field.encoding.resolution=16", "export.resolution=32",
         "export.preview_resolution=32", "export.texture_size=64"]
"""A tiny run of the built-in stages: shape (albedo) for steps 0-3, texture (lit, geometry at 0.3) for 4-10, colour
(geometry held) at 11."""

THREE_STAGES = ("stages=[{name: shape, until: 0.25, shading: albedo, guidance_scale: 50},"
                " {name: mid, until: 0.5, shading: lit, guidance_scale: 30, lr_scale: {geometry: 0.5, albedo: 2}},"
                " {name: texture, until: 1.0, shading: lit, textureless_prob: 0.5, guidance_scale: 20,"
                " lr_scale: {geometry: 0.1, background: 0}, geometry_growth: 0.4, max_reach: 0.1, redistance: false}]")
"""Three stages of a user's; the last (steps 6-11, across the resume tests' stop at 6) damps the geometry's growth
and holds it while the shape reaches past a tenth of the box (which it always does)."""


def _sds(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "sds.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _cfg(tiny_pixel_model, tmp_path, *extra):
    return load_config(None, [f"model={tiny_pixel_model}", f"output_dir={tmp_path}", *SMALL, *extra],
                       prompt="a red cube")


@pytest.mark.parametrize("extra", [(), (THREE_STAGES,)], ids=["builtin_stages", "three_stages"])
def test_resume_reaches_same_weights_as_uninterrupted_run(tiny_pixel_model, tmp_path, extra):
    cfg = _cfg(tiny_pixel_model, tmp_path, *extra)
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))

    straight = make_trainer(cfg, torch.device("cpu"))
    straight_run = Run.create(cfg)
    assert train(straight, guidance, straight_run, show_progress=False) == "ok"

    run = Run.create(cfg)
    first = make_trainer(cfg, torch.device("cpu"))
    assert train(first, guidance, run, show_progress=False, stop_at=6) == "interrupted"
    resumed = make_trainer(cfg, torch.device("cpu"))
    load_checkpoint(resumed, run)
    assert resumed.step == 6
    reach_at_6 = resumed.field.reach()
    assert train(resumed, guidance, run, show_progress=False) == "ok"
    for a, b in zip(straight.field.parameters(), resumed.field.parameters()):
        assert torch.equal(a, b)
    metrics = [r.metrics.read_text() for r in (straight_run, run)]
    assert metrics[0] == metrics[1] and len(metrics[0].splitlines()) == 1 + cfg.steps  # the same log, step by step
    held = [r.split(",")[4] for r in metrics[0].splitlines()[1:]]
    assert held == (["0"] * 6 + ["1"] * 6 if extra else ["0"] * 12)  # three_stages' max_reach holds from step 6
    # The reach each step's decision was taken on: measured (before the step) only in stages with a limit (the
    # built-in shape and texture stages, steps 1-11; three_stages' last, 7-12), and past the limit where held.
    reach = [r.split(",")[5] for r in metrics[0].splitlines()[1:]]
    limited = range(6, 12) if extra else range(0, 11)
    assert [i for i, x in enumerate(reach) if x] == list(limited)
    limit = cfg.stages[-1 if extra else 0].max_reach
    assert all((float(reach[i]) > limit) if extra else (0 < float(reach[i]) <= limit) for i in limited)
    assert float(reach[6]) == pytest.approx(reach_at_6, abs=1e-4)  # step 7's row: the field as step 6 left it
    assert not torch.equal(straight.field.full_grid(), make_trainer(cfg, torch.device("cpu")).field.full_grid())
    # The last step ran at the last stage's rates (stop_at=6 is past the first stage's end in both cases), set
    # from the plan rather than carried over from the interrupted trainer.
    last = cfg.stages[-1].lr_scale
    rates = {g["role"]: g["lr"] for g in resumed.optimizer.param_groups}
    assert rates["geometry"] == pytest.approx(cfg.optim.lr_grid * last.geometry)
    assert rates["albedo"] == pytest.approx(cfg.optim.lr_grid * last.albedo)


def test_metrics_rows_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    from sds.train import metrics_rows

    path = tmp_path / "metrics.csv"
    assert metrics_rows(path, up_to=5) == []  # a new run has none
    path.write_text("step,loss,sds_grad,opacity\n1,0.5,2,0.1\n2,0.4,2,0.1\n3,0.3,2,0.2\n")
    # A run killed after step 3 but checkpointed at step 2 redoes step 3: its old row must not stay twice.
    assert metrics_rows(path, up_to=2) == ["1,0.5,2,0.1", "2,0.4,2,0.1"]


def test_nan_loss_stops_with_status_nan_and_keeps_last_good_checkpoint(tiny_pixel_model, tmp_path):
    cfg = _cfg(tiny_pixel_model, tmp_path)
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))

    def poisoned(rgb, labels, p, gen):
        out = guidance(rgb, labels, p, gen)
        if p.step == 5:
            out.loss = out.loss * float("nan")
        return out

    run = Run.create(cfg)
    trainer = make_trainer(cfg, torch.device("cpu"))
    assert train(trainer, poisoned, run, show_progress=False) == "nan"
    kept = read_checkpoint(run.checkpoint)
    assert kept["step"] == 4 and {"geometry_grids.0", "albedo_grids.0"} <= set(kept["field"])
    assert all(torch.isfinite(v).all() for v in kept["field"].values())


def test_a_surface_cut_by_the_scene_box_ends_with_status_cut_by_box(tiny_pixel_model, tmp_path, caplog):
    from sds import commands

    # A start sphere larger than the scene box (radius 1.2, box half-side 1): the surface meets the box's faces.
    cfg = _cfg(tiny_pixel_model, tmp_path, "field.blob_radius=1.2", "export.formats=[ply]", "export.video=false")
    assert commands.generate(cfg, show_progress=False) == 1
    (run_dir,) = [p for p in tmp_path.glob("a-red-cube-*/*") if p.is_dir()]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "cut_by_box" and "scene box" in info["message"] and info["export"]["touches_bound"]
    assert (run_dir / "result" / "model.ply").is_file()  # the mesh is kept, for a person to look at
    assert "status cut_by_box" in caplog.text
    # A re-export of the same field says the same: the status is the mesh's, not "ok" because training ended.
    assert commands.export(run_dir, ["export.video=false"]) == 1
    assert json.loads((run_dir / "run.json").read_text())["status"] == "cut_by_box"


@pytest.mark.slow
def test_generate_writes_the_whole_run_folder_then_resume_and_export(tiny_pixel_model, tmp_path):
    out = _sds("generate", "a red cube", "--recipe", "builtin", f"model={tiny_pixel_model}", f"output_dir={tmp_path}", *SMALL,
               "export.formats=[glb, obj, ply]", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = [p for p in tmp_path.glob("a-red-cube-*/*") if p.is_dir()]
    assert len(run_dir.parent.name.split("-")[-1]) == 8
    assert out.stdout == f"{(run_dir / 'result').resolve()}\n"  # the result on stdout, logs on stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "ok" and info["steps_done"] == 12 and info["renderer_path"] == "torch"
    assert info["recipe"] == "builtin" and info["recipe_reason"] == "asked for with --recipe"
    assert info["model_kind"] == "pixel" and info["prediction_type"] == "epsilon"
    assert {"load_model", "train", "export"} <= set(info["timings_s"]) and info["peak_memory_mb"]["cpu_rss"] > 0
    assert info["versions"]["torch"] == torch.__version__
    # The tiny run's blob stays well inside the scene box: flagged not cut by it, and no warning about it.
    assert info["export"]["touches_bound"] is False and not any("scene box" in w for w in info["warnings"])
    assert len(info["export"]["center"]) == 3 and info["export"]["scale"] > 0  # mesh -> NeRF: v / scale + center
    assert b"a-red-cube" in (run_dir / "result" / "model.glb").read_bytes()[:4096]  # glTF node and mesh names
    for rel in ["config.yaml", "ckpt/last.pt", "progress/step_000006.png", "progress/step_000012.png",
                "result/model.glb", "result/model.obj", "result/model.ply", "result/preview.png"]:
        assert (run_dir / rel).is_file(), rel
    assert any((run_dir / "result").glob("turntable.*"))
    assert not list(run_dir.rglob("*.tmp"))

    metrics = (run_dir / "progress" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,loss,sds_grad,opacity,growth_held,reach" and [int(r.split(",")[0]) for r in metrics[1:]] == list(range(1, 13))
    assert all(0 <= float(r.split(",")[3]) <= 1 for r in metrics[1:])  # mean opacity

    out = _sds("resume", str(run_dir), "steps=16", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == f"{(run_dir / 'result').resolve()}\n"
    assert json.loads((run_dir / "run.json").read_text())["steps_done"] == 16
    metrics = (run_dir / "progress" / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in metrics[1:]] == list(range(1, 17))  # continued, nothing twice

    out = _sds("export", str(run_dir), "--format", "ply", "--resolution", "24", "--no-video")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == f"{(run_dir / 'result').resolve()}\n"
    exported = json.loads((run_dir / "run.json").read_text())["export"]  # the re-export's figures, not the first's
    assert set(exported["files"]) == {"ply", "preview"} and exported["touches_bound"] is False


@pytest.mark.parametrize("args,code,words", [
    (["generate", ""], 2, "prompt: empty"),
    (["generate", "   "], 2, "prompt: empty"),
    (["generate", "a red cube", "stesp=3"], 2, "did you mean 'steps'"),
    (["generate", "a red cube", "steps=-1"], 2, "steps: must be in [1, 10000000]"),
    (["generate", "a red cube", "model=./no/such/model"], 1, "no/such/model"),
    (["generate", "a red cube", "--config", "missing.yaml"], 2, "file not found"),
    (["resume", "not_a_run"], 1, "not a run folder"),
    (["export", "not_a_run"], 1, "not a run folder"),
])
def test_bad_input_one_line_no_traceback_nothing_written(args, code, words, tmp_path):
    out = _sds(*args, cwd=tmp_path)
    assert out.returncode == code, out.stderr
    assert words in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()


def test_export_of_run_without_checkpoint_is_clear(tiny_pixel_model, tmp_path):
    cfg = _cfg(tiny_pixel_model, tmp_path)
    run = Run.create(cfg)
    out = _sds("export", str(run.path))
    assert out.returncode == 1 and "no checkpoint" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_builtin_prior_end_to_end_short(tmp_path):
    """The README's main command, shortened: the shipped prior loads offline and a mesh comes out."""
    out = _sds("generate", "a red sphere", "steps=30", f"output_dir={tmp_path}", "export.resolution=48",
               "export.preview_resolution=32", "--no-progress", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (glb,) = tmp_path.glob("*/*/result/model.glb")
    assert glb.stat().st_size > 1000


@pytest.mark.parametrize("scheduler,steps", [("ddim", 4), pytest.param("ddpm", 0, marks=pytest.mark.slow)])
def test_sample_grid(tiny_pixel_model, tmp_path, scheduler, steps):
    out_png = tmp_path / "grid.png"
    out = _sds("sample", "a red cube", "--model", str(tiny_pixel_model), "--scheduler", scheduler,
               "--steps", str(steps), "-n", "3", "--out", str(out_png))
    assert out.returncode == 0, out.stderr[-2000:]
    import imageio.v3 as iio

    image = iio.imread(out_png)
    assert image.shape[1] == 16 * 3 * (512 // 48) and image.shape[0] > image.shape[1] // 3  # 3 tiles + caption
    assert scheduler in out.stderr


def _silent(rgb, labels, p, gen):
    """No SDS gradient: only the regularisers (and redistancing) move the field."""
    from sds.guidance.sds import SDSOutput

    return SDSOutput(loss=rgb.sum() * 0, grad_norm=0.0, timesteps=torch.zeros(len(labels)))


def test_eikonal_term_straightens_the_sdf_in_a_training_step(tiny_pixel_model, tmp_path):
    from sds.train import train_step

    trainer = make_trainer(_cfg(tiny_pixel_model, tmp_path, "field.geometry=sdf", "field.geometry.eikonal=1",
                                "reg.opacity_entropy=0"), torch.device("cpu"))
    fine = trainer.field.geometry_grids[0]
    with torch.no_grad():
        fine[0, 0] = torch.randn(fine.shape[2:], generator=torch.Generator().manual_seed(0))
    before = trainer.field.eikonal().item()
    train_step(trainer, _silent)
    assert trainer.field.eikonal().item() < before


def test_redistancing_resets_the_sdf_every_n_steps_in_the_stages_that_ask_for_it(tiny_pixel_model, tmp_path):
    from sds.train import train_step

    # Built-in stages over 12 steps: shape (redistance: true) for steps 0-3, texture (redistance: false) after.
    trainer = make_trainer(_cfg(tiny_pixel_model, tmp_path, "field.geometry=sdf", "field.geometry.redistance_every=2",
                                "reg.opacity_entropy=0", "field.geometry.eikonal=0",
                                "render.color_depth_gradient_scale=0.5"), torch.device("cpu"))
    field = trainer.field
    resets = []
    reset = field.redistance
    field.redistance = lambda: resets.append(trainer.step) or reset()
    with torch.no_grad():  # twice the start sphere's distance: the same surface, |grad d| = 2
        field.geometry_grids[0][0, 0] = field.start_sphere_sdf(field.lattice) / field.geometry.scale
    eikonal = [field.eikonal().item()]
    settings = []
    render = trainer.renderer.render
    trainer.renderer.render = lambda cams, h, w, s, *a, **kw: settings.append(s) or render(cams, h, w, s, *a, **kw)
    for _ in range(8):
        train_step(trainer, _silent)
        eikonal.append(field.eikonal().item())
    assert eikonal[0] == pytest.approx(1.0, abs=0.05) and eikonal[1] == pytest.approx(eikonal[0], abs=0.05)
    assert eikonal[2] < 0.02  # reset after step 2, not after step 1
    assert resets == [2, 4]  # after steps 2 and 4 (the shape stage); none in the texture stage (steps 5-8)
    # Each step renders with its stage's shading and the configured gradient scales.
    assert [s.shading for s in settings] == ["albedo"] * 4 + ["lambertian"] * 4
    assert all(s.perturb and s.color_depth_gradient_scale == 0.5 and s.normal_gradient_scale == 0 for s in settings)


def test_the_texture_stage_moves_the_geometry_at_its_lr_scale(tiny_pixel_model, tmp_path):
    from sds.train import train_step

    def one_step(*extra, at=4):
        """One step from step `at` of a fresh trainer: the grids before and after, and each role's rate scale."""
        cfg = _cfg(tiny_pixel_model, tmp_path, *extra)
        trainer = make_trainer(cfg, torch.device("cpu"))
        trainer.step = at
        guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
        field = trainer.field
        before = [p.detach().clone() for p in (*field.geometry_grids, *field.albedo_grids)]
        train_step(trainer, guidance)
        after = [p.detach().clone() for p in (*field.geometry_grids, *field.albedo_grids)]
        scales = {g["role"]: g["lr"] / g["initial_lr"] for g in trainer.optimizer.param_groups}
        levels = len(field.geometry_grids)
        return before[:levels], after[:levels], before[levels:], after[levels:], scales

    # Built-in stages over 12 steps: step 4 is the texture stage's first, its geometry at 0.3 of its rate.
    geo0, slow, alb0, alb_slow, scales = one_step()
    assert scales["geometry"] == pytest.approx(0.3) and scales["albedo"] == 1.0
    full_texture = ("stages=[{name: shape, until: 0.3333, shading: albedo, guidance_scale: 50, max_reach: 0.75},"
                    " {name: texture, until: 1.0, shading: lit, guidance_scale: 25, redistance: false, max_reach: 0.75}]")
    geo0_full, full, alb0_full, alb_full, scales = one_step(full_texture)
    assert scales["geometry"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(geo0, geo0_full))  # the same start, the same gradient
    # Adam's first step is lr * sign(grad): the geometry takes 0.3 of the step it takes at the full rate, on every
    # level, and the albedo takes its whole step either way.
    for b, s, f in zip(geo0, slow, full):
        assert (f - b).abs().max() > 0
        assert torch.allclose(s - b, 0.3 * (f - b), atol=1e-6)
    assert all(torch.equal(s, f) for s, f in zip(alb_slow, alb_full))
    assert any(not torch.equal(b, a) for b, a in zip(alb0, alb_slow))  # the albedo trained
    # A stage that holds the geometry (lr_scale.geometry: 0) leaves every level of it untouched.
    frozen = ("stages=[{name: texture, until: 1.0, shading: lit, guidance_scale: 25, lr_scale: {geometry: 0},"
              " redistance: false}]")
    geo0, held, alb0, alb_held, scales = one_step(frozen, at=0)
    assert scales["geometry"] == 0 and all(torch.equal(b, a) for b, a in zip(geo0, held))
    assert any(not torch.equal(b, a) for b, a in zip(alb0, alb_held))
    # The shape stage (step 0 of the built-in stages) trains the geometry at the full rate.
    _, _, _, _, scales = one_step(at=0)
    assert scales == {"geometry": 1.0, "albedo": 1.0}
    # The built-in colour stage (step 11 of 12) holds the geometry and moves the albedo at 8x its rate.
    geo0, held, alb0, alb_fast, scales = one_step(at=11)
    assert scales == {"geometry": 0.0, "albedo": 8.0} and all(torch.equal(b, a) for b, a in zip(geo0, held))
    assert any(not torch.equal(b, a) for b, a in zip(alb0, alb_fast))


def test_textureless_views_follow_the_stages():
    from sds.schedule import plan
    from sds.train import pick_shading

    stages = ("stages=[{name: shape, until: 0.25, shading: albedo}, {name: grey, until: 0.5, shading: lit,"
              " textureless_prob: 1}, {name: grey_too, until: 0.75, shading: albedo, textureless_prob: 1},"
              " {name: texture, until: 1.0, shading: lit, textureless_prob: 0}]")
    cfg = load_config(None, ["steps=8", stages], prompt="a")
    gen = torch.Generator().manual_seed(0)
    assert [pick_shading(plan(cfg, step), gen) for step in range(8)] == (
        ["albedo"] * 2 + ["textureless"] * 4 + ["lambertian"] * 2)
    # Half the views grey in an albedo stage: some of each, and never lambertian.
    half = load_config(None, ["steps=200", "stages=[{name: shape, shading: albedo, textureless_prob: 0.5}]"],
                       prompt="a")
    picks = [pick_shading(plan(half, step), gen) for step in range(200)]
    assert 70 < picks.count("textureless") < 130 and set(picks) == {"albedo", "textureless"}


def test_a_hash_grid_field_trains(tiny_pixel_model, tmp_path):
    # The stages' per-role rates must work for fields without separate geometry and albedo grids.
    from sds.train import train_step

    cfg = _cfg(tiny_pixel_model, tmp_path, "field.encoding=hashgrid", "field.encoding.levels=2",
               "field.encoding.log2_table_size=10", "field.encoding.max_resolution=16", "field.encoding.hidden_dim=8")
    trainer = make_trainer(cfg, torch.device("cpu"))
    assert type(trainer.field).__name__ == "HashGridField"
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
    before = [p.detach().clone() for p in trainer.field.parameters()]
    train_step(trainer, guidance)
    assert any(not torch.equal(b, a) for b, a in zip(before, trainer.field.parameters()))


def test_a_run_off_a_terminal_logs_lines_not_a_bar_and_records_itself(tiny_pixel_model, tmp_path):
    """stderr is a pipe here, as in a log file, CI or a cluster job: no bar (no carriage returns), a line every
    tenth of the run, the same lines in run.log; run.json says when, how, where and with which sds it ran; a
    re-export replaces the export's time and is appended to run.log and run.json's later_commands."""
    import datetime
    import os

    import sds

    out = _sds("generate", "a red cube", "--recipe", "builtin", f"model={tiny_pixel_model}", f"output_dir={tmp_path}",
               *SMALL, "export.video=false")
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = [p for p in tmp_path.glob("a-red-cube-*/*") if p.is_dir()]
    assert "\r" not in out.stderr
    console = [line.split("INFO ", 1)[1] for line in out.stderr.splitlines() if line.startswith("INFO step ")]
    assert [line.split("/")[0] for line in console] == [f"step {s:>2}" for s in range(2, 13, 2)]
    assert all("loss" in line and "opacity" in line and "steps/s" in line and "ETA" in line for line in console)
    log = (run_dir / "run.log").read_text()
    assert "\r" not in log and log.splitlines()[0].endswith("command: sds generate 'a red cube' --recipe builtin "
                                                            f"model={tiny_pixel_model} output_dir={tmp_path} "
                                                            + " ".join(SMALL) + " export.video=false")
    assert [line.split("INFO ", 1)[1] for line in log.splitlines() if " INFO step " in line] == console
    assert "model " in log and "done: " in log  # what was logged before the run folder existed, and after

    info = json.loads((run_dir / "run.json").read_text())
    assert info["command"][:3] == ["sds", "generate", "a red cube"] and info["sds_version"] == sds.__version__
    start, end = (datetime.datetime.fromisoformat(info[k]) for k in ("started_at", "ended_at"))
    assert start <= end and end - start < datetime.timedelta(minutes=10)
    assert info["hardware"]["cpu_cores"] == os.cpu_count() and info["hardware"]["gpu"] is None
    head = subprocess.run(["git", "-C", str(Path(sds.__file__).parents[1]), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert info["git_commit"] is None if not head else info["git_commit"].startswith(head)
    assert info["progress"]["step"] == 12 and info["later_commands"] == []

    info["timings_s"]["export"] = 1e6  # as if many exports had been summed
    (run_dir / "run.json").write_text(json.dumps(info))
    out = _sds("export", str(run_dir), "--no-video")
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert 0 < info["timings_s"]["export"] < 1e3  # this export's time, not added to the last
    (later,) = info["later_commands"]
    assert later["command"] == ["sds", "export", str(run_dir), "--no-video"] and info["ended_at"] == later["ended_at"]
    appended = (run_dir / "run.log").read_text()
    assert appended.startswith(log) and f"command: sds export {run_dir} --no-video" in appended[len(log):]
