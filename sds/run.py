"""The run folder: ``outputs/<slug>-<hash8>/<YYYYmmdd-HHMMSS>/`` and its files, written atomically.

Layout: ``config.yaml`` (resolved, reloadable), ``run.json`` (prompt, seed, versions, model, device,
renderer path, timings, peak memory, status), ``ckpt/``, ``progress/``, ``result/``.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import platform
import re
import resource
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from sds.config import RunConfig, to_yaml
from sds.errors import UserError

STATUSES = ("running", "ok", "nan", "empty", "interrupted", "failed")


class DiskFullError(UserError, OSError):
    """Raised instead of a bare ENOSPC so the CLI can say what was kept."""


def slugify(prompt: str, max_chars: int = 40) -> str:
    """Short lowercase ascii name from a prompt; never contains a path separator or dots."""
    text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:max_chars].strip("-")
    return slug or "prompt"


def config_hash(cfg: RunConfig) -> str:
    return hashlib.sha1(to_yaml(cfg).encode()).hexdigest()[:8]


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to path.tmp, then rename: a reader never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise DiskFullError(errno.ENOSPC, f"disk full while writing {path}") from None
        raise


def check_output_dir(root: Path) -> None:
    """A UserError (one line) unless runs can be written under `root`: checked before any model loads."""
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UserError(f"output_dir {root} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output_dir {root} is not writable (no permission on {existing})")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("sds", "torch", "diffusers", "transformers", "nerfacc", "trimesh"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def peak_memory_mb() -> float:
    """Peak resident memory of this process (CPU) in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


@dataclass
class RunInfo:
    """What run.json records."""

    prompt: str
    seed: int
    model: str
    revision: str | None
    device: str = ""
    renderer_path: str = ""
    recipe: str = ""
    """The recipe the run's config was resolved with ("" for none: the defaults)."""
    recipe_reason: str = ""
    """Why that recipe: asked for, or chosen from the model."""
    model_kind: str = ""
    """"pixel" (the built-in prior, DeepFloyd IF stage I), "latent" (a VAE: Stable Diffusion) or "sdxl"."""
    prediction_type: str = ""
    """What the model's UNet predicts (epsilon, v_prediction, sample); converted to epsilon for SDS."""
    status: str = "running"
    steps_done: int = 0
    steps_total: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    export: dict = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=package_versions)
    message: str = ""


RUN_INFO_TYPES: dict[str, tuple[type, ...]] = {
    "prompt": (str,), "seed": (int,), "model": (str,), "revision": (str, type(None)), "steps_done": (int,),
    "steps_total": (int,), "timings_s": (dict,), "peak_memory_mb": (dict,), "warnings": (list,), "export": (dict,),
    "versions": (dict,),
}
"""The JSON type of each run.json field (text for the rest), checked when a run folder is opened."""
RUN_INFO_TYPES = {name: RUN_INFO_TYPES.get(name, (str,)) for name in RunInfo.__dataclass_fields__}


class Run:
    """A run folder and its record."""

    def __init__(self, path: Path, info: RunInfo):
        self.path = path
        self.info = info
        for sub in ("ckpt", "progress", "result"):
            (path / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, cfg: RunConfig) -> Run:
        root = Path(cfg.output_dir).expanduser().resolve()
        parent = root / f"{slugify(cfg.prompt)}-{config_hash(cfg)}"
        check_output_dir(root)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if root not in parent.resolve().parents:  # slugify makes this impossible; keep the guarantee explicit
            raise ValueError(f"run folder {parent} would fall outside {root}")
        parent.mkdir(parents=True, exist_ok=True)
        path = parent / stamp
        for n in itertools.count(1):
            try:  # mkdir is atomic: of runs started in the same second, each gets its own folder
                path.mkdir()
                break
            except FileExistsError:
                path = parent / f"{stamp}-{n}"
        run = cls(path, RunInfo(cfg.prompt, cfg.seed, cfg.guidance.model, cfg.guidance.revision,
                                steps_total=cfg.steps))
        write_atomic(path / "config.yaml", to_yaml(cfg))
        run.save()
        return run

    @classmethod
    def open(cls, path: Path) -> Run:
        from sds.errors import RunError

        record = path / "run.json"
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunError(f"{record} is corrupt ({type(e).__name__}); restore it from a copy") from None
        known = set(RunInfo.__dataclass_fields__)
        if not isinstance(data, dict):
            raise RunError(f"{record} is corrupt (expected a JSON object); restore it from a copy")
        wrong = [k for k, v in data.items() if k in known and not isinstance(v, RUN_INFO_TYPES[k])]
        if wrong:
            raise RunError(f"{record} is corrupt ({', '.join(sorted(wrong))} of the wrong type); restore it from a copy")
        try:
            return cls(path, RunInfo(**{k: v for k, v in data.items() if k in known}))
        except TypeError:
            raise RunError(f"{record} is incomplete (it lacks the prompt, seed or model); restore it from a copy") from None

    @property
    def checkpoint(self) -> Path:
        return self.path / "ckpt" / "last.pt"

    @property
    def metrics(self) -> Path:
        """Per-step training metrics (CSV), written with each checkpoint."""
        return self.path / "progress" / "metrics.csv"

    def save(self) -> None:
        write_atomic(self.path / "run.json", json.dumps(self.info.__dict__, indent=2))

    def add_timing(self, phase: str, seconds: float) -> None:
        self.info.timings_s[phase] = round(self.info.timings_s.get(phase, 0.0) + seconds, 3)
