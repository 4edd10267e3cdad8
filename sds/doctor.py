"""``sds doctor``: one screen saying what a run would do and whether it can, before any weights load.

Every check is a ``Check(name, ok, detail)``; the command prints them and exits non-zero when one that a run
needs fails. Reading a model's folder here means its small JSON files and file sizes, never its weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sds.config import RunConfig

GIB = 2**30
MIN_FREE_DISK_GIB = 1.0
"""A run writes checkpoints (the field, its Adam state), previews and the mesh: well under 1 GiB at the defaults."""
RUNTIME_GIB = 0.31
"""Resident memory of Python with torch, diffusers and transformers imported (316 MiB, measured on this CPU
machine with torch 2.13.0); counted on the CPU only."""
BYTES_PER_SAMPLE = 1280
"""Estimate only: bytes the renderer and its autograd graph keep per ray sample (density, albedo, weights, normals
from 6 extra queries, their gradients), calibrated so that the built-in prior's default step comes to the 578 MiB
peak that benchmarks/step_time.py measured on CPU (docs/benchmarks.md)."""
ACTIVATION_FACTOR = 1.5
"""Estimate only: peak memory of an SDS step ~ weights x this factor (the weights, the UNet's activations for a
[2B] batch, the VAE encoder's backward). Calibrated on benchmarks/real_size.py: a full-size SD 2.1-base step at
512 px peaked at 7.55 GiB resident for 4.84 GiB of float32 weights on this CPU machine (docs/benchmarks.md);
not yet measured on a GPU. Marked as an estimate wherever it is printed."""


SAVER_KEYS = ("attention_slicing", "vae_checkpointing")
"""The guidance keys that lower a step's peak memory (``sds.guidance.memory.apply_memory_savers``; its
channels_last changes the layout, not the memory)."""


FAMILY_NAMES = {"sdxl": "latent SDXL (two text encoders, pooled embeddings)",
                "latent": "latent (VAE: Stable Diffusion 1.x / 2.x)",
                "pixel": "pixel space (built-in prior, DeepFloyd IF)"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None
    """True: fine; False: a run cannot work; None: information only."""
    detail: str


def torch_checks(cfg: RunConfig) -> tuple[list[Check], str]:
    """torch's build, the device a run would use, and the nerfacc extension; returns the checks and the device."""
    import torch

    cuda = torch.cuda.is_available()
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    checks = [Check("torch", None, f"{torch.__version__} ({build} build)")]
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and cuda) else "cpu"
    if cfg.device == "cuda" and not cuda:
        checks.append(Check("device", False, "device=cuda, but torch sees no CUDA GPU; use device=cpu or device=auto"))
    elif device == "cuda":
        props = torch.cuda.get_device_properties(0)
        checks.append(Check("device", True, f"cuda: {props.name}, {props.total_memory / GIB:.1f} GiB"))
    else:
        checks.append(Check("device", True, f"cpu, {os.cpu_count()} cores (torch uses {torch.get_num_threads()} threads)"))
    checks.append(nerfacc_check(device))
    return checks, device


def nerfacc_check(device: str) -> Check:
    if importlib.util.find_spec("nerfacc") is None:
        if device == "cuda":  # the renderer falls back to the pure-torch path
            return Check("nerfacc", None, "not installed: the pure-torch renderer runs instead (slower); pip install "
                                          "'sds3d[cuda]' for nerfacc's occupancy grid")
        return Check("nerfacc", True, "not installed (pip install 'sds3d[cuda]'); the CPU path does not need it")
    if device != "cuda":
        return Check("nerfacc", None, "installed; not used on the CPU (the pure-torch renderer is the CPU path)")
    from torch.utils.cpp_extension import _get_build_directory

    build = Path(_get_build_directory("nerfacc_cuda", verbose=False))
    if importlib.util.find_spec("nerfacc.csrc") is not None or (build.is_dir() and any(build.iterdir())):
        return Check("nerfacc", True, "CUDA extension built")
    if shutil.which("nvcc") is None:
        return Check("nerfacc", None, "CUDA extension not built and no nvcc to build it: render.sampler=torch runs "
                                      "without it (slower), or install the CUDA toolkit")
    return Check("nerfacc", None, "CUDA extension not built yet: it compiles on first use (minutes); to build it "
                                  "now: python -c 'from nerfacc.cuda._backend import _C'")


def model_checks(cfg: RunConfig, recipe: str, reason: str) -> tuple[list[Check], int]:
    """Whether the model resolves offline, its family and prediction type; returns the checks and the bytes of
    its weights on disk (0 when unknown)."""
    from sds.guidance.load import ModelLoadError, model_family, resolve_model
    from sds.guidance.sds import PREDICTION_TYPES

    try:
        source = resolve_model(cfg.guidance.model)
    except ModelLoadError as e:
        return [Check("model", False, str(e))], 0
    if not source.is_local:
        folder = hub_cache_folder(source.location)
        if folder is None:
            return [Check("model", False, f"{source.location} is a hub id that is not in the local cache; this "
                                          "machine needs network to fetch it, or pass model=/path/to/folder")], 0
        source_dir = folder
    else:
        source_dir = Path(source.location)
    checks = [Check("recipe", None, f"{recipe} ({reason})")]
    if source_dir.is_file():
        checks.insert(0, Check("model", True, f"single file {source_dir} (family read when it loads)"))
        return checks, source_dir.stat().st_size
    index = json.loads((source_dir / "model_index.json").read_text())
    family = FAMILY_NAMES[model_family(index)]
    checks.insert(0, Check("model", True, f"{cfg.guidance.model} -> {source_dir}: {family}"))
    kind = _prediction_type(source_dir)
    checks.insert(1, Check("prediction", kind in PREDICTION_TYPES,
                           f"{kind}" + ("" if kind in PREDICTION_TYPES else f": unsupported ({', '.join(PREDICTION_TYPES)})")))
    return checks, loaded_weight_bytes(source_dir, index)


