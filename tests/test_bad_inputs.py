"""The corpus of bad inputs and faults: every case ends in one line on stderr, a non-zero exit, no traceback,
nothing good overwritten, and a true status in run.json.

Commands run in-process through ``sds.cli.main`` (the same code as the ``sds`` entry point): an uncaught
exception fails the test with its traceback, which is exactly what must never reach a user.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal

import pytest

from sds.cli import main

SMALL = ["steps=8", "checkpoint_every=4", "preview_every=100", "render.resolution=16", "camera.batch_size=2",
         "render.samples_per_ray=16", "field.encoding.resolution=16", "export.resolution=32",
         "export.video=false", "export.preview_resolution=32", "export.texture_size=64"]


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: (exit code, stderr lines). Restores the signal handlers main installs."""
    def run(*args):
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = main([str(a) for a in args])
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sds:")]
        return code, err

    return run


def _assert_one_line(code, err, words, expected_code=None):
    assert code != 0 and (expected_code is None or code == expected_code), (code, err)
    assert len(err) == 1 and words in err[0], err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_pixel_model):
    """A finished tiny run folder (trained and exported), copied by each test that damages it."""
    out = tmp_path_factory.mktemp("finished")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(["generate", "a red cube", "--recipe", "builtin", f"model={tiny_pixel_model}", f"output_dir={out}", *SMALL,
                 "--no-progress"]) == 0
    for s, h in handlers.items():
        signal.signal(s, h)
    (run_dir,) = [p for p in out.glob("*/*") if p.is_dir()]
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target


def _snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------- config and arguments

CONFIG_CASES = [
    (["generate", "seed=1", "steps=1"], "prompt: missing ('seed=1' is a key=value override"),
    (["generate", "a red cube", "stages=[{name: all, until: 1.0, guidance_scale: .inf}]"],
     "stages.guidance_scale: must be a finite"),
    (["generate", "a red cube", "stages=[{name: all, until: 1.0, guidance_scale: .nan}]"],
     "stages.guidance_scale: must be a finite"),
    (["generate", "a red cube", "stages=[{name: all, until: 1.0, guidance_scale: 0}]"], ".guidance_scale: must be in"),
    (["generate", "a red cube", "stages=[{name: a, until: 0.5}]"], "stages: the last stage must end at until: 1.0"),
    (["generate", "a red cube", "guidance.t_anneal_until=.inf"], "guidance.t_anneal_until: must be a finite"),
    (["generate", "a red cube", "optim.lr_grid=-1"], "optim.lr_grid: must be in (0, 10]"),
    (["generate", "a red cube", "optim.lr_grid=0"], "optim.lr_grid: must be in (0, 10]"),
    (["generate", "a red cube", "export.texture_size=0"], "export.texture_size"),
    (["generate", "a red cube", "render.albedo_warmup_steps=150"], "render.albedo_warmup_steps: unknown key"),
    (["generate", "a red cube", "field.encoding.levels=4"], "field.encoding.levels: unknown key"),
    (["generate", "a red cube", "export.preview_resolution=0"], "export.preview_resolution"),
    (["generate", "a red \udcff cube"], "prompt: is not valid UTF-8"),
    (["generate", "a hamburger"], "'a hamburger' names nothing the built-in prior can draw; it knows the shapes "
                                  "sphere, cube, cylinder, cone, torus and the colours red, green"),
    (["generate", "the front view"], "--allow-unknown-words"),  # known words, but no shape or colour to draw
    (["generate", "a red cube", "steps=1e99"], "steps"),
    (["show-config", "seed=-1"], "seed"),
    (["sample", "a red cube", "-n", "0"], "-n: must be in [1, 256]"),
    (["sample", "a red cube", "-n", "-1"], "-n: must be in [1, 256]"),
    (["sample", "a red cube", "--steps", "0"], "--steps: must be in [1, 1000]"),
    (["sample", "a red cube", "--guidance-scale", "nan"], "--guidance-scale: must be a finite"),
    (["sample", "", "-n", "1"], "prompt: empty"),
    (["sample", "a red \udcff cube"], "prompt: is not valid UTF-8"),
]


