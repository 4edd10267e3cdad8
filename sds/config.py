"""Typed run configuration: defaults in dataclasses, YAML holds differences, ``key=value`` goes last.

Everything is validated here, before any model loads: unknown keys (with a did-you-mean), wrong types,
out-of-range values and an empty prompt each raise :class:`ConfigError` with a one-line message naming
the key. This module imports no torch, so ``sds show-config`` and config errors are instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from sds.errors import ConfigError


@dataclass(frozen=True)
class Ramp:
    """A weight that changes linearly over steps: ``start`` until ``start_step``, ``end`` from ``end_step``.

    In YAML either a number (constant) or a mapping ``{start, end, start_step, end_step}``.
    """

    start: float
    end: float
    start_step: int = 0
    end_step: int = 0

    def at(self, step: int) -> float:
        if step <= self.start_step:
            return self.start
        if step >= self.end_step:
            return self.end
        frac = (step - self.start_step) / (self.end_step - self.start_step)
        return self.start + frac * (self.end - self.start)


def constant(value: float) -> Ramp:
    return Ramp(value, value)


@dataclass(frozen=True)
class GuidanceConfig:
    """The frozen text-to-image model and the SDS loss."""

    model: str = "builtin"
    """"builtin" (the shipped prior), a hub id, a local diffusers folder, or a Stable Diffusion .safetensors file."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when `model` is a hub id."""
    model_config: str | None = None
    """For a single-file checkpoint (`model=...safetensors`): a local diffusers folder of the same family whose
    component configs describe it (diffusers otherwise fetches them from the hub, which an offline machine cannot)."""
    loras: tuple[str, ...] = ()
    """LoRA files applied to the UNet through diffusers' loader (needs peft), each "PATH" or "PATH:WEIGHT"
    (weight 1 by default); `lora=PATH` on the command line adds one."""
    guidance_scale: Ramp = dataclasses.field(default_factory=lambda: Ramp(50.0, 25.0, 150, 151))
    """Classifier-free guidance scale s in eps_u + s * (eps_c - eps_u), a ramp over steps. 50 in the shape stage,
    25 once the texture stage has begun (step 150: render.albedo_warmup_steps, optim.freeze_density_from; move
    the ramp with them): at 50 the texture stage over-saturates the albedo and pushes a yellow cone's sides out
    into a dome (docs/tuning.md, sweep 16)."""
    t_min: float = 0.02
    """Smallest diffusion time sampled, as a fraction of the model's training timesteps."""
    t_max: float = 0.98
    """Largest diffusion time sampled at step 0."""
    t_max_end: float = 0.5
    """Largest diffusion time once annealing is over (equal to t_max: no annealing)."""
    t_min_start: float | None = 0.3
    """Smallest diffusion time at step 0, falling linearly to t_min over the same window as t_max (None: t_min
    throughout). High early means only noisy, coarse-shape steps at first; low-noise steps that sharpen come later."""
    anneal_fraction: float = 0.25
    """Fraction of the run over which t_max falls linearly from t_max to t_max_end (and t_min_start to t_min).
    0.25: the high-noise steps, which push every silhouette outward, end by step 112 of 450; kept up longer they
    grow a yellow cube into the scene box (docs/tuning.md, sweeps 14 and 15)."""
    weighting: Literal["one_minus_alpha_bar", "uniform", "sqrt_one_minus_over_alpha_bar"] = "sqrt_one_minus_over_alpha_bar"
    """w(t): 1 - alpha_bar (DreamFusion), 1, or sqrt((1 - alpha_bar) / alpha_bar) (the default: it weights the
    noisy, shape-setting steps most; with the built-in prior no shape's mean IoU fell against 1 - alpha_bar and
    cubes, tori and cones rose, docs/tuning.md sweep 5)."""
    grad_clip: float | None = None
    """Clamp each element of the SDS gradient to [-grad_clip, grad_clip] (None: no clamp)."""
    view_dependent_prompts: bool = True
    """Append ", front view" / ", side view" / ... chosen from each camera."""
    negative_prompt: str = ""
    """Text for the unconditional branch of CFG."""
    perp_neg: bool = False
    """Perp-Neg (Armandpour et al. 2023) against the Janus problem: each view's opposite view prompts are negatives
    ("..., back view" for a front view), of which only the part perpendicular to the positive is pushed away.
    Needs view_dependent_prompts; costs two more UNet batches per step."""
    perp_neg_weight: float = 2.0
    """Weight of the negative views in Perp-Neg (the peers' default: 2)."""
    half_precision: bool = False
    """Run the frozen model in float16 (CUDA only)."""


