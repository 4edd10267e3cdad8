"""End to end: the CLI on a tiny model, resume equality, NaN handling, bad input at the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sds.config import load_config
from sds.guidance.load import load_guidance
from sds.run import Run
from sds.train import load_checkpoint, make_trainer, read_checkpoint, train

SMALL = ["steps=12", "checkpoint_every=4", "preview_every=6", "render.resolution=16", "camera.batch_size=2",
         "render.samples_per_ray=16", "field.grid_resolution=16", "render.albedo_warmup_steps=4",
         "export.resolution=32", "export.video_frames=4", "export.video_resolution=32",
         "export.preview_resolution=32", "export.texture_size=64"]


def _sds(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "sds.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _cfg(tiny_pixel_model, tmp_path, *extra):
    return load_config(None, [f"model={tiny_pixel_model}", f"output_dir={tmp_path}", *SMALL, *extra],
                       prompt="a red cube")


@pytest.mark.parametrize("extra", [(), ("optim.lr_final_fraction=0.1", "optim.lr_decay_start=0.25")])
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
    assert train(resumed, guidance, run, show_progress=False) == "ok"
    for a, b in zip(straight.field.parameters(), resumed.field.parameters()):
        assert torch.equal(a, b)
    metrics = [r.metrics.read_text() for r in (straight_run, run)]
    assert metrics[0] == metrics[1] and len(metrics[0].splitlines()) == 1 + cfg.steps  # the same log, step by step
    assert not torch.equal(straight.field.grid, make_trainer(cfg, torch.device("cpu")).field.grid)  # it trained
    # The last step ran at the decayed rate (stop_at=6 is past the decay's start at step 3 when it is on).
    lr_grid = [g["lr"] for g in resumed.optimizer.param_groups if g["name"] == "grid"]
    assert lr_grid == [pytest.approx(cfg.optim.lr_grid * cfg.optim.lr_final_fraction)]


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
    assert kept["step"] == 4 and torch.isfinite(kept["field"]["grid"]).all()


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
    for rel in ["config.yaml", "ckpt/last.pt", "progress/step_000006.png", "progress/step_000012.png",
                "result/model.glb", "result/model.obj", "result/model.ply", "result/preview.png"]:
        assert (run_dir / rel).is_file(), rel
    assert any((run_dir / "result").glob("turntable.*"))
    assert not list(run_dir.rglob("*.tmp"))

    metrics = (run_dir / "progress" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,loss,sds_grad,opacity" and [int(r.split(",")[0]) for r in metrics[1:]] == list(range(1, 13))
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
               "export.video_frames=4", "--no-progress", timeout=600)
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


def test_density_tv_term_smooths_the_grid_in_a_training_step(tiny_pixel_model, tmp_path):
    from sds.guidance.sds import SDSOutput
    from sds.train import train_step

    def silent(rgb, labels, p, gen):  # no SDS gradient: only the regularisers move the field
        return SDSOutput(loss=rgb.sum() * 0, grad_norm=0.0, timesteps=torch.zeros(len(labels)))

    def one_step(*extra):  # a density field: the sdf default's eikonal term would move the grid too
        trainer = make_trainer(_cfg(tiny_pixel_model, tmp_path, "field.geometry=density", *extra), torch.device("cpu"))
        with torch.no_grad():
            trainer.field.grid[0, 0] = torch.randn(trainer.field.grid.shape[2:], generator=torch.Generator().manual_seed(0))
        before = (trainer.field.grid.detach().clone(), trainer.field.density_tv().item())
        train_step(trainer, silent)
        return before, (trainer.field.grid.detach(), trainer.field.density_tv().item())

    (grid0, tv0), (grid1, tv1) = one_step("reg.density_tv=10")
    assert tv1 < tv0
    (grid0, _), (grid1, _) = one_step()  # default weight 0: nothing else acts at step 0, so nothing moves
    assert torch.equal(grid0, grid1)


def test_eikonal_term_straightens_the_sdf_in_a_training_step(tiny_pixel_model, tmp_path):
    from sds.guidance.sds import SDSOutput
    from sds.train import train_step

    def silent(rgb, labels, p, gen):  # no SDS gradient: only the regularisers move the field
        return SDSOutput(loss=rgb.sum() * 0, grad_norm=0.0, timesteps=torch.zeros(len(labels)))

    trainer = make_trainer(_cfg(tiny_pixel_model, tmp_path, "field.geometry=sdf", "reg.eikonal=1",
                                "reg.opacity_entropy=0"), torch.device("cpu"))
    with torch.no_grad():
        trainer.field.grid[0, 0] = torch.randn(trainer.field.grid.shape[2:], generator=torch.Generator().manual_seed(0))
    before = trainer.field.eikonal().item()
    train_step(trainer, silent)
    assert trainer.field.eikonal().item() < before


def test_redistancing_resets_the_sdf_every_n_steps(tiny_pixel_model, tmp_path):
    from sds.guidance.sds import SDSOutput
    from sds.train import train_step

    def silent(rgb, labels, p, gen):  # no SDS gradient: the field moves only by redistancing
        return SDSOutput(loss=rgb.sum() * 0, grad_norm=0.0, timesteps=torch.zeros(len(labels)))

    blur_ramp = "field.redistance_blur_voxels={start: 0, end: 1.5, start_step: 2, end_step: 6}"
    depth_ramp = "render.color_depth_gradient_scale={start: 0, end: 1, start_step: 1, end_step: 5}"
    trainer = make_trainer(_cfg(tiny_pixel_model, tmp_path, "field.geometry=sdf", "field.redistance_every=2",
                                "reg.opacity_entropy=0", "reg.eikonal=0", blur_ramp, depth_ramp), torch.device("cpu"))
    field = trainer.field
    blurs = []
    reset = field.redistance
    field.redistance = lambda blur_voxels: blurs.append(blur_voxels) or reset(blur_voxels)
    with torch.no_grad():  # twice the start sphere's distance: the same surface, |grad d| = 2
        field.grid[0, 0] = field.start_sphere_sdf(field.lattice) / field.cfg.sdf_scale
    eikonal = [field.eikonal().item()]
    depth_scales = []
    render = trainer.renderer.render
    trainer.renderer.render = lambda *a, **kw: depth_scales.append(kw["color_depth_gradient_scale"]) or render(*a, **kw)
    for _ in range(4):
        train_step(trainer, silent)
        eikonal.append(field.eikonal().item())
    assert eikonal[0] == pytest.approx(1.0, abs=0.05) and eikonal[1] == pytest.approx(eikonal[0], abs=0.05)
    assert eikonal[2] < 0.02  # reset after step 2, not after step 1
    assert blurs == [0.0, 0.75]  # the blur ramp's value at steps 2 and 4
    assert depth_scales == [0.0, 0.0, 0.25, 0.5]  # the renderer renders step k with the ramp's value at k


def test_frozen_density_keeps_the_shape_while_the_albedo_trains(tiny_pixel_model, tmp_path):
    from sds.train import train_step

    def two_steps(*extra, steps=2):
        cfg = _cfg(tiny_pixel_model, tmp_path, *extra)
        trainer = make_trainer(cfg, torch.device("cpu"))
        guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
        before = [p.detach().clone() for p in (trainer.field.grid, *trainer.field.coarse)]
        for _ in range(steps):  # a second step has Adam momentum from the first
            train_step(trainer, guidance)
        lr = next(g["lr"] for g in trainer.optimizer.param_groups if g["name"] == "grid")
        return before, [p.detach() for p in (trainer.field.grid, *trainer.field.coarse)], lr / cfg.optim.lr_grid

    before, after, lr_scale = two_steps("optim.freeze_density_from=0", "optim.texture_density_step=0",
                                        "optim.texture_lr_scale=3")
    assert all(torch.equal(b[:, 0], a[:, 0]) for b, a in zip(before, after))  # density: every level untouched
    assert not torch.equal(before[0][:, 1:], after[0][:, 1:])  # albedo trained
    assert lr_scale == pytest.approx(3.0)  # at the texture stage's rate
    before, after, lr_scale = two_steps("optim.freeze_density_from=null")
    assert not torch.equal(before[0][:, 0], after[0][:, 0])  # without the freeze the density trains
    assert lr_scale == 1.0
    # texture_density_step: the density keeps that fraction of the step it would take (1: as if not frozen)
    before, full, _ = two_steps("optim.freeze_density_from=0", "optim.texture_density_step=1", steps=1)
    _, quarter, _ = two_steps("optim.freeze_density_from=0", "optim.texture_density_step=0.25", steps=1)
    for b, f, q in zip(before, full, quarter):
        assert (f[:, 0] - b[:, 0]).abs().max() > 0
        assert torch.allclose(q[:, 0] - b[:, 0], 0.25 * (f[:, 0] - b[:, 0]), atol=1e-6)
        assert torch.equal(q[:, 1:], f[:, 1:])  # the albedo takes its whole step either way
    # as a ramp, the fraction is the ramp's value at the step being taken (step 0: its start)
    _, ramped, _ = two_steps("optim.freeze_density_from=0",
                             "optim.texture_density_step={start: 0.25, end: 1, start_step: 1, end_step: 2}", steps=1)
    assert all(torch.equal(r, q) for r, q in zip(ramped, quarter))


def test_no_textureless_views_once_the_density_is_frozen():
    from sds.schedule import plan
    from sds.train import pick_shading

    def shadings(*extra):
        cfg = load_config(None, ["render.albedo_warmup_steps=2", "render.textureless_prob=1", *extra], prompt="a")
        gen = torch.Generator().manual_seed(0)
        return [pick_shading(plan(cfg, step), gen) for step in range(6)]

    assert shadings() == ["albedo"] * 2 + ["textureless"] * 4
    # a grey view trains only the density: with it frozen from step 4 those views would be wasted
    assert shadings("optim.freeze_density_from=4") == ["albedo"] * 2 + ["textureless"] * 2 + ["lambertian"] * 2


def test_a_hash_grid_field_trains(tiny_pixel_model, tmp_path):
    # The texture-stage code must stay out of the way of fields without a separate density grid.
    from sds.train import train_step

    cfg = _cfg(tiny_pixel_model, tmp_path, "field.kind=hashgrid", "field.hash_levels=2", "field.hash_log2_table_size=10",
               "field.hash_max_resolution=16", "field.hidden_dim=8")
    trainer = make_trainer(cfg, torch.device("cpu"))
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
    before = [p.detach().clone() for p in trainer.field.parameters()]
    train_step(trainer, guidance)
    assert any(not torch.equal(b, a) for b, a in zip(before, trainer.field.parameters()))
