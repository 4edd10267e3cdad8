"""sds batch: batch files and their one-line errors, the score on a known denoiser, best-of-N marking, the gallery
(fast); then the real command on Ray (slow): an embedded batch and a second invocation, a killed worker whose run
resumes, Ctrl-C and a rerun, and a local cluster joined with --address."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import sds
from sds.batch.cluster import local_cpus
from sds.batch.gallery import write_gallery
from sds.batch.plan import plan_runs, run_group
from sds.batch.results import RunResult, is_finished, mark_best, read_results, write_results
from sds.batch.score import denoising_gain, score_renders
from sds.batch.spec import BatchRow, read_spec, row_seeds
from sds.config import ConfigError
from sds.run import Run

REPO = Path(sds.__file__).resolve().parent.parent
SMALL = ["checkpoint_every=4", "preview_every=1000", "render.resolution=16", "camera.batch_size=2",
         "render.samples_per_ray=16", "field.encoding.resolution=16",
         "export.resolution=32", "export.video=false", "export.preview_resolution=32", "export.texture_size=64"]
"""Fast settings (tests/test_resume.py's); steps are given per test."""


# ------------------------------------------------------------------------------------------ batch files


def test_prompts_file_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red cube\n\n  # a comment\n  a blue sphere  \n")
    spec = read_spec(path)
    assert [r.prompt for r in spec.rows] == ["a red cube", "a blue sphere"]
    assert spec.rows[1].where == "prompts.txt:4" and spec.overrides == () and spec.recipe is None


def test_batch_file_rows_seeds_and_overrides(tmp_path):
    path = tmp_path / "batch.yaml"
    path.write_text("recipe: builtin\noverrides: {steps: 8, export.formats: [glb, obj], export.video: false}\n"
                    "prompts:\n  - a red cube\n  - prompt: a blue sphere\n    seeds: [3, 7]\n"
                    "    overrides: [render.resolution=48]\n  - {prompt: a green cone, seeds: 2}\n")
    spec = read_spec(path)
    assert spec.recipe == "builtin"
    assert spec.overrides == ("steps=8", "export.formats=[glb, obj]", "export.video=false")
    assert [(r.prompt, r.seeds, r.overrides) for r in spec.rows] == [
        ("a red cube", None, ()), ("a blue sphere", (3, 7), ("render.resolution=48",)), ("a green cone", 2, ())]


def test_row_seeds_count_from_the_base_seed():
    assert row_seeds(BatchRow("x"), None, base_seed=0) == (0,)
    assert row_seeds(BatchRow("x"), 3, base_seed=10) == (10, 11, 12)
    assert row_seeds(BatchRow("x", seeds=2), 5, base_seed=0) == (0, 1)  # the row's count wins
    assert row_seeds(BatchRow("x", seeds=(4, 1)), 5, base_seed=0) == (4, 1)


@pytest.mark.parametrize("name,text,words", [
    ("prompts.txt", "# only a comment\n\n", "no prompts"),
    ("prompts.txt", b"\xff\xfe bad", "not UTF-8"),
    ("batch.yaml", "prompts: [a, [b\n", "not valid YAML (line"),
    ("batch.yaml", "- a red cube\n", "a mapping with 'prompts'"),
    ("batch.yaml", "prompts: a red cube\n", "'prompts' must be a list"),
    ("batch.yaml", "prompt: [a red cube]\n", "unknown key 'prompt' (did you mean 'prompts'?)"),
    ("batch.yaml", "prompts: [{prompt: a, seed: 1}]\n", "prompts[0]: unknown key 'seed' (did you mean 'seeds'?)"),
    ("batch.yaml", "prompts: [{seeds: 2}]\n", "prompts[0]: 'prompt' is missing"),
    ("batch.yaml", "prompts: [a, {prompt: b, seeds: [1, 1]}]\n", "prompts[1]: seeds: [1, 1] repeats a seed"),
    ("batch.yaml", "prompts: [{prompt: b, seeds: [-1]}]\n", "a list of seeds >= 0"),
    ("batch.yaml", "prompts: [{prompt: b, seeds: 0}]\n", "a count must be in [1, 1000]"),
    ("batch.yaml", "prompts: [{prompt: b, seeds: true}]\n", "give a count (3)"),
    ("batch.yaml", "prompts: [{prompt: b, overrides: steps}]\n", "prompts[0]: overrides: give a list of key=value"),
    ("batch.yaml", "prompts: []\n", "no prompts"),
    ("batch.yaml", "recipe: 3\nprompts: [a]\n", "'recipe' must be a recipe name"),
])
def test_bad_batch_files_give_one_line_errors(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as e:
        read_spec(path)
    assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="file not found"):
        read_spec(tmp_path / "missing.txt")


def test_plan_gives_each_run_the_folder_run_create_makes_and_bad_rows_their_error(tmp_path):
    path = tmp_path / "batch.yaml"
    path.write_text("prompts:\n  - a red cube\n  - {prompt: a blue sphere, overrides: [stesp=3]}\n"
                    "  - {prompt: a green cone, overrides: [prompt=x]}\n  - a red cube\n")
    runs = plan_runs(read_spec(path), None, ["steps=4"], "builtin", 2, tmp_path / "runs")
    assert [(r.prompt, r.seed, r.cfg is None) for r in runs] == [
        ("a red cube", 0, False), ("a red cube", 1, False), ("a blue sphere", 0, True), ("a blue sphere", 1, True),
        ("a green cone", 0, True), ("a green cone", 1, True)]  # the repeated row is planned once
    assert "prompts[1]: stesp: unknown key" in runs[2].error and "did you mean 'steps'" in runs[2].error
    assert "prompt cannot be overridden" in runs[4].error
    assert runs[0].group != runs[1].group and runs[0].cfg.steps == 4 and runs[1].cfg.seed == 1
    assert Run.create(runs[1].cfg).path.parent == run_group(runs[1].cfg)  # the retry looks where the run was made


@pytest.mark.parametrize("args,words", [
    (["batch", "missing.txt"], "missing.txt: file not found"),
    (["batch", "prompts.txt", "--seeds", "0"], "--seeds: must be >= 1"),
    (["batch", "prompts.txt", "--workers", "0"], "--workers: must be >= 1"),
    (["batch", "prompts.txt", "stesp=3"], "did you mean 'steps'"),  # a shared override: no run could start
    (["batch", "prompts.txt", "prompt=x"], "prompt cannot be overridden"),
    (["batch", "prompts.txt", "--recipe", "nosuch"], "unknown recipe 'nosuch'"),
])
def test_bad_batch_commands_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, args, words):
    from sds.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.txt").write_text("a red cube\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists()


