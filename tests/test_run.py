from __future__ import annotations

import errno
import json

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
