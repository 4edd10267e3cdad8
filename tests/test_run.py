from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from sds.config import load_config
from sds.run import DiskFullError, Run, slugify, write_atomic


@pytest.mark.parametrize("prompt,slug", [("a red cube", "a-red-cube"), ("../../etc/passwd", "etc-passwd"),
                                         ("🦊 ü ß", "u"), ("///", "prompt"), ("x" * 200, "x" * 40)])
def test_slug_is_short_ascii_and_cannot_escape(prompt, slug):
    assert slugify(prompt) == slug


def test_run_folder_layout_and_run_json(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}"], prompt="../../a red cube")
    run = Run.create(cfg)
    assert tmp_path in run.path.parents and run.path.parent.name.startswith("a-red-cube-")
    assert {p.name for p in run.path.iterdir()} == {"config.yaml", "run.json", "ckpt", "progress", "result"}
    info = json.loads((run.path / "run.json").read_text())
    assert info["prompt"] == "../../a red cube" and info["status"] == "running" and info["model"] == "builtin"
    second = Run.create(cfg)
    assert second.path != run.path  # same second, same config: a new folder, nothing overwritten


def test_full_disk_raises_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_text("old")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("builtins.open", no_space)
    with pytest.raises(DiskFullError, match="disk full while writing"):
        write_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and not list(tmp_path.glob("*.tmp"))


def _create_when_released(output_dir, barrier, results):
    cfg = load_config(None, [f"output_dir={output_dir}"], prompt="a red cube")
    barrier.wait()
    try:
        results.put(str(Run.create(cfg).path))
    except Exception as e:  # reported to the test, which fails on it
        results.put(f"ERROR {type(e).__name__}: {e}")


def test_runs_started_in_the_same_instant_each_get_their_own_folder(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    n = 16
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_create_when_released, args=(tmp_path, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    paths = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [p for p in paths if p.startswith("ERROR")], paths
    assert len(set(paths)) == n  # no two share a folder, and none was overwritten
    assert all(json.loads((tmp_path / p / "run.json").read_text())["status"] == "running" for p in paths)


def test_run_json_says_which_sds_ran_how_and_when(tmp_path, monkeypatch):
    import datetime
    import os

    import sds
    from sds import run as run_module
    from sds.run import hardware

    monkeypatch.setattr(run_module, "COMMAND_LINE", ["sds", "generate", "a red cube"])
    cfg = load_config(None, [f"output_dir={tmp_path}"], prompt="a red cube")
    run = Run.create(cfg, started_at="2026-01-02T03:04:05+00:00")
    info = json.loads((run.path / "run.json").read_text())
    assert info["sds_version"] == sds.__version__ == info["versions"]["sds"]
    assert info["command"] == ["sds", "generate", "a red cube"] and info["started_at"] == "2026-01-02T03:04:05+00:00"
    assert info["ended_at"] == "" and info["later_commands"] == [] and info["progress"] == {}
    checkout = Path(sds.__file__).resolve().parents[1]
    if (checkout / ".git").exists():  # a checkout: the commit, "-dirty" if sds/ has uncommitted changes
        assert len(info["git_commit"].split("-")[0]) == 40
    else:
        assert info["git_commit"] is None
    now = datetime.datetime.fromisoformat(Run.create(cfg).info.started_at)
    assert now.tzinfo is not None and abs(now - datetime.datetime.now().astimezone()) < datetime.timedelta(minutes=1)
    machine = hardware("A GPU")
    assert machine["cpu"] and machine["cpu_cores"] == os.cpu_count() and machine["ram_gib"] > 0
    assert machine["gpu"] == "A GPU" and hardware()["gpu"] is None


def test_an_older_run_json_opens_without_inventing_its_times(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}"], prompt="a red cube")
    run = Run.create(cfg)
    record = run.path / "run.json"
    old = {k: v for k, v in json.loads(record.read_text()).items()
           if k not in ("started_at", "ended_at", "command", "git_commit", "sds_version", "later_commands",
                        "hardware", "progress")}
    record.write_text(json.dumps(old))
    info = Run.open(run.path).info
    assert (info.started_at, info.command, info.git_commit, info.later_commands) == ("", [], None, [])


def test_a_timing_is_added_to_or_replaced():
    from sds.run import RunInfo

    run = Run.__new__(Run)
    run.info = RunInfo("a red cube", 0, "builtin", None)
    run.add_timing("train", 2.0)
    run.add_timing("train", 3.0)  # a resumed run trains on
    run.set_timing("export", 5.0)
    run.set_timing("export", 1.0)  # a re-export's time is its own
    assert run.info.timings_s == {"train": 5.0, "export": 1.0}


def test_run_log_holds_lines_until_the_folder_exists_then_appends(tmp_path):
    import logging
    import warnings

    from sds.run_log import capture, to_run_log

    log = logging.getLogger("sds.test")
    path = tmp_path / "run.log"
    with capture() as run_log:
        log.info("loading the model")  # before the run folder exists
        run_log.open(path)
        log.warning("50%|#####\r 60%")  # a carriage return never reaches the file
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
        to_run_log(log, logging.INFO, "step %d/%d", 2, 12)
    with capture() as run_log:
        run_log.open(path)
        log.info("resumed")
    log.info("after the command: not in the run log")
    text = path.read_text()
    lines = [line.split(" ", 2)[2] for line in text.splitlines() if line[:4].isdigit()]  # the records' own lines
    assert lines[0].startswith("INFO command: ") and lines[5].startswith("INFO command: ")
    assert lines[1:4] == ["INFO loading the model", "WARNING 50%|##### 60%", lines[3]]
    assert lines[3].startswith("WARNING ") and "UserWarning: a library's warning" in lines[3]
    assert text.index("INFO step 2/12") < text.index("INFO resumed") and "\r" not in text
    assert "after the command" not in text and len(lines) == 7
    assert getattr(warnings.showwarning, "__module__", "") != "logging"  # Python's warnings as they were