@dataclass(frozen=True)
class CameraConfig:
    """Random orbit cameras for training; their defaults match the built-in prior's training images."""

    batch_size: int = 4
    """Views rendered per step (azimuths stratified across the batch)."""
    radius_range: tuple[float, float] = (2.3, 2.7)
    elevation_range_deg: tuple[float, float] = (-10.0, 60.0)
    fov_range_deg: tuple[float, float] = (36.0, 44.0)
    light_jitter_deg: float = 30.0
    """The point light sits at the camera's azimuth/elevation jittered by up to this many degrees."""
    front_half_width_deg: float = 45.0
    back_half_width_deg: float = 45.0
    overhead_elevation_deg: float = 60.0
    low_view_fraction: Ramp = dataclasses.field(default_factory=lambda: constant(0.0))
    """Share of each batch's views (rounded to whole views) drawn from low_elevation_range_deg instead: only
    cameras near or below the horizon see a shape's underside, so only they can carve what the round start
    blob leaves under a base (docs/tuning.md, sweeps 8 and 9: 0.25 shortens cylinders but rounds off cubes)."""
    low_elevation_range_deg: tuple[float, float] = (-10.0, 0.0)


@dataclass(frozen=True)
class FieldConfig:
    """The NeRF: density + albedo over the cube [-bound, bound]^3."""

    kind: Literal["grid", "hashgrid"] = "grid"
    """"grid": dense voxel features via grid_sample; "hashgrid": multi-resolution hash encoding + MLP."""
    bound: float = 1.0
    grid_resolution: int = 48
    """Voxels per axis of the dense grid."""
    coarse_resolutions: tuple[int, ...] = (8, 16)
    """Coarser dense grids summed with the fine one (grid kind only): one coarse voxel moves a whole region,
    so SDS can reshape the start blob globally instead of carving it voxel by voxel. Levels not coarser than
    grid_resolution add nothing and are left out (the log says so)."""
    hash_levels: int = 12
    hash_features_per_level: int = 2
    hash_log2_table_size: int = 15
    hash_base_resolution: int = 8
    hash_max_resolution: int = 128
    hidden_dim: int = 32
    """Width of the MLP heads (hashgrid)."""
    geometry: Literal["density", "sdf"] = "sdf"
    """What channel 0 of the field holds. "sdf" (the default for the built-in prior, docs/tuning.md, sweep 13): a
    signed distance, see below. "density": a density logit, started from the fog ball blob_density /
    blob_radius, made crisp by reg.opacity_entropy. "sdf": a signed distance (times sdf_scale) added to a start
    sphere of radius blob_radius, turned into density by VolSDF's Laplace CDF with scale sdf_beta: the surface
    is crisp from the first step and moves continuously, where an entropy-crisp density can only grow or erode
    voxel by voxel (docs/tuning.md, sweep 10). Normals are then the distance's gradient."""
    sdf_beta: float = 0.02
    """Laplace scale (world units) of the sdf geometry: density 1 / sdf_beta inside, half that on the surface."""
    sdf_scale: float = 0.2
    """World units per unit of the sdf channel: Adam moves each parameter about lr_grid per step, so this sets
    how far (lr_grid * sdf_scale) a surface can move in one step."""
    redistance_every: int = 25
    """Every this many steps (0: never), reset the sdf geometry's channel to the true distance to its own
    surface (grid field only). SDS is as happy with a fog near d = 0 as with a surface; the fog meshes into
    handles and holes, and resetting the distance removes it while the surface stays put (docs/tuning.md). Off
    (0) unless set when the field is not an sdf grid (field.geometry density or field.kind hashgrid)."""
    redistance_blur_voxels: Ramp = dataclasses.field(default_factory=lambda: constant(0.0))
    """Gaussian blur (standard deviation in voxels, a ramp over steps) of the distance before each redistancing:
    a step of curvature flow that smooths the bumps SDS leaves on a surface. It also moves a surface of
    curvature radius R inward by about (blur * voxel size)^2 / R per redistancing (0.004 world units for blur 1
    on a default grid's sphere of radius 0.5), and rounds a cube's edges the same way."""
    density_activation: Literal["softplus", "exp"] = "exp"
    """Density geometry only. exp: a logit step multiplies density, so surfaces turn crisp (opaque within a
    voxel) in a few steps; softplus: density grows only linearly with the logit, leaving a soft,
    half-transparent rim that looks washed out to the prior, which then over-saturates the albedo to
    compensate (docs/tuning.md, sweep 4)."""
    blob_density: float = 0.75
    """Density geometry only: the density logit added at the centre, falling linearly to 0 at blob_radius (and
    below 0 beyond it). The default is a faint fog ball that SDS carves (a dense ball keeps its mass: tori then
    get a floor in the hole): with exp, density 2.1 at the centre, 1 at r = 0.47, 0.4 at r = 1."""
    blob_radius: float = 0.47
    """Radius of the start: the fog ball (density geometry) or the start sphere (sdf geometry)."""
    normal_eps: float = 0.02
    """Step (world units) of the central differences that give normals."""
    albedo_init: float = 0.8
    """Albedo (every channel) where the field starts: the albedo logits are offset by logit(albedo_init). From
    grey (0.5) a colour whose shaded sides the prior knows as dark (yellow: olive) first turns dark and dull;
    from a light start every palette colour is reached by taking channels away."""
    init_noise: float = 0.0
    """Std of Gaussian noise added to the coarsest grid's density logits at the start (grid kind; drawn from the
    run's seed). It breaks the start fog's rotational symmetry, so SDS can settle on one orientation for a shape
    that has one (a cube) instead of averaging all of them into a round one."""


