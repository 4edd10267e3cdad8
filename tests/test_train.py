"""The training loop's progress as a running job shows it: the cadences, metrics.csv and run.json's progress
written while it runs (and agreeing with the checkpoint after a resume), the progress line in run.log, progress
images for short runs, and TensorBoard event files when the package is there."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import torch

from sds.config import load_config
from sds.guidance.load import load_guidance
from sds.progress import duration, preview_every, report_every
from sds.run import Run
from sds.train import load_checkpoint, make_trainer, train

SMALL = ["steps=12", "checkpoint_every=100", "preview_every=100", "render.resolution=16", "camera.batch_size=2",
         "render.samples_per_ray=16", "field.encoding.resolution=16"]
"""12 steps with no checkpoint before the end: whatever the files show mid-run comes from the progress cadence."""


@pytest.fixture(scope="module")
def setup(tiny_pixel_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    cfg = load_config(None, [f"model={tiny_pixel_model}", f"output_dir={out}", *SMALL], prompt="a red cube")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
    return cfg, guidance


def test_cadences_are_a_tenth_of_the_run_at_least_one_step():
    assert [report_every(n) for n in (1, 5, 10, 12, 450, 1001)] == [1, 1, 1, 2, 45, 101]
    # Progress images: preview_every, or closer for short runs so that every run gets about ten.
    assert preview_every(100, 450) == 45 and preview_every(100, 12) == 2 and preview_every(20, 450) == 20
    assert [duration(s) for s in (4.2, 138, 7300)] == ["4s", "2m18s", "2h01m"]


def test_metrics_progress_and_images_are_written_while_the_run_goes(setup):
    """Read from inside the run (the guidance call of step 9): metrics.csv and run.json already hold steps 1-8,
    though no checkpoint has been written; progress images exist although preview_every (100) is past the run."""
    cfg, guidance = setup
    run = Run.create(cfg)
    seen = {}

    def watching(rgb, labels, p, gen):
        if p.step == 8:  # steps 1..8 are done
            seen["metrics"] = run.metrics.read_text().splitlines()
            seen["run.json"] = json.loads((run.path / "run.json").read_text())
            seen["images"] = sorted(p.name for p in (run.path / "progress").glob("step_*.png"))
            seen["checkpoint"] = run.checkpoint.exists()
        return guidance(rgb, labels, p, gen)

    assert train(make_trainer(cfg, torch.device("cpu")), watching, run, show_progress=False) == "ok"
    assert not seen["checkpoint"]
    assert [int(r.split(",")[0]) for r in seen["metrics"][1:]] == list(range(1, 9))
    progress = seen["run.json"]["progress"]
    assert progress["step"] == 8 and progress["total"] == 12 and progress["steps_per_s"] > 0
    assert progress["eta_s"] >= 0 and 0 <= progress["opacity"] <= 1 and seen["run.json"]["status"] == "running"
    assert seen["images"] == [f"step_{s:06d}.png" for s in (2, 4, 6, 8)]
    assert len(list((run.path / "progress").glob("step_*.png"))) == 6  # every 2 steps of 12
    assert run.info.progress["step"] == 12 and run.info.steps_done == 12


def test_rows_flushed_past_the_checkpoint_are_dropped_on_resume(setup):
    """Killed during step 7 with the checkpoint at step 4 and metrics.csv flushed to step 6: the resumed run redoes
    steps 5-6 once, and ends with the same metrics.csv as an uninterrupted run."""
    cfg, guidance = setup
    from dataclasses import replace

    cfg = replace(cfg, checkpoint_every=4)
    straight = Run.create(cfg)
    assert train(make_trainer(cfg, torch.device("cpu")), guidance, straight, show_progress=False) == "ok"

    def killed(rgb, labels, p, gen):
        if p.step == 6:
            raise KeyboardInterrupt  # as a second Ctrl-C: mid-step, nothing more is saved
        return guidance(rgb, labels, p, gen)

    run = Run.create(cfg)
    assert train(make_trainer(cfg, torch.device("cpu")), killed, run, show_progress=False) == "interrupted"
    assert [int(r.split(",")[0]) for r in run.metrics.read_text().splitlines()[1:]] == list(range(1, 7))
    assert run.info.steps_done == 4
    resumed = make_trainer(cfg, torch.device("cpu"))
    load_checkpoint(resumed, run)
    assert train(resumed, guidance, run, show_progress=False) == "ok"
    assert run.metrics.read_text() == straight.metrics.read_text()


def test_with_a_bar_the_progress_lines_go_to_run_log_only(setup, monkeypatch, caplog, capsys):
    """On a terminal the console shows the bar, and run.log still gets a plain line every tenth of the run."""
    from sds.run_log import capture

    cfg, guidance = setup
    run = Run.create(cfg)
    monkeypatch.setattr("sds.train.on_terminal", lambda: True)
    caplog.set_level(logging.INFO)
    with capture() as run_log:
        run_log.open(run.path / "run.log")
        assert train(make_trainer(cfg, torch.device("cpu")), guidance, run, show_progress=True) == "ok"
    lines = (run.path / "run.log").read_text().splitlines()
    steps = [line.split(" INFO ")[1].split("/")[0] for line in lines if " INFO step " in line]
    assert steps == [f"step {s:>2}" for s in range(2, 13, 2)] and "\r" not in "".join(lines)
    assert "steps/s" in lines[-1] and "ETA" in lines[-1]
    assert "step 12/12" not in caplog.text  # not a console record: the bar said it there
    assert "sds" in capsys.readouterr().err  # the bar


def test_tensorboard_event_files_hold_the_scalars_and_progress_images(setup):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, guidance = setup
    run = Run.create(cfg)
    assert train(make_trainer(cfg, torch.device("cpu")), guidance, run, show_progress=False) == "ok"
    events = EventAccumulator(str(run.path / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert set(events.Tags()["scalars"]) == {"loss", "sds_grad", "opacity", "growth_held", "reach"}
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 13))
    csv_loss = [float(r.split(",")[1]) for r in run.metrics.read_text().splitlines()[1:]]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(csv_loss, rel=1e-5)
    assert [e.step for e in events.Images("progress")] == [2, 4, 6, 8, 10, 12]


def test_without_tensorboard_there_are_no_event_files_and_one_debug_line(setup, monkeypatch, caplog):
    cfg, guidance = setup
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if it were not installed
    caplog.set_level(logging.DEBUG, logger="sds")
    run = Run.create(cfg)
    assert train(make_trainer(cfg, torch.device("cpu")), guidance, run, show_progress=False) == "ok"
    assert not (run.path / "tb").exists()
    assert [r.levelname for r in caplog.records if "TensorBoard" in r.getMessage()] == ["DEBUG"]