def loaded_weight_bytes(folder: Path, index: dict) -> int:
    """Bytes of the weight files diffusers would load: per component folder of model_index.json, the safetensors
    files (else the .bin ones), leaving out variants such as *.fp16.* and anything outside the components."""
    total = 0
    for name, entry in index.items():
        component = folder / name
        if not isinstance(entry, list) or not component.is_dir():
            continue
        files = [p for p in component.iterdir() if p.suffix in (".safetensors", ".bin") and p.name.count(".") == 1
                 or p.name.startswith(("diffusion_pytorch_model-", "model-"))]
        chosen = [p for p in files if p.suffix == ".safetensors"] or [p for p in files if p.suffix == ".bin"]
        total += sum(p.stat().st_size for p in chosen)
    return total


def available_ram_bytes() -> int:
    """MemAvailable (free plus reclaimable cache) where /proc/meminfo has it, else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _prediction_type(folder: Path) -> str:
    path = folder / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return "epsilon"
    return str(json.loads(path.read_text()).get("prediction_type", "epsilon"))


def hub_cache_folder(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub model, if the cache holds one (no network)."""
    from sds.guidance.hub import cached_index

    found = cached_index(repo_id)
    return None if found is None else found.parent


def memory_check(cfg: RunConfig, device: str, weight_bytes: int) -> Check:
    """An estimate (so labelled) of a step's peak memory against what the device has."""
    half = cfg.guidance.half_precision and device == "cuda"
    weights = weight_bytes / (2 if half and weight_bytes else 1)
    r = cfg.render
    render_bytes = cfg.camera.batch_size * r.resolution**2 * r.samples_per_ray * BYTES_PER_SAMPLE
    estimate = (weights * ACTIVATION_FACTOR + render_bytes) / GIB + (RUNTIME_GIB if device == "cpu" else 0.0)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return Check("memory", None, f"estimated peak ~{estimate:.1f} GiB (an estimate); no CUDA device to "
                                         "compare it with")
        available = torch.cuda.mem_get_info()[0] / GIB
        where = "free GPU memory"
    else:
        available = available_ram_bytes() / GIB
        where = "available RAM"
    detail = (f"estimated peak ~{estimate:.1f} GiB (an estimate, not a measurement: weights {weights / GIB:.2f} GiB "
              f"x {ACTIVATION_FACTOR:g}, renderer {render_bytes / GIB:.2f} GiB at {r.resolution} px"
              f"{f', runtime {RUNTIME_GIB} GiB' if device == 'cpu' else ''}); {available:.1f} GiB {where}")
    return Check("memory", estimate <= available, detail + savers_note(cfg, estimate <= available))


def savers_note(cfg: RunConfig, fits: bool) -> str:
    """The memory savers' part of the memory line: those on are not in the estimate (ACTIVATION_FACTOR was measured
    without them, so it errs high); when the estimate does not fit, the ones still off."""
    on = [name for name in SAVER_KEYS if getattr(cfg.guidance, name)]
    if on:
        return f"; savers on: {', '.join(on)} (not counted: the estimate errs high)"
    return "" if fits else "; guidance.vae_checkpointing=true and guidance.attention_slicing=true may lower the peak"


def disk_check(cfg: RunConfig) -> Check:
    root = Path(cfg.output_dir).expanduser().resolve()
    existing = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        return Check("disk", False, f"output_dir {root}: {existing} is a file, not a folder")
    free = shutil.disk_usage(existing).free / GIB
    return Check("disk", free >= MIN_FREE_DISK_GIB and os.access(existing, os.W_OK),
                 f"{free:.1f} GiB free in {existing}" + ("" if os.access(existing, os.W_OK) else " (not writable)"))


def run_doctor(cfg: RunConfig, recipe: str, reason: str) -> list[Check]:
    checks, device = torch_checks(cfg)
    found, weight_bytes = model_checks(cfg, recipe, reason)
    checks += found
    if weight_bytes:
        checks.append(memory_check(cfg, device, weight_bytes))
    checks.append(disk_check(cfg))
    return checks


def report(checks: list[Check]) -> str:
    marks = {True: "ok  ", False: "FAIL", None: "    "}
    lines = [f"{marks[c.ok]} {c.name:11} {c.detail}" for c in checks]
    failed = [c.name for c in checks if c.ok is False]
    lines.append(f"a run cannot work: {', '.join(failed)}" if failed else "a run can start with these settings")
    return "\n".join(lines)