@dataclass(frozen=True)
class RenderConfig:
    """Volume rendering and shading during training."""

    resolution: int = 32
    """Render size in pixels (square); resized to the guidance model's input size."""
    samples_per_ray: int = 48
    ambient: float = 0.35
    albedo_warmup_steps: int = 150
    """Steps of albedo-only shading at the start: the shape stage, in which the shape settles under colour
    alone. From a light start (field.albedo_init) every primitive of the built-in prior has its shape by step 150,
    yellow ones included; lambertian shading afterwards shrinks a yellow cone into a lump and rounds shapes off,
    so the density then only moves slowly (optim.freeze_density_from; docs/tuning.md, sweeps 6 and 15)."""
    normal_gradient_scale: float = 0.0
    """Scale of the SDS gradient that reaches the density through the shading normals; the image is the same
    (0: normals are drawn but detached, so only silhouettes and depth move the geometry). The orientation
    penalty acts through the normals and is scaled with it."""
    color_depth_gradient_scale: Ramp = dataclasses.field(default_factory=lambda: constant(0.0))
    """Scale (a ramp over steps) of the gradient that reaches the density through which colour along a ray is
    seen (the image is the same). At 1 a surface moves in depth to show a darker or lighter albedo behind or in
    front of it, so blotches that SDS paints into the albedo drag the surface into bumps; at 0 each ray's samples
    look alike to the density, and only its opacity (the silhouette) moves it: smooth surfaces, and the yellow
    shapes lose their handles (docs/tuning.md, sweeps 12 and 13). The albedo then need not sit at the mesh's
    iso-level; export.bake_depth bakes the colour the render shows."""
    textureless_prob: float = 0.2
    """After warm-up, probability of a grey (textureless) shaded view; the rest are lambertian."""
    background: Literal["white", "mlp"] = "white"
    """"white" matches the built-in prior; "mlp" learns a background from the view direction."""
    random_background_prob: float = 0.0
    """Probability of a random solid background colour per view (keeps an MLP background from eating the object)."""
    sampler: Literal["auto", "torch", "nerfacc"] = "auto"
    """"auto": nerfacc's occupancy grid on CUDA, pure torch elsewhere."""


@dataclass(frozen=True)
class OptimConfig:
    """Adam learning rates per parameter group."""

    lr_grid: float = 0.03
    """Grid / hash-table features (0.03: with exp density, 0.1 leaves a noisy, foamy field)."""
    lr_mlp: float = 0.005
    lr_background: float = 0.005
    grad_clip_norm: float | None = None
    lr_final_fraction: float = 1.0
    """Every learning rate falls (half a cosine) to this fraction of itself at the last step, starting at
    lr_decay_start of the run (1.0: constant). Small late steps leave less of the SDS gradient's noise as
    voxel speckle, which the prior reads as noise in the image."""
    lr_decay_start: float = 0.5
    """Fraction of the run after which the learning rates start to fall."""
    freeze_density_from: int | None = 150
    """From this step on (the texture stage) every view is lambertian and the density keeps only
    texture_density_step of each step: the albedo un-paints the shading painted into it during the albedo
    warm-up, while the settled shape sharpens slowly (grid field only; None: density trains throughout, and
    a hash-grid field gets None by default)."""
    texture_lr_scale: float = 1.0
    """Learning rates are multiplied by this in the texture stage (where the albedo takes whole steps and the
    density texture_density_step of them): a short stage has to undo shading painted into the albedo during the
    shape stage."""
    texture_density_step: Ramp = dataclasses.field(default_factory=lambda: constant(0.3))
    """Fraction of each optimizer step the density keeps in the texture stage (0: held fixed; 1: no freeze), a
    ramp over steps. 0.3: cube edges and torus holes sharpen under lambertian shading; 0 keeps yellow cones but
    leaves cubes round (docs/tuning.md, sweep 15)."""


