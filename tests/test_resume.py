"""Resume is bit-exact after any interruption: SIGINT (Ctrl-C), SIGTERM and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sds.config import load_config
from sds.guidance.load import load_guidance
from sds.run import Run
from sds.train import load_checkpoint, make_trainer, read_checkpoint, train

SMALL = ["steps=12", "checkpoint_every=4", "preview_every=100", "render.resolution=16", "camera.batch_size=2",
         "render.samples_per_ray=16", "field.encoding.resolution=16", "export.resolution=32",
         "export.video=false", "export.preview_resolution=32", "export.texture_size=64"]


def _tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def reference(tiny_pixel_model, tmp_path_factory):
    """An uninterrupted run: its final checkpoint and metrics."""
    cfg = load_config(None, [f"model={tiny_pixel_model}", f"output_dir={tmp_path_factory.mktemp('ref')}", *SMALL],
                      prompt="a red cube")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
    run = Run.create(cfg)
    assert train(make_trainer(cfg, torch.device("cpu")), guidance, run, show_progress=False) == "ok"
    return cfg, guidance, read_checkpoint(run.checkpoint), run.metrics.read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_step_checkpoints_the_step_boundary_and_resume_is_exact(signum, reference):
    """The signal arrives inside step 5 (after the render, during guidance): the step finishes, the checkpoint is
    the state after it, and the resumed run ends bit for bit where the uninterrupted one did."""
    cfg, guidance, expected, expected_metrics = reference

    def signalled(rgb, labels, p, gen):
        if p.step == 5:
            os.kill(os.getpid(), signum)
        return guidance(rgb, labels, p, gen)

    run = Run.create(cfg)
    first = make_trainer(cfg, torch.device("cpu"))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # SIG_IGN in a background job
    assert train(first, signalled, run, show_progress=False) == "interrupted"
    assert read_checkpoint(run.checkpoint)["step"] == 6 and run.info.steps_done == 6
    assert "sds resume" in run.info.message
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored after training
    resumed = make_trainer(cfg, torch.device("cpu"))
    load_checkpoint(resumed, run)
    assert train(resumed, guidance, run, show_progress=False) == "ok"
    assert _tensors_equal(read_checkpoint(run.checkpoint), expected)
    assert run.metrics.read_text() == expected_metrics


def test_a_second_signal_stops_at_once_and_keeps_the_last_periodic_checkpoint(reference):
    cfg, guidance, expected, _ = reference

    def signalled_twice(rgb, labels, p, gen):
        if p.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second raises KeyboardInterrupt mid-step
        return guidance(rgb, labels, p, gen)

    run = Run.create(cfg)
    assert train(make_trainer(cfg, torch.device("cpu")), signalled_twice, run, show_progress=False) == "interrupted"
    assert read_checkpoint(run.checkpoint)["step"] == 4 and run.info.steps_done == 4  # never a mid-step state
    resumed = make_trainer(cfg, torch.device("cpu"))
    load_checkpoint(resumed, run)
    assert train(resumed, guidance, run, show_progress=False) == "ok"
    assert _tensors_equal(read_checkpoint(run.checkpoint), expected)


def test_a_stop_requested_before_training_is_not_lost(reference):
    """A signal during start-up whose KeyboardInterrupt Python dropped (raised inside a finalizer) leaves STOP set:
    training stops at its first step boundary instead of running on to "ok"."""
    from sds.interrupts import STOP

    cfg, guidance, _, _ = reference
    run = Run.create(cfg)
    STOP.set()
    assert train(make_trainer(cfg, torch.device("cpu")), guidance, run, show_progress=False) == "interrupted"
    assert run.info.steps_done == 0 and not STOP.is_set()  # acted on, then cleared


def _sds(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "sds.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


CLI_ARGS = [*(s for s in SMALL if not s.startswith("preview_every")), "preview_every=1", "--recipe", "builtin"]  # a preview each step
# slows the run so that a kill lands mid-run


@pytest.fixture(scope="module")
def cli_reference(tiny_pixel_model, tmp_path_factory):
    """An uninterrupted CLI run (a process of its own: one thread, as the killed runs)."""
    out = tmp_path_factory.mktemp("cli_ref")
    proc = _sds("generate", "a red cube", f"model={tiny_pixel_model}", f"output_dir={out}", *CLI_ARGS, "--no-progress")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    (run_dir,) = list(out.glob("*/*"))
    return read_checkpoint(run_dir / "ckpt" / "last.pt"), (run_dir / "progress" / "metrics.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_the_cli_resumes_exactly_after_a_kill(signum, tiny_pixel_model, tmp_path, cli_reference):
    """A real process killed once its first checkpoint exists, then `sds resume`: the same final state."""
    import json

    expected, expected_metrics = cli_reference
    proc = _sds("generate", "a red cube", f"model={tiny_pixel_model}", f"output_dir={tmp_path}", *CLI_ARGS,
                "--no-progress")
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/*/ckpt/last.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signum)
    proc.wait(timeout=120)
    (run_dir,) = list(tmp_path.glob("*/*"))
    info = json.loads((run_dir / "run.json").read_text())
    if signum != signal.SIGKILL:
        assert proc.returncode == 130 and info["status"] == "interrupted", (proc.returncode, info["status"])
    assert info["steps_done"] < 12  # it was stopped mid-run
    resumed = _sds("resume", run_dir, "--no-progress")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert _tensors_equal(read_checkpoint(run_dir / "ckpt" / "last.pt"), expected)
    assert (run_dir / "progress" / "metrics.csv").read_text() == expected_metrics