@pytest.mark.parametrize("args,words", CONFIG_CASES, ids=[" ".join(a)[:60] for a, _ in CONFIG_CASES])
def test_bad_arguments_fail_in_one_line_before_anything_loads(args, words, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = cli(*args)
    _assert_one_line(code, err, words, expected_code=2)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("args", [["a hamburger", "--allow-unknown-words"], ["a red hamburger"], ["A CUBE!"],
                                  ["a hamburger", "model={model}"]],
                         ids=["flag", "partly known", "case and punctuation", "another model"])
def test_prompts_the_prior_can_partly_draw_or_that_are_allowed_reach_the_model(args, cli, tmp_path, monkeypatch,
                                                                              tiny_pixel_model):
    """Only a prompt with nothing the built-in prior knows is refused; the flag lets it through, a partly known
    prompt keeps its warning (tests/guidance), and other models are not checked against the prior's words."""
    import sds.commands
    from sds.errors import RunError

    def stop(cfg):
        raise RunError("reached the model")  # past the check, where minutes of compute would begin

    monkeypatch.setattr(sds.commands, "_prepare", stop)
    monkeypatch.chdir(tmp_path)
    _assert_one_line(*cli("generate", *[a.format(model=tiny_pixel_model) for a in args]), "reached the model",
                     expected_code=1)


def test_sample_out_that_is_a_folder(cli, tmp_path):
    _assert_one_line(*cli("sample", "a red cube", "--out", tmp_path), "is a folder", expected_code=2)


def test_a_non_utf8_config_file(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"steps: 3\nprompt: \xff\xfe\n")
    _assert_one_line(*cli("generate", "a red cube", "--config", path), "is not UTF-8 text", expected_code=2)


@pytest.mark.parametrize("index", ["[1, 2, 3]", "not json {", '{"unet": "x"}'])
def test_a_damaged_model_index(index, cli, tmp_path, tiny_pixel_model):
    model = tmp_path / "model"
    shutil.copytree(tiny_pixel_model, model)
    (model / "model_index.json").write_text(index)
    code, err = cli("generate", "a red cube", f"model={model}", f"output_dir={tmp_path / 'out'}")
    _assert_one_line(code, err, "the model folder is damaged")
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file(cli, tmp_path, tiny_pixel_model):
    (tmp_path / "file").write_text("keep me")
    code, err = cli("generate", "a red cube", f"model={tiny_pixel_model}", f"output_dir={tmp_path / 'file' / 'x'}")
    _assert_one_line(code, err, "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "keep me"


def test_read_only_output_dir(tmp_path, tiny_pixel_model):
    """A real read-only folder. Root ignores permissions, so as root the command runs without the capability to
    (setpriv drops CAP_DAC_OVERRIDE from it), which makes the folder as read-only to it as to any user."""
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): a read-only folder cannot be had")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    out = subprocess.run([*prefix, sys.executable, "-m", "sds.cli", "generate", "a red cube",
                          f"model={tiny_pixel_model}", f"output_dir={locked / 'runs'}"],
                         capture_output=True, text=True, timeout=120)
    err = [line for line in out.stderr.splitlines() if line.startswith("sds:")]
    assert out.returncode == 1 and len(err) == 1 and "not writable" in err[0], out.stderr
    assert "Traceback" not in out.stderr and not any(locked.iterdir())


def test_view_of_a_folder_that_is_not_a_run(cli, tmp_path):
    _assert_one_line(*cli("view", tmp_path, "--no-open"), "export first", expected_code=1)


@pytest.mark.parametrize("args,words", [(["--steps", "-1"], "--steps"), (["--minutes", "0"], "--minutes"),
                                        (["--batch-size", "0"], "--batch-size"),
                                        (["--images-per-caption", "0"], "--images-per-caption"),
                                        (["--resolution", "20"], "--resolution")])
def test_train_prior_arguments(cli, tmp_path, args, words):
    _assert_one_line(*cli("train-prior", tmp_path / "prior", *args), words, expected_code=2)
    assert not (tmp_path / "prior").exists()


# ------------------------------------------------------------------------------- corrupt run folders

def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _incomplete_checkpoint(path):
    import torch

    state = torch.load(path, weights_only=True)
    del state["optimizer"]
    torch.save(state, path)


def _old_format_config(path):
    """A config.yaml as an sds older than 0.3 wrote it: no stages, and keys this one no longer has."""
    import yaml

    data = yaml.safe_load(path.read_text())
    del data["stages"]
    data["guidance"]["guidance_scale"] = 50.0
    data["render"]["albedo_warmup_steps"] = 150
    data["field"] = {"kind": "grid", "grid_resolution": 16, "geometry": "sdf", "sdf_beta": 0.02}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _rewrite_json(path, **fields):
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