@dataclass(frozen=True)
class RegularizerConfig:
    """Regulariser weights, each a ramp over steps."""

    orientation: Ramp = dataclasses.field(default_factory=lambda: constant(0.0))
    """Penalise normals facing away from the camera (DreamFusion's orientation loss)."""
    opacity_sparsity: Ramp = dataclasses.field(default_factory=lambda: constant(0.0))
    """Mean opacity: discourages haze."""
    opacity_entropy: Ramp = dataclasses.field(default_factory=lambda: Ramp(0.0, 1000.0, 50, 150))
    """Binary entropy of opacity: pushes pixels to fully opaque or empty."""
    density_tv: Ramp = dataclasses.field(default_factory=lambda: constant(0.0))
    """Total variation of the grid's density logits (grid field only): mean squared difference between
    neighbouring voxels. Smooths voxel-scale bumps, which shade as speckle the prior reads as noise."""
    eikonal: Ramp = dataclasses.field(default_factory=lambda: constant(0.1))
    """Eikonal penalty mean((|grad d| - 1)^2) over the grid's voxels (field.geometry sdf, grid field only): keeps
    the sdf channel a distance, so sdf_beta means the same surface width everywhere. Off (0) unless set when the
    field is not an sdf grid (field.geometry density or field.kind hashgrid)."""


@dataclass(frozen=True)
class ExportConfig:
    """Mesh extraction and files written to result/."""

    resolution: int = 128
    """Marching-cubes grid resolution per axis."""
    threshold: float | None = None
    """Density iso-level; None: chosen so mesh silhouettes match the NeRF's opacity."""
    formats: tuple[str, ...] = ("glb",)
    """Any of "glb", "obj", "ply"."""
    min_component_fraction: float = 0.05
    """Drop connected components with fewer faces than this fraction of the largest (floaters)."""
    fill_holes: bool = True
    fill_hidden: bool = True
    """Before marching cubes, fill empty space that no axis-aligned line of sight from outside reaches
    (enclosed pockets, tunnels through the interior): never seen, it only adds inner shells and handles."""
    blur_voxels: float = 1.0
    """Gaussian blur (sigma, in voxels of `resolution`) of the density grid before the iso-level and marching
    cubes: voxel-scale noise would otherwise become handles (0: none)."""
    smooth_iterations: int = 0
    max_faces: int = 20000
    """Decimate to at most this many faces (0: keep all)."""
    texture_size: int = 512
    bake_depth: float = 0.06
    """Half-length (world units) of the ray along each surface normal whose composited albedo a texel and a
    vertex get: the colour a camera facing the surface sees in the NeRF. 0: the albedo at the surface point,
    which is paler than the render where the iso-level cuts inside or outside the rendered layer."""
    normalize: bool = True
    """Centre the mesh at the origin and scale it to a unit bounding box."""
    roughness: float = 0.8
    video: bool = True
    video_frames: int = 36
    video_resolution: int = 128
    preview_resolution: int = 128
    chunk_size: int = 65536


@dataclass(frozen=True)
class RunConfig:
    """One prompt-to-mesh run."""

    prompt: str = ""
    recipe: str = ""
    """The recipe the config was resolved with (``sds recipes``; "" when none was applied: the defaults, which are
    the built-in prior's recipe). Set by --recipe or chosen from the model; recorded, not read back as a choice."""
    seed: int = 0
    steps: int = 450
    """Optimisation steps. With the sdf defaults 450 sharpen the cubes and cones that 300 left rounded, and a
    step costs a third of what the density defaults' did (docs/tuning.md, sweep 13)."""
    output_dir: str = "outputs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = 100
    preview_every: int = 100
    guidance: GuidanceConfig = dataclasses.field(default_factory=GuidanceConfig)
    camera: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    reg: RegularizerConfig = dataclasses.field(default_factory=RegularizerConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)


ALIASES = {"model": "guidance.model", "lora": "guidance.loras"}
"""Plain names for common overrides."""

MAX_PROMPT_CHARS = 1000