# ------------------------------------------------------------------------------------------ score


def test_denoising_gain_of_a_known_denoiser_is_the_hand_computed_value():
    """eps_uncond = eps + 1 and eps_cond = eps + 0.5 everywhere: the gain is 1 - 0.25 at every timestep."""
    x = torch.rand(2, 3, 4, 4)
    alphas_cumprod = torch.linspace(0.99, 0.01, 10)
    t = torch.tensor([2, 7])
    noise = torch.randn(2, 3, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0))  # [T, draws, B, C, h, w]

    def true_eps(x_t, ts):
        ab = alphas_cumprod[ts].view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * x) / (1 - ab).sqrt()

    shifted = denoising_gain(x, lambda x_t, ts: (true_eps(x_t, ts) + 1, true_eps(x_t, ts) + 0.5), alphas_cumprod, t,
                             noise)
    assert float(shifted) == pytest.approx(0.75, abs=1e-5)
    # A perfect conditional denoiser against one that predicts zero: the gain is the mean square of the noise.
    perfect = denoising_gain(x, lambda x_t, ts: (torch.zeros_like(x_t), true_eps(x_t, ts)), alphas_cumprod, t, noise)
    assert float(perfect) == pytest.approx(float(noise.pow(2).mean()), rel=1e-4)
    # Every draw counts: the gain over three draws is the mean of the three one-draw gains.
    alone = [float(denoising_gain(x, lambda x_t, ts: (torch.zeros_like(x_t), true_eps(x_t, ts)), alphas_cumprod, t,
                                  noise[:, d:d + 1])) for d in range(3)]
    assert float(perfect) == pytest.approx(sum(alone) / 3, rel=1e-5) and len(set(alone)) == 3


def test_a_score_of_another_version_is_no_score(tmp_path):
    from sds.batch.results import SCORE_FILE, SCORE_VERSION, read_score

    (tmp_path / SCORE_FILE).write_text(json.dumps({"score": 0.5, "version": SCORE_VERSION}))
    assert read_score(tmp_path) == 0.5
    (tmp_path / SCORE_FILE).write_text(json.dumps({"score": 0.5}))  # written by an sds before the version
    assert read_score(tmp_path) is None