CORRUPTIONS = {
    "truncated checkpoint": ("ckpt/last.pt", _truncate, "not a usable sds checkpoint"),
    "garbage checkpoint": ("ckpt/last.pt", lambda p: p.write_bytes(os.urandom(2048)), "not a usable sds checkpoint"),
    "empty checkpoint": ("ckpt/last.pt", lambda p: p.write_bytes(b""), "not a usable sds checkpoint"),
    "incomplete checkpoint": ("ckpt/last.pt", _incomplete_checkpoint, "missing optimizer"),
    "missing checkpoint": ("ckpt/last.pt", lambda p: p.unlink(), "has no checkpoint"),
    "broken config.yaml": ("config.yaml", lambda p: p.write_text("steps: [1,\n"), "not readable YAML"),
    "binary config.yaml": ("config.yaml", lambda p: p.write_bytes(b"\xff\xfe\x00\x81" * 64), "not readable YAML"),
    "config.yaml not a mapping": ("config.yaml", lambda p: p.write_text("- 1\n- 2\n"), "does not hold a config"),
    "config.yaml of another shape": ("config.yaml",
                                     lambda p: p.write_text(p.read_text().replace("kind: grid\n    resolution: 16",
                                                                                  "kind: grid\n    resolution: 24")),
                                     "does not fit the run's config.yaml"),
    "config.yaml with a bad value": ("config.yaml", lambda p: p.write_text(p.read_text().replace("steps: 8",
                                                                                               "steps: -8")),
                                     "not a valid config"),
    "config.yaml of an sds before 0.3": ("config.yaml", _old_format_config,
                                         "written by an sds older than 0.3 (it has no stages)"),
    "corrupt run.json": ("run.json", lambda p: p.write_text("{not json"), "run.json is corrupt"),
    "run.json not an object": ("run.json", lambda p: p.write_text("[]"), "run.json is corrupt"),
    "incomplete run.json": ("run.json", lambda p: p.write_text("{}"), "run.json is incomplete"),
    "run.json of the wrong types": ("run.json", lambda p: _rewrite_json(p, timings_s=[1, 2], seed="0"),
                                    "of the wrong type"),
}


@pytest.mark.parametrize("command", [["export"], ["resume"], ["resume", "steps=12"]], ids=lambda c: " ".join(c))
@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupt_run_folder_fails_in_one_line_and_changes_nothing(case, command, cli, run_copy):
    rel, damage, words = CORRUPTIONS[case]
    damage(run_copy / rel)
    before = _snapshot(run_copy)
    code, err = cli(command[0], run_copy, *command[1:], "--no-progress" if command[0] == "resume" else "--no-video")
    _assert_one_line(code, err, words, expected_code=1)
    assert _snapshot(run_copy) == before


def test_resume_to_fewer_steps_than_done_is_refused(cli, run_copy):
    before = _snapshot(run_copy)
    _assert_one_line(*cli("resume", run_copy, "steps=5", "--no-progress"), "past steps=5")
    assert _snapshot(run_copy) == before


# ------------------------------------------------------------------------------- true statuses

def _status(run_dir):
    info = json.loads((run_dir / "run.json").read_text())
    return info["status"], info["message"]


def test_a_failed_reexport_keeps_the_result_and_the_status(cli, run_copy):
    result = {p.name: p.read_bytes() for p in (run_copy / "result").iterdir()}
    code, err = cli("export", run_copy, "--threshold", "1e5", "--no-video")  # no density reaches the level
    _assert_one_line(code, err, "empty scene")
    assert _status(run_copy)[0] == "ok"
    assert {p.name: p.read_bytes() for p in (run_copy / "result").iterdir()} == result


def test_an_interrupt_during_export_says_interrupted(cli, tiny_pixel_model, tmp_path, monkeypatch):
    import sds.export

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sds.export, "export_result", interrupted)
    code, err = cli("generate", "a red cube", "--recipe", "builtin", f"model={tiny_pixel_model}", f"output_dir={tmp_path}",
                    *SMALL,
                    "--no-progress")
    assert code == 130
    (run_dir,) = list(tmp_path.glob("*/*"))
    status, message = _status(run_dir)
    assert status == "interrupted" and "during export" in message and "sds export" in message
    assert not any((run_dir / "result").iterdir())