# ----------------------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _number(value: Any) -> Any:
    """PyYAML follows YAML 1.1, which reads 1e-6 (no dot) as text: take such text as the number it spells."""
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against type `tp`, converting YAML forms (list -> tuple, int -> float, number -> Ramp)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if tp is Ramp:
        value = _number(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return constant(_coerce(value, float, key))
        if isinstance(value, Ramp):
            return value
        return _build(Ramp, value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - schema bug


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{(prefix + '.') if prefix else ''}{close[0]}'?" if close else ""
            raise ConfigError(f"{path}: unknown key{hint}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field (Ramp.start/end) is missing
        raise ConfigError(f"{prefix}: {e}") from None


def _set_path(data: dict, dotted: str, value: Any) -> None:
    dotted = ALIASES.get(dotted, dotted)
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"{text}: overrides are key=value (e.g. steps=300)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"{text}: missing key before '='")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                prompt: str | None = None, require_prompt: bool = True, recipe: str | None = None) -> RunConfig:
    """Defaults <- recipe <- YAML file <- key=value overrides <- prompt. Validated; raises ConfigError.

    recipe: a shipped recipe's name or a recipe file's path (``sds.recipes``); None applies none (the defaults)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config: file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"config: {path} is not UTF-8 text") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config: {path} is not valid YAML ({e.__class__.__name__})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config: {path} must hold a mapping of keys")
        data = loaded or {}
    for text in overrides:
        key, value = parse_override(text)
        if key == "lora" and isinstance(value, str):  # repeatable: each lora=PATH[:WEIGHT] adds one
            section = data.get("guidance", {})
            earlier = section.get("loras") if isinstance(section, dict) else None
            value = [*(earlier if isinstance(earlier, list) else []), value]
        _set_path(data, key, value)
    if prompt is not None:
        data["prompt"] = prompt
    if recipe is not None:
        from sds.recipes import load_recipe

        chosen = load_recipe(recipe)
        data = _merged(chosen.config, data)
        data["recipe"] = chosen.name
    _field_specific_defaults_off(data)
    cfg = _build(RunConfig, data)
    validate(cfg, require_prompt=require_prompt)
    return _with_absolute_model_files(cfg)


def _with_absolute_model_files(cfg: RunConfig) -> RunConfig:
    """LoRA files and model_config must exist when a run starts; they are saved as absolute paths, so a run folder
    reopened from elsewhere finds them (and export, which needs neither, never checks them)."""
    g = cfg.guidance
    loras = []
    for entry in g.loras:
        path, weight = split_lora(entry)
        full = Path(path).expanduser().resolve()
        _check(full.is_file(), "guidance.loras", f"no such LoRA file: {path}")
        loras.append(f"{full}:{weight:g}")
    model_config = g.model_config
    if model_config is not None:
        full = Path(model_config).expanduser().resolve()
        _check((full / "model_index.json").is_file(), "guidance.model_config",
               f"{model_config} is not a diffusers folder (no model_index.json)")
        model_config = str(full)
    return dataclasses.replace(cfg, guidance=dataclasses.replace(g, loras=tuple(loras), model_config=model_config))


def with_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...], allowed: tuple[str, ...]) -> RunConfig:
    """cfg with `key=value` overrides applied (the same parsing as load_config), each key one of `allowed` or
    under an allowed section ("export" allows "export.resolution"); validated. Used by resume and export."""
    data = to_dict(cfg)
    for text in overrides:
        key, value = parse_override(text)
        dotted = ALIASES.get(key, key)
        if not any(dotted == a or dotted.startswith(a + ".") for a in allowed):
            raise ConfigError(f"{key}: not changeable here (only {', '.join(allowed)}: changing other settings would "
                              "not continue the same run)")
        _set_path(data, dotted, value)
    return from_dict(data)


def _merged(base: dict, top: dict) -> dict:
    """base with top's keys laid over it, section by section."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        if isinstance(value, dict) and isinstance(below, (int, float)) and not isinstance(below, bool):
            below = {"start": below, "end": below}  # a constant ramp, so part of it can be overridden
        out[key] = _merged(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return out


def _requested(path: str | Path | None, overrides: list[str] | tuple[str, ...], dotted: str) -> str | None:
    """The text value a config file and overrides give `dotted` (the last one wins; None when neither does), read
    before the recipe is chosen; a broken file or override is left for load_config to report."""
    value = None
    if path is not None and Path(path).is_file():
        try:
            node = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            value = node if isinstance(node, str) and node else None
        except (UnicodeDecodeError, yaml.YAMLError):
            pass
    for text in overrides:
        key, _, raw = text.partition("=")
        if ALIASES.get(key.strip(), key.strip()) == dotted and raw.strip():
            value = raw.strip()
    return value


def requested_model(path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> str:
    """The model the config file and overrides ask for ("builtin" when neither does)."""
    return _requested(path, overrides, "guidance.model") or "builtin"


def requested_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> str | None:
    """The recipe a config file or an override names (a config printed by show-config names the one it used)."""
    return _requested(path, overrides, "recipe")


SDF_ONLY_DEFAULTS = ("reg.eikonal", "field.redistance_every")
GRID_ONLY_DEFAULTS = ("optim.freeze_density_from",)


def _field_specific_defaults_off(data: dict) -> None:
    """Turn the defaults that only an sdf grid can take (SDF_ONLY_DEFAULTS: off is 0) off for any other field,
    and those that only a grid can take (GRID_ONLY_DEFAULTS: off is None) off for a hash grid.

    A config that picks field.geometry density or field.kind hashgrid would otherwise fail validation on
    defaults it never set. Set explicitly, they are kept, and validation says why they do not fit.
    """
    field = data.get("field")
    field = field if isinstance(field, dict) else {}
    grid = field.get("kind", FieldConfig.kind) == "grid"
    off = {} if grid else dict.fromkeys(GRID_ONLY_DEFAULTS)
    if not (grid and field.get("geometry", FieldConfig.geometry) == "sdf"):
        off |= dict.fromkeys(SDF_ONLY_DEFAULTS, 0)
    for dotted, value in off.items():
        section, key = dotted.split(".")
        node = data.setdefault(section, {})
        if isinstance(node, dict):
            node.setdefault(key, value)


# -------------------------------------------------------------------------------------- validation


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _check_range(pair: tuple[float, float], key: str, lo: float, hi: float) -> None:
    _check(lo <= pair[0] <= pair[1] <= hi, key, f"need {lo} <= low <= high <= {hi}, got {list(pair)}")


def _check_between(value: float | None, key: str, lo: float, hi: float, allow_none: bool = False) -> None:
    """lo <= value <= hi (None passes only when allowed): every numeric key has a range."""
    if value is None and allow_none:
        return
    _check(value is not None and lo <= value <= hi, key, f"must be in [{lo:g}, {hi:g}]{' or null' if allow_none else ''}, "
           f"got {value!r}")


MAX_STEPS = 10_000_000


def _check_ramp_steps(ramp: Ramp, key: str) -> None:
    _check(MAX_STEPS >= ramp.end_step >= ramp.start_step >= 0, key, f"need 0 <= start_step <= end_step <= {MAX_STEPS}")


def _check_ramp_range(ramp: Ramp, key: str, lo: float, hi: float) -> None:
    """Both ends of the ramp in [lo, hi], and its steps in order."""
    _check(lo <= ramp.start <= hi and lo <= ramp.end <= hi, key, f"must be in [{lo}, {hi}]")
    _check_ramp_steps(ramp, key)


def validate(cfg: RunConfig, require_prompt: bool = True) -> None:
    """Range checks that types alone cannot express."""
    if require_prompt:
        _check(bool(cfg.prompt.strip()), "prompt", "empty; say what to make, e.g. sds generate \"a red cube\"")
    _check(len(cfg.prompt) <= MAX_PROMPT_CHARS, "prompt", f"longer than {MAX_PROMPT_CHARS} characters")
    _check(_is_utf8(cfg.prompt), "prompt", "is not valid UTF-8 text")
    _check(0 < cfg.steps <= MAX_STEPS, "steps", f"must be in [1, {MAX_STEPS}], got {cfg.steps}")
    _check(0 <= cfg.seed < 2**63, "seed", f"must be in [0, 2**63), got {cfg.seed}")
    _check_between(cfg.checkpoint_every, "checkpoint_every", 1, MAX_STEPS)
    _check_between(cfg.preview_every, "preview_every", 1, MAX_STEPS)
    g = cfg.guidance
    _check(bool(g.model.strip()), "guidance.model", "empty")
    _check(0 < g.guidance_scale.start <= 1000 and 0 < g.guidance_scale.end <= 1000, "guidance.guidance_scale",
           "must be in (0, 1000]")
    _check_ramp_steps(g.guidance_scale, "guidance.guidance_scale")
    _check(0 <= g.t_min < g.t_max <= 1, "guidance.t_min", f"need 0 <= t_min < t_max <= 1, got {g.t_min}, {g.t_max}")
    _check(g.t_min < g.t_max_end <= g.t_max, "guidance.t_max_end", "need t_min < t_max_end <= t_max")
    _check(g.t_min_start is None or g.t_min <= g.t_min_start < g.t_max, "guidance.t_min_start",
           "need t_min <= t_min_start < t_max")
    _check(0 <= g.anneal_fraction <= 1, "guidance.anneal_fraction", "must be in [0, 1]")
    _check(g.grad_clip is None or 0 < g.grad_clip <= 1e6, "guidance.grad_clip", "must be in (0, 1e6] or null")
    _check_between(g.perp_neg_weight, "guidance.perp_neg_weight", 0, 100)
    for entry in g.loras:
        path, weight = split_lora(entry)
        _check(math.isfinite(weight) and -10 <= weight <= 10, "guidance.loras", f"weight of {path} must be in [-10, 10]")
    _check(not g.perp_neg or g.view_dependent_prompts, "guidance.perp_neg",
           "needs guidance.view_dependent_prompts=true (its negatives are the other views' prompts)")
    c = cfg.camera
    _check_between(c.batch_size, "camera.batch_size", 1, 256)
    _check_between(c.light_jitter_deg, "camera.light_jitter_deg", 0, 180)
    _check_between(c.front_half_width_deg, "camera.front_half_width_deg", 0, 180)
    _check_between(c.back_half_width_deg, "camera.back_half_width_deg", 0, 180)
    _check_between(c.overhead_elevation_deg, "camera.overhead_elevation_deg", 0, 90)
    _check_range(c.radius_range, "camera.radius_range", 1e-3, 1e3)
    _check_range(c.elevation_range_deg, "camera.elevation_range_deg", -90, 90)
    _check_range(c.low_elevation_range_deg, "camera.low_elevation_range_deg", -90, 90)
    _check_ramp_range(c.low_view_fraction, "camera.low_view_fraction", 0, 1)
    _check_range(c.fov_range_deg, "camera.fov_range_deg", 1, 179)
    _check(c.radius_range[0] > cfg.field.bound * 3**0.5, "camera.radius_range",
           f"cameras must stay outside the scene cube (radius > {cfg.field.bound * 3**0.5:.2f})")
    f = cfg.field
    _check(0 < f.bound <= 100, "field.bound", "must be in (0, 100]")
    _check(4 <= f.grid_resolution <= 512, "field.grid_resolution", "must be in [4, 512]")
    _check(all(2 <= c <= 512 for c in f.coarse_resolutions), "field.coarse_resolutions", "each must be in [2, 512]")
    _check(1 <= f.hash_levels <= 32, "field.hash_levels", "must be in [1, 32]")
    _check_between(f.hash_features_per_level, "field.hash_features_per_level", 1, 8)
    _check(10 <= f.hash_log2_table_size <= 24, "field.hash_log2_table_size", "must be in [10, 24]")
    _check_between(f.hash_base_resolution, "field.hash_base_resolution", 1, 4096)
    _check_between(f.hash_max_resolution, "field.hash_max_resolution", 2, 8192)
    _check(f.hash_base_resolution < f.hash_max_resolution, "field.hash_base_resolution", "must be < hash_max_resolution")
    _check_between(f.hidden_dim, "field.hidden_dim", 1, 1024)
    _check(0 < f.blob_radius <= 2 * f.bound, "field.blob_radius", "must be in (0, 2 * field.bound]")
    _check_between(f.blob_density, "field.blob_density", 0, 100)
    _check(0.01 <= f.albedo_init <= 0.99, "field.albedo_init", "must be in [0.01, 0.99]")
    _check(0 <= f.init_noise <= 10, "field.init_noise", "must be in [0, 10]")
    _check(0 < f.normal_eps <= f.bound, "field.normal_eps", "must be in (0, field.bound]")
    _check(0 < f.sdf_beta <= f.bound, "field.sdf_beta", "must be in (0, field.bound]")
    _check(0 < f.sdf_scale <= 10, "field.sdf_scale", "must be in (0, 10]")
    r = cfg.render
    _check(8 <= r.resolution <= 1024, "render.resolution", "must be in [8, 1024]")
    _check(2 <= r.samples_per_ray <= 1024, "render.samples_per_ray", "must be in [2, 1024]")
    _check(0 <= r.ambient <= 1, "render.ambient", "must be in [0, 1]")
    _check_between(r.albedo_warmup_steps, "render.albedo_warmup_steps", 0, MAX_STEPS)
    _check(0 <= r.textureless_prob <= 1, "render.textureless_prob", "must be in [0, 1]")
    _check(0 <= r.random_background_prob <= 1, "render.random_background_prob", "must be in [0, 1]")
    _check(0 <= r.normal_gradient_scale <= 1, "render.normal_gradient_scale", "must be in [0, 1]")
    _check_ramp_range(r.color_depth_gradient_scale, "render.color_depth_gradient_scale", 0, 1)
    o = cfg.optim
    for name in ("lr_grid", "lr_mlp", "lr_background"):
        _check(0 < getattr(o, name) <= 10, f"optim.{name}", "must be in (0, 10]")
    _check(o.grad_clip_norm is None or 0 < o.grad_clip_norm <= 1e6, "optim.grad_clip_norm",
           f"must be in (0, 1e6] or null (0 would zero every gradient, < 0 train the wrong way), got {o.grad_clip_norm}")
    _check(0 < o.lr_final_fraction <= 1, "optim.lr_final_fraction", "must be in (0, 1]")
    _check(0 <= o.lr_decay_start < 1, "optim.lr_decay_start", "must be in [0, 1)")
    _check(0 < o.texture_lr_scale <= 100, "optim.texture_lr_scale", "must be in (0, 100]")
    _check_ramp_range(o.texture_density_step, "optim.texture_density_step", 0, 1)
    _check_between(o.freeze_density_from, "optim.freeze_density_from", 0, MAX_STEPS, allow_none=True)
    _check(o.freeze_density_from is None or cfg.field.kind == "grid", "optim.freeze_density_from",
           "needs field.kind grid (a hash grid shares its features between density and albedo); "
           "set optim.freeze_density_from=null")
    for name in ("orientation", "opacity_sparsity", "opacity_entropy", "density_tv", "eikonal"):
        ramp = getattr(cfg.reg, name)
        _check(0 <= ramp.start <= 1e6 and 0 <= ramp.end <= 1e6, f"reg.{name}", "weights must be in [0, 1e6]")
        _check_ramp_steps(ramp, f"reg.{name}")
    orientation = cfg.reg.orientation
    _check(r.normal_gradient_scale > 0 or max(orientation.start, orientation.end) == 0, "reg.orientation",
           "penalises normals, which reach the density only with render.normal_gradient_scale > 0; set one of them")
    tv = cfg.reg.density_tv
    _check(cfg.field.kind == "grid" or max(tv.start, tv.end) == 0, "reg.density_tv",
           "needs field.kind grid (a hash grid has no voxel neighbours)")
    eikonal = cfg.reg.eikonal
    _check(max(eikonal.start, eikonal.end) == 0 or (cfg.field.kind == "grid" and cfg.field.geometry == "sdf"),
           "reg.eikonal", "needs field.geometry sdf and field.kind grid (it keeps the grid's sdf channel a distance)")
    _check_ramp_range(f.redistance_blur_voxels, "field.redistance_blur_voxels", 0, 4)
    _check_between(f.redistance_every, "field.redistance_every", 0, MAX_STEPS)
    _check(f.redistance_every == 0 or (f.kind == "grid" and f.geometry == "sdf"), "field.redistance_every",
           "needs field.geometry sdf and field.kind grid (it rewrites the grid's sdf channel)")
    e = cfg.export
    _check(16 <= e.resolution <= 1024, "export.resolution", "must be in [16, 1024]")
    _check(0 <= e.bake_depth <= 0.5 * cfg.field.bound, "export.bake_depth", "must be in [0, field.bound / 2]")
    _check(e.threshold is None or 0 < e.threshold <= 1e6, "export.threshold", "must be in (0, 1e6] or null")
    _check(bool(e.formats) and set(e.formats) <= {"glb", "obj", "ply"}, "export.formats",
           f"choose from glb, obj, ply; got {list(e.formats)}")
    _check(0 <= e.min_component_fraction < 1, "export.min_component_fraction", "must be in [0, 1)")
    _check(0 <= e.blur_voxels <= 8, "export.blur_voxels", "must be in [0, 8]")
    _check_between(e.max_faces, "export.max_faces", 0, 100_000_000)
    _check_between(e.smooth_iterations, "export.smooth_iterations", 0, 1000)
    _check(16 <= e.texture_size <= 8192, "export.texture_size", "must be in [16, 8192]")
    _check_between(e.roughness, "export.roughness", 0, 1)
    _check_between(e.video_frames, "export.video_frames", 1, 3600)
    _check_between(e.video_resolution, "export.video_resolution", 16, 4096)
    _check_between(e.preview_resolution, "export.preview_resolution", 16, 4096)
    _check_between(e.chunk_size, "export.chunk_size", 1024, 2**24)


def split_lora(entry: str) -> tuple[str, float]:
    """"PATH:WEIGHT" -> (PATH, WEIGHT); a plain PATH has weight 1 (a ':' not followed by a number is the path's)."""
    path, sep, weight = entry.rpartition(":")
    if sep:
        try:
            return path, float(weight)
        except ValueError:
            pass
    return entry, 1.0


def _is_utf8(text: str) -> bool:
    """False for text holding lone surrogates (bytes that were not UTF-8 on the command line)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -------------------------------------------------------------------------------------- saving


def to_dict(cfg: Any) -> dict:
    """Plain dict (lists, numbers, text) that `_build` turns back into an equal object."""
    def plain(value: Any) -> Any:
        if isinstance(value, Ramp) and value == constant(value.start):
            return value.start  # a constant is written as the number it is read from
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(data: dict) -> RunConfig:
    cfg = _build(RunConfig, data)
    validate(cfg, require_prompt=False)
    return cfg
