"""The run folder: ``outputs/<slug>-<hash8>/<YYYYmmdd-HHMMSS>/`` and its files, written atomically.

Layout: ``config.yaml`` (resolved, reloadable), ``run.json`` (prompt, seed, versions, model, device,
renderer path, timings, peak memory, status), ``ckpt/``, ``progress/``, ``result/``.
"""

from __future__ import annotations

import contextlib
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
from datetime import datetime
from importlib import metadata
from pathlib import Path

from sds import __version__
from sds.config import RunConfig, to_yaml
from sds.errors import UserError

STATUSES = ("running", "ok", "cut_by_box", "nan", "empty", "interrupted", "failed")


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
    out = {"python": platform.python_version(), "sds": __version__}  # the distribution is sds3d; this is the code's
    for name in ("torch", "diffusers", "transformers", "nerfacc", "trimesh"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def now_iso() -> str:
    """The local time with its UTC offset, to the second (ISO 8601), as run.json records times."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


COMMAND_LINE: list[str] = []
"""The command line of this process's `sds` command, as the CLI parsed it (set by ``sds.cli.main``)."""


def command_line() -> list[str]:
    """What started this command: the CLI's arguments, else (a batch worker, a script) the process's sys.argv."""
    return list(COMMAND_LINE or sys.argv)


def git_commit() -> str | None:
    """The commit of the sds source when it runs from a git checkout (with "-dirty" when its sds/ folder has
    uncommitted changes), else None (an installed package). Asks git, which may be absent: then None too."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # a file in a worktree, a folder in a clone; absent in site-packages
        return None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5,
                                  check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "sds"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def hardware(gpu: str | None = None) -> dict:
    """The machine: CPU model and cores, RAM, and `gpu` (the CUDA device's name, given by the caller, which has
    torch: this module does not import it)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError):
        ram = None
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "ram_gib": None if ram is None else round(ram, 1),
            "gpu": gpu, "os": platform.platform()}


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
    sds_version: str = ""
    git_commit: str | None = None
    """The sds source's commit when it ran from a git checkout ("-dirty": with uncommitted changes), else None."""
    command: list[str] = field(default_factory=list)
    """The command line that made the run."""
    started_at: str = ""
    ended_at: str = ""
    """When the last command on the run (generate, resume, export) ended (ISO 8601, "" while the first runs)."""
    later_commands: list[dict] = field(default_factory=list)
    """Each resume or export of the run: its command line, start and end."""
    hardware: dict = field(default_factory=dict)
    """The machine of the last training or export (CPU, cores, RAM, GPU)."""
    progress: dict = field(default_factory=dict)
    """Where training is (step, loss, opacity, steps/s, ETA), updated every tenth of the run."""
    message: str = ""


RUN_INFO_TYPES: dict[str, tuple[type, ...]] = {
    "prompt": (str,), "seed": (int,), "model": (str,), "revision": (str, type(None)), "steps_done": (int,),
    "steps_total": (int,), "timings_s": (dict,), "peak_memory_mb": (dict,), "warnings": (list,), "export": (dict,),
    "versions": (dict,), "git_commit": (str, type(None)), "command": (list,),
    "later_commands": (list,), "hardware": (dict,), "progress": (dict,),
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
    def create(cls, cfg: RunConfig, started_at: str | None = None) -> Run:
        """A new run folder for `cfg`; `started_at`: when the command that makes it began (default: now)."""
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
                                steps_total=cfg.steps, sds_version=__version__,
                                git_commit=git_commit(), command=command_line(),
                                started_at=started_at or now_iso()))
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
        """Add to a phase's time: a resumed run's training adds to the time the run has trained."""
        self.info.timings_s[phase] = round(self.info.timings_s.get(phase, 0.0) + seconds, 3)

    def set_timing(self, phase: str, seconds: float) -> None:
        """Replace a phase's time: a re-export's time is that export's, not a sum over exports."""
        self.info.timings_s[phase] = round(seconds, 3)