def test_the_score_renders_the_exported_mesh_and_the_nerf_only_without_one(tmp_path):
    import types

    from sds.batch.score import _result_render_fn

    trainer = types.SimpleNamespace(renderer=object())
    placed = {"center": [0, 0, 0], "scale": 1.0}  # run.json's export record
    assert _result_render_fn(tmp_path, placed, trainer)[0] == "nerf"  # no model.glb written (export.formats without glb)
    import numpy as np
    import trimesh
    from PIL import Image

    (tmp_path / "result").mkdir()
    box = trimesh.creation.box((0.5, 0.5, 0.5))
    box.visual = trimesh.visual.TextureVisuals(uv=np.zeros((len(box.vertices), 2)),
                                               image=Image.new("RGB", (4, 4), (200, 30, 30)))
    box.export(tmp_path / "result" / "model.glb")
    source, render = _result_render_fn(tmp_path, placed, trainer)
    from sds.cameras import turntable_cameras

    out = render(turntable_cameras(1, 20.0, 2.5, 40.0), 32, 32)
    assert source == "mesh" and out["opacity"][0, 16, 16] > 0.99 and out["opacity"][0, 0, 0] < 0.01


def test_score_of_renders_is_deterministic_and_uses_the_prompt(tiny_pixel_model):
    from sds.config import load_config
    from sds.guidance.load import load_guidance

    cfg = load_config(None, [f"model={tiny_pixel_model}"], prompt="a red cube")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
    rgb = torch.rand(3, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    labels = ["front", "side", "back"]
    first, second = score_renders(rgb, labels, guidance), score_renders(rgb, labels, guidance)
    assert first == second and first != 0.0
    guidance.embeddings.by_view = {k: guidance.embeddings.uncond for k in guidance.embeddings.by_view}
    assert score_renders(rgb, labels, guidance) == pytest.approx(0.0, abs=1e-9)  # a prompt no different from the empty one gains nothing


def test_score_views_cover_every_azimuth_at_each_stratum_of_the_training_elevations():
    from sds.batch.score import SCORE_AZIMUTHS, SCORE_ELEVATIONS, score_cameras

    cams = score_cameras(1.0, (-10.0, 60.0))
    assert len(cams.azimuth_deg) == SCORE_AZIMUTHS * SCORE_ELEVATIONS == 32
    assert sorted(set(cams.elevation_deg.tolist())) == [-1.25, 16.25, 33.75, 51.25]  # midpoints of 4 equal strata
    for e in cams.elevation_deg.unique():
        assert sorted(cams.azimuth_deg[cams.elevation_deg == e].tolist()) == [45.0 * k for k in range(8)]
    eye = cams.c2w[:, :3, 3]  # the camera sits at the elevation it says, 2.5 bounds out
    assert torch.allclose(torch.rad2deg(torch.asin(eye[:, 1] / eye.norm(dim=1))), cams.elevation_deg, atol=1e-4)
    assert torch.allclose(eye.norm(dim=1), torch.tensor(2.5))


def test_the_score_of_many_views_is_the_mean_over_views(monkeypatch, tiny_pixel_model):
    import sds.batch.score as score
    from sds.config import load_config
    from sds.guidance.load import load_guidance

    cfg = load_config(None, [f"model={tiny_pixel_model}"], prompt="a red cube")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
    rgb = torch.rand(10, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    first = score.score_renders(rgb, ["front"] * 10, guidance)
    assert first == score.score_renders(rgb, ["front"] * 10, guidance) and first != 0.0
    # Taken 8 views at a time: each chunk's mean weighs by its number of views ((8 * 8 + 2 * 2) / 10).
    monkeypatch.setattr(score, "denoising_gain", lambda x, *args: torch.tensor(float(x.shape[0])))
    assert score.score_renders(rgb, ["front"] * 10, guidance) == pytest.approx(6.8)


# ------------------------------------------------------------------------------------------ results, gallery


def test_best_is_the_highest_scoring_ok_run_of_each_prompt():
    rows = [RunResult("a", 0, "ok", 0.1), RunResult("a", 1, "ok", 0.3), RunResult("a", 2, "nan"),
            RunResult("b", 0, "failed"), RunResult("b", 1, "ok", -0.2), RunResult("b", 2, "cut_by_box", 5.0)]
    assert [r.best for r in mark_best(rows)] == [False, True, False, False, True, False]


def test_a_run_cut_by_the_scene_box_is_finished_and_not_run_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for status, finished in [("cut_by_box", True), ("nan", True), ("interrupted", False), ("running", False)]:
        (run / "run.json").write_text(json.dumps({"status": status}))
        assert is_finished(run) is finished, status


def _fake_run(folder: Path, name: str, color: tuple[int, int, int]) -> Path:
    from PIL import Image

    run = folder / "runs" / name / "20260101-000000"
    (run / "result").mkdir(parents=True)
    Image.new("RGB", (64, 64), color).save(run / "result" / "preview.png")
    (run / "result" / "model.glb").write_bytes(b"glTF")
    return run


def test_gallery_is_one_self_contained_file(tmp_path):
    folder = tmp_path / "batch" / "20260101-000000"
    folder.mkdir(parents=True)
    rows = [RunResult("a red cube", s, "ok", 0.1 * s, run_dir=f"../runs/cube-{s}/20260101-000000") for s in range(3)]
    for s in range(3):
        _fake_run(tmp_path / "batch", f"cube-{s}", (200, 20 * s, 0))
    rows.append(RunResult("a <b> sphere", 0, "failed", message="stesp: unknown key"))
    rows = mark_best(rows)
    write_results(folder, rows, {"name": "t"})
    assert read_results(folder) == rows
    page = write_gallery(folder, rows).read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 3  # every preview inline; the failed run has none
    assert "a &lt;b&gt; sphere" in page and "stesp: unknown key" in page and "<b>best</b>" in page
    links = [part.split('"')[0] for part in page.split('href="')[1:]]
    glbs = [link for link in links if link.endswith("model.glb")]
    assert len(glbs) == 3 and all((folder / link).is_file() for link in glbs)  # relative links that resolve
    with open(folder / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["best"] for r in table] == ["False", "False", "True", "False"] and table[3]["score"] == ""


# ------------------------------------------------------------------------------------------ the command on Ray


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token", **extra}


def _batch_args(spec: Path, model: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sds.cli", "batch", str(spec), "--recipe", "builtin", "--no-progress",
            f"model={model}", *SMALL, *args]


def _batch(cwd: Path, spec: Path, model: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(_batch_args(spec, model, *args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=_env())


def _latest_results(cwd: Path, name: str) -> tuple[Path, list[dict]]:
    folder = max(p for p in (cwd / "outputs" / f"batch-{name}").glob("2*") if p.is_dir())
    return folder, json.loads((folder / "batch.json").read_text())["runs"]


def _metric_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "progress" / "metrics.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


@pytest.mark.slow
def test_embedded_batch_runs_every_seed_then_a_second_invocation_computes_nothing(tiny_pixel_model, tmp_path):
    spec = tmp_path / "batch.yaml"
    spec.write_text("prompts:\n  - a red cube\n  - a blue sphere\n  - {prompt: a green cone, seeds: [0], "
                    "overrides: [stesp=3]}\n")
    out = _batch(tmp_path, spec, tiny_pixel_model, "--seeds", "2", "--workers", "2", "steps=8")
    assert out.returncode == 1, out.stderr[-3000:]  # 1: the bad row failed; the others ran
    folder, runs = _latest_results(tmp_path, "batch")
    assert [(r["prompt"], r["seed"], r["status"]) for r in runs] == [
        ("a red cube", 0, "ok"), ("a red cube", 1, "ok"), ("a blue sphere", 0, "ok"), ("a blue sphere", 1, "ok"),
        ("a green cone", 0, "failed")]
    assert "stesp: unknown key" in runs[4]["message"] and "did you mean 'steps'" in runs[4]["message"]
    ok = runs[:4]
    assert all(isinstance(r["score"], float) and r["attempts"] == 1 and not r["done_earlier"] for r in ok)
    assert [r["best"] for r in runs].count(True) == 2  # one per prompt that has ok runs
    for r in ok:
        run_dir = (folder / r["run_dir"]).resolve()
        assert _metric_steps(run_dir) == list(range(1, 9)) and (run_dir / "result" / "model.glb").is_file()
        assert json.loads((run_dir / "score.json").read_text())["source"] == "mesh"  # the result the user gets
    header = json.loads((folder / "batch.json").read_text())
    assert header["workers"] == 2 and header["cpus_per_task"] == max(1, local_cpus() // 2)
    assert (folder / "gallery.html").is_file() and (folder / "results.csv").is_file()
    assert "'a red cube' seed 0" in out.stdout and "score" in out.stdout

    started = time.perf_counter()
    again = _batch(tmp_path, spec, tiny_pixel_model, "--seeds", "2", "--workers", "2", "steps=8")
    assert again.returncode == 1, again.stderr[-3000:]
    assert "0 run(s) to compute" in again.stderr and time.perf_counter() - started < 60
    _, rerun = _latest_results(tmp_path, "batch")
    assert [r["done_earlier"] for r in rerun] == [True] * 4 + [False]
    assert [r["score"] for r in rerun[:4]] == [r["score"] for r in ok] and [r["seconds"] for r in rerun[:4]] == [0] * 4
    assert len(list((tmp_path / "outputs" / "batch-batch" / "runs").glob("*/2*"))) == 4  # no new run folder


def _wait_for_checkpoint(runs_dir: Path, process: subprocess.Popen, timeout: float = 120) -> Path:
    """The group folder of the first run that has written a checkpoint and is still training."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ckpt in runs_dir.glob("*/*/ckpt/last.pt"):
            with contextlib.suppress(OSError, ValueError):
                if json.loads((ckpt.parent.parent / "run.json").read_text())["status"] == "running":
                    return ckpt.parent.parent.parent
        assert process.poll() is None, "the batch ended before any run checkpointed"
        time.sleep(0.05)
    raise AssertionError("no run checkpointed in time")


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_its_run_resumes_from_the_checkpoint(tiny_pixel_model, tmp_path):
    spec = tmp_path / "prompts.txt"
    spec.write_text("a red cube\n")
    process = subprocess.Popen(_batch_args(spec, tiny_pixel_model, "--seeds", "2", "--workers", "2", "steps=200"),
                               cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        group = _wait_for_checkpoint(tmp_path / "outputs" / "batch-prompts" / "runs", process)
        os.kill(json.loads((group / "task.json").read_text())["pid"], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    folder, runs = _latest_results(tmp_path, "prompts")
    assert [r["status"] for r in runs] == ["ok", "ok"]
    (killed,) = [r for r in runs if (folder / r["run_dir"]).resolve().parent == group]
    assert killed["attempts"] == 2 and killed["resumed_from_step"] >= 4 and killed["resumed_from_step"] % 4 == 0
    (run_dir,) = [p for p in group.iterdir() if p.is_dir()]  # the retry continued the same folder
    assert _metric_steps(run_dir) == list(range(1, 201))  # every step once: continued, not restarted
    assert f"at step {killed['resumed_from_step']} of 200" in (group / "batch.log").read_text()
    assert "2 attempts, resumed at step" in stdout


@pytest.mark.slow
def test_ctrl_c_stops_the_batch_cleanly_and_the_same_command_continues_it(tiny_pixel_model, tmp_path):
    spec = tmp_path / "prompts.txt"
    spec.write_text("a red cube\n")
    args = ["--seeds", "2", "--workers", "2", "steps=200"]
    process = subprocess.Popen(_batch_args(spec, tiny_pixel_model, *args), cwd=tmp_path, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint(tmp_path / "outputs" / "batch-prompts" / "runs", process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-3000:]
    assert "continue with: sds batch" in stderr and "Traceback" not in stderr
    _, runs = _latest_results(tmp_path, "prompts")
    assert {r["status"] for r in runs} <= {"interrupted", "ok"} and "interrupted" in {r["status"] for r in runs}

    out = _batch(tmp_path, spec, tiny_pixel_model, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    _, rerun = _latest_results(tmp_path, "prompts")
    assert [r["status"] for r in rerun] == ["ok", "ok"]
    assert any((r["resumed_from_step"] or 0) > 0 for r in rerun)  # continued from where Ctrl-C left it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _local_cluster(cwd: Path):
    """A one-node Ray cluster on loopback (``ray start --head --block``), stopped by signalling that process only
    (``ray stop`` would stop every Ray on the machine)."""
    port = _free_port()
    ray = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray), "start", "--head", "--block", "--port", str(port), "--node-ip-address",
                             "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                            cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        # ray start leaves this cluster's address as the machine's "current" one; a later ray.init() would try it
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()


@pytest.mark.slow
def test_a_batch_joins_a_local_ray_cluster_with_address(tiny_pixel_model, tmp_path):
    spec = tmp_path / "prompts.txt"
    spec.write_text("a red cube\na blue sphere\n")
    with _local_cluster(tmp_path) as address:
        out = _batch(tmp_path, spec, tiny_pixel_model, "--address", address, "steps=8")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "shared storage" in out.stderr
    folder, runs = _latest_results(tmp_path, "prompts")
    assert [r["status"] for r in runs] == ["ok", "ok"] and all(r["best"] for r in runs)
    assert json.loads((folder / "batch.json").read_text())["address"] == address
