"""No file a user shares (a run folder's checkpoint, the prior's data cache or checkpoint) can run code.

Each crafted file below runs a shell command that writes a marker file when unpickled with
``weights_only=False``; every command that reads it must refuse with one line and leave no marker.
"""

from __future__ import annotations

import os

import pytest
import torch

from sds.cli import main
from sds.config import load_config
from sds.run import Run


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted(path, marker, extra: dict | None = None):
    torch.save({"step": 1, "payload": _Exploit(marker), **(extra or {})}, path)


def test_the_exploit_really_runs_code_when_unpickled(tmp_path):
    """The control: without weights_only the crafted file runs its command (so the tests below mean something)."""
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    _crafted(path, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def _run_folder(tmp_path, tiny_pixel_model):
    cfg = load_config(None, [f"model={tiny_pixel_model}", f"output_dir={tmp_path / 'out'}", "steps=4",
                             "field.encoding.resolution=16", "render.resolution=16", "camera.batch_size=1"],
                      prompt="a red cube")
    return Run.create(cfg)


@pytest.mark.parametrize("command", [["export"], ["resume"], ["resume", "steps=8"]])
def test_a_crafted_checkpoint_is_refused_by_every_command(command, tmp_path, tiny_pixel_model, capsys):
    run = _run_folder(tmp_path, tiny_pixel_model)
    marker = tmp_path / "ran"
    _crafted(run.checkpoint, marker)
    config_before = (run.path / "config.yaml").read_bytes()
    code = main([command[0], str(run.path), *command[1:]])
    err = capsys.readouterr().err.strip()
    assert code != 0 and not marker.exists()
    assert len(err.splitlines()) == 1 and "could run code" in err, err
    assert (run.path / "config.yaml").read_bytes() == config_before  # a refused resume changes nothing


def test_a_crafted_prior_data_cache_and_checkpoint_are_refused(tmp_path, capsys):
    marker = tmp_path / "ran"
    out = tmp_path / "prior"
    out.mkdir()
    _crafted(out / "data.pt", marker)
    assert main(["train-prior", str(out), "--steps", "1"]) != 0
    err = capsys.readouterr().err.strip()
    assert not marker.exists() and len(err.splitlines()) == 1 and "could run code" in err, err


def test_the_prior_checkpoint_is_read_without_unpickling_code(tmp_path):
    from sds.errors import RunError
    from sds.state_file import read_state

    path, marker = tmp_path / "ckpt.pt", tmp_path / "ran"
    _crafted(path, marker)
    with pytest.raises(RunError, match="could run code"):
        read_state(path, what="prior checkpoint")
    assert not marker.exists()