@pytest.mark.parametrize("phase", ["training", "export"])
def test_a_full_disk_ends_in_status_failed_with_the_reason(phase, cli, tiny_pixel_model, tmp_path, monkeypatch):
    import sds.export.pipeline
    import sds.train

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "model.glb")

    if phase == "training":
        monkeypatch.setattr(sds.train, "save_checkpoint", no_space)
    else:
        monkeypatch.setattr(sds.export.pipeline, "write_glb", no_space)
    code, err = cli("generate", "a red cube", "--recipe", "builtin", f"model={tiny_pixel_model}", f"output_dir={tmp_path}",
                    *SMALL,
                    "--no-progress")
    _assert_one_line(code, err, "No space left on device", expected_code=1)
    (run_dir,) = list(tmp_path.glob("*/*"))
    status, message = _status(run_dir)
    assert status == "failed" and message.startswith(phase) and "No space left" in message
    assert not any((run_dir / "result").iterdir())


def test_out_of_gpu_memory_ends_in_one_line_with_what_to_lower(cli, tiny_pixel_model, tmp_path, monkeypatch):
    import torch

    import sds.train

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nIf reserved but unallocated...")

    monkeypatch.setattr(sds.train, "train_step", out_of_memory)
    code, err = cli("generate", "a red cube", "--recipe", "builtin", f"model={tiny_pixel_model}",
                    f"output_dir={tmp_path}", *SMALL, "--no-progress")
    _assert_one_line(code, err, "out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB.); lower "
                                "render.resolution", expected_code=1)
    (run_dir,) = list(tmp_path.glob("*/*"))
    status, message = _status(run_dir)
    assert status == "failed" and message.startswith("training: out of GPU memory") and "\n" not in message
    assert "out of GPU memory" in (run_dir / "run.log").read_text()
    # The resume it suggests is one sds resume accepts.
    from sds.commands import RESUME_KEYS
    from sds.config import load_config, with_overrides

    suggested = err[0].split("sds resume RUN_DIR ")[1].split()[0]
    with_overrides(load_config(None, prompt="a red cube"), [suggested], allowed=RESUME_KEYS)


def test_nan_before_the_first_checkpoint_says_none_is_kept(tiny_pixel_model, tmp_path, caplog):
    import torch

    from sds.config import load_config
    from sds.guidance.load import load_guidance
    from sds.run import Run
    from sds.train import make_trainer, train

    cfg = load_config(None, [f"model={tiny_pixel_model}", f"output_dir={tmp_path}", *SMALL], prompt="a red cube")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))

    def poisoned(rgb, labels, p, gen):
        out = guidance(rgb, labels, p, gen)
        out.loss = out.loss * float("nan")
        return out

    run = Run.create(cfg)
    assert train(make_trainer(cfg, torch.device("cpu")), poisoned, run, show_progress=False) == "nan"
    assert "No checkpoint was written before it" in caplog.text and "checkpoint (step 0)" not in caplog.text
    assert not run.checkpoint.exists() and run.info.steps_done == 0


def test_sample_from_an_sdxl_model_is_refused_in_one_line(cli, tmp_path, tiny_sdxl_model):
    _assert_one_line(*cli("sample", "a red cube", "--model", tiny_sdxl_model, "--out", tmp_path / "s.png"),
                     "does not draw from SDXL", expected_code=1)


def test_export_takes_export_overrides_and_refuses_others(cli, run_copy):
    import json as _json

    code, err = cli("export", run_copy, "export.formats=[ply]", "export.resolution=24", "--no-video")
    assert code == 0, err
    assert set(_json.loads((run_copy / "run.json").read_text())["export"]["files"]) == {"ply", "preview"}
    before = _snapshot(run_copy)
    _assert_one_line(*cli("export", run_copy, "steps=5"), "steps: not changeable here", expected_code=2)
    _assert_one_line(*cli("export", run_copy, "export.resolution=4"), "export.resolution", expected_code=2)
    _assert_one_line(*cli("resume", run_copy, "seed=3"), "seed: not changeable here", expected_code=2)
    assert _snapshot(run_copy) == before


def test_export_flags_are_the_overrides_they_stand_for():
    from sds.cli import build_parser, export_flag_overrides

    args = build_parser().parse_args(["export", "RUN", "--format", "glb,obj", "--resolution", "96", "--faces", "0",
                                      "--no-video"])
    assert export_flag_overrides(args) == ["export.formats=[glb,obj]", "export.resolution=96", "export.max_faces=0",
                                           "export.video=false"]


def test_main_works_outside_the_main_thread(capsys):
    """A batch worker may call the CLI from a thread, where Python cannot install signal handlers."""
    import threading

    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(["recipes"])))
    worker.start()
    worker.join(timeout=60)
    assert codes == [0] and "builtin" in capsys.readouterr().out
