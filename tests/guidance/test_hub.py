"""A hub id without network: one line in about a second (no retries, no log line twice), or the cached copy.

No request leaves the machine: the hub is HF_ENDPOINT on a closed port of localhost, or HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sds.guidance.hub import is_hub_id

REPO = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the with ends: connections are refused at once


def _env(tmp_path, offline: bool) -> dict:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HUB_OFFLINE": "1" if offline else "0",
           "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("TRANSFORMERS_OFFLINE", None)
    return env


def test_hub_ids_are_told_from_paths(tmp_path):
    assert is_hub_id("stabilityai/stable-diffusion-2-1-base") and is_hub_id("org/name")
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    for local in ("builtin", "./org/name", "/abs/path", "~/model", "name", "a/b/c", "org/model.safetensors"):
        assert not is_hub_id(local), local
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert not is_hub_id("org/name")  # a folder of that name here is a local model
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("offline", [False, True], ids=["network unreachable", "HF_HUB_OFFLINE"])
def test_a_hub_id_not_in_the_cache_fails_in_one_line_at_once(offline, tmp_path):
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sds", "generate", "a red cube", "model=some-org/some-model",
                          f"output_dir={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120,
                         env=_env(tmp_path, offline), cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert out.returncode == 1 and out.stdout == ""
    (line,) = out.stderr.splitlines()  # one line: no retries, no warning printed twice, no traceback
    assert line.startswith("sds: error: model 'some-org/some-model' is not in the local Hugging Face cache")
    assert ("HF_HUB_OFFLINE is set" if offline else "the network is unreachable") in line
    assert "model=/path/to/a/local/diffusers/folder" in line and "download it once" in line
    assert seconds < 15, seconds  # about a second (the process included); it was 29 s of retries
    assert not (tmp_path / "out").exists()


def test_a_cached_hub_id_loads_from_the_cache_when_the_hub_is_unreachable(tmp_path, tiny_pixel_model):
    """The cache as huggingface_hub lays it out after a download: refs/main names a snapshot holding the model's
    files, and .no_exist records the files the hub did not have (the tokenizer's config.json, which transformers
    asks for)."""
    commit = "0" * 40
    repo = tmp_path / "hf" / "hub" / "models--some-org--tiny"
    shutil.copytree(tiny_pixel_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / ".no_exist" / commit / "tokenizer").mkdir(parents=True)
    (repo / ".no_exist" / commit / "tokenizer" / "config.json").touch()
    code = ("import torch; from sds.config import GuidanceConfig; from sds.guidance.load import load_guidance; "
            "g, _ = load_guidance(GuidanceConfig(model='some-org/tiny'), 'a red cube', torch.device('cpu')); "
            "print(g.family)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=_env(tmp_path, offline=False), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == "pixel\n" and "Retrying" not in out.stderr and "Warning" not in out.stderr


def test_huggingface_hub_records_show_once(tmp_path):
    """huggingface_hub adds a stderr handler of its own beside ours (root): each warning printed twice."""
    code = ("import logging; logging.basicConfig(format='%(levelname)s %(message)s'); "
            "from sds.guidance.load import _quiet_loading; _quiet_loading(); "
            "logging.getLogger('huggingface_hub.file_download').warning('retrying')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=_env(tmp_path, offline=True), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.splitlines() == ["WARNING retrying"]
