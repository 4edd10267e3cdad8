"""The command as installed: `python -m sds`, `--version`, global flags anywhere, help that lists what a command
accepts, shipped configs found by name from any folder, and a wheel that carries every file sds reads."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sds import __version__
from sds.cli import build_parser
from sds.commands import EXPORT_KEYS, RESUME_KEYS
from sds.config import ConfigError, load_config, with_overrides
from sds.configs import SHIPPED, resolve_config, shipped_names

REPO = Path(__file__).resolve().parents[1]


def _python_m_sds(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m sds ...` run from `cwd`, importing the sds of this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "sds", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)  # fmt: skip


def test_python_m_sds_prints_the_version(tmp_path):
    out = _python_m_sds("--version", cwd=tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"sds {__version__}\n", "")


def test_a_shipped_config_is_found_by_name_outside_the_repo(tmp_path):
    out = _python_m_sds("show-config", "--config", "quick", "steps=123", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "steps: 123" in lines and "preview_every: 50" in lines  # the override over quick.yaml's own value


@pytest.mark.parametrize("name", shipped_names())
def test_every_shipped_config_loads_and_the_repo_configs_are_the_same_files(name):
    assert {"default", "quick", "stable-diffusion"} <= set(shipped_names())
    load_config(resolve_config(name), require_prompt=False)
    assert (REPO / "configs" / f"{name}.yaml").resolve() == (SHIPPED / f"{name}.yaml").resolve()


def test_config_names_and_paths():
    assert resolve_config("quick") == str(SHIPPED / "quick.yaml")
    assert resolve_config("configs/quick.yaml") == "configs/quick.yaml"  # a path stays a path
    assert resolve_config("missing.yaml") == "missing.yaml"  # load_config reports "file not found"
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        resolve_config("quik")


@pytest.mark.parametrize("argv", [["-v", "recipes"], ["recipes", "-v"], ["generate", "a red cube", "--verbose",
                                  "steps=3"], ["--verbose", "resume", "RUN", "steps=3"]])
def test_global_flags_work_before_or_after_the_subcommand(argv):
    assert build_parser().parse_known_args(argv)[0].verbose is True
    assert build_parser().parse_known_args([a for a in argv if a not in ("-v", "--verbose")])[0].verbose is False


def test_every_subcommand_takes_the_global_flags():
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        assert "--verbose" in command.format_help(), name


def _help(command: str, capsys) -> str:
    """`sds COMMAND --help` as one line of words."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_resume_help_lists_exactly_what_resume_accepts(capsys):
    text = _help("resume", capsys)
    cfg = load_config(None, prompt="a red cube")
    for key in RESUME_KEYS:
        assert f"{key}=" in text
        value = functools.reduce(getattr, key.split("."), cfg)
        changed = with_overrides(cfg, [f"{key}={not value if isinstance(value, bool) else value}"], allowed=RESUME_KEYS)
        if isinstance(value, bool):  # a switch (the memory savers) is not only accepted but applied
            assert functools.reduce(getattr, key.split("."), changed) is (not value)
    for refused in ("seed", "model", "guidance.guidance_scale"):
        assert refused not in text
        with pytest.raises(ConfigError, match="not changeable"):
            with_overrides(cfg, [f"{refused}=1"], allowed=RESUME_KEYS)


def test_export_help_lists_exactly_what_export_accepts(capsys):
    text = _help("export", capsys)
    assert "only export.*=... and device=..." in text and EXPORT_KEYS == ("export", "device")
    assert "seed" not in text and "model=" not in text


def test_the_wheel_carries_every_file_sds_reads(tmp_path):
    """Built from a copy of the package (nothing written into the checkout), without network or build isolation."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(REPO / "sds", src / "sds", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "No module named 'wheel'" in build.stderr:
        pytest.skip("setuptools here cannot build wheels without the wheel package")
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = ["sds/__main__.py", "sds/export/viewer/model-viewer.min.js", "sds/export/viewer/LICENSE",
                "sds/export/viewer/viewer.html", "sds/prior/weights/model_index.json",
                *(f"sds/configs/{n}.yaml" for n in shipped_names()),
                *(f"sds/recipes/{p.name}" for p in (REPO / "sds" / "recipes").glob("*.yaml"))]
    assert not [n for n in expected if n not in names]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    plain = [r for r in requires if "extra ==" not in r]
    assert not [r for r in plain if r.split()[1].startswith(("torch", "nerfacc"))], "pip install must not pull torch"
    assert any(r.startswith("Requires-Dist: nerfacc") and 'extra == "cuda"' in r for r in requires)


def test_a_missing_torch_or_nerfacc_is_one_line_saying_how_to_install_it():
    from sds.errors import user_message

    assert "download.pytorch.org/whl/cpu" in user_message(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert "sds3d[cuda]" in user_message(ModuleNotFoundError("No module named 'nerfacc'", name="nerfacc"))
    assert user_message(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None  # a broken install


def test_cuda_without_nerfacc_renders_with_pure_torch(monkeypatch):
    """nerfacc is the `cuda` extra: without it, sampler=auto on CUDA falls back instead of failing mid-run."""
    import importlib.util

    torch = pytest.importorskip("torch")
    from sds.render.renderer import VolumeRenderer

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nerfacc" else real_find_spec(name, *a))
    assert VolumeRenderer._choose_path("auto", torch.device("cuda")) == "torch"
    assert VolumeRenderer._choose_path("torch", torch.device("cuda")) == "torch"
