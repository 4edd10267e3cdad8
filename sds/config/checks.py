"""Range checks that types alone cannot express: every numeric key has a range, stages are in order, and a
setting that needs another (Perp-Neg needs view prompts) says so. Each failure is a one-line ConfigError
naming the key."""

from __future__ import annotations

import math

from sds.config.schema import GridEncoding, Ramp, RunConfig, SdfGeometry
from sds.errors import ConfigError

MAX_STEPS = 10_000_000
MAX_PROMPT_CHARS = 1000


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def check_between(value: float | None, key: str, lo: float, hi: float, allow_none: bool = False) -> None:
    """lo <= value <= hi (None passes only when allowed)."""
    if value is None and allow_none:
        return
    check(value is not None and lo <= value <= hi, key,
          f"must be in [{lo:g}, {hi:g}]{' or null' if allow_none else ''}, got {value!r}")


def _check_pair(pair: tuple[float, float], key: str, lo: float, hi: float) -> None:
    check(lo <= pair[0] <= pair[1] <= hi, key, f"need {lo} <= low <= high <= {hi}, got {list(pair)}")


def _check_ramp(ramp: Ramp, key: str, lo: float, hi: float) -> None:
    check(lo <= ramp.start <= hi and lo <= ramp.end <= hi, key, f"must be in [{lo:g}, {hi:g}]")
    check(0 <= ramp.start_at <= ramp.end_at <= 1, key, "need 0 <= start_at <= end_at <= 1 (fractions of the run)")


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


def validate(cfg: RunConfig, require_prompt: bool = True) -> None:
    if require_prompt:
        check(bool(cfg.prompt.strip()), "prompt", "empty; say what to make, e.g. sds generate \"a red cube\"")
    check(len(cfg.prompt) <= MAX_PROMPT_CHARS, "prompt", f"longer than {MAX_PROMPT_CHARS} characters")
    check(_is_utf8(cfg.prompt), "prompt", "is not valid UTF-8 text")
    check(0 < cfg.steps <= MAX_STEPS, "steps", f"must be in [1, {MAX_STEPS}], got {cfg.steps}")
    check(0 <= cfg.seed < 2**63, "seed", f"must be in [0, 2**63), got {cfg.seed}")
    check_between(cfg.checkpoint_every, "checkpoint_every", 1, MAX_STEPS)
    check_between(cfg.preview_every, "preview_every", 1, MAX_STEPS)
    _check_stages(cfg)
    _check_guidance(cfg)
    c = cfg.camera
    check_between(c.batch_size, "camera.batch_size", 1, 256)
    _check_pair(c.radius_range, "camera.radius_range", 1e-3, 1e3)
    _check_pair(c.elevation_range_deg, "camera.elevation_range_deg", -90, 90)
    _check_pair(c.fov_range_deg, "camera.fov_range_deg", 1, 179)
    check(c.radius_range[0] > cfg.field.bound * 3**0.5, "camera.radius_range",
          f"cameras must stay outside the scene cube (radius > {cfg.field.bound * 3**0.5:.2f})")
    _check_field(cfg)
    r = cfg.render
    check_between(r.resolution, "render.resolution", 8, 1024)
    check_between(r.samples_per_ray, "render.samples_per_ray", 2, 1024)
    check_between(r.random_background_prob, "render.random_background_prob", 0, 1)
    check_between(r.normal_gradient_scale, "render.normal_gradient_scale", 0, 1)
    check_between(r.color_depth_gradient_scale, "render.color_depth_gradient_scale", 0, 1)
    for name in ("lr_grid", "lr_mlp", "lr_background"):
        check(0 < getattr(cfg.optim, name) <= 10, f"optim.{name}", "must be in (0, 10]")
    _check_ramp(cfg.reg.orientation, "reg.orientation", 0, 1e6)
    _check_ramp(cfg.reg.opacity_entropy, "reg.opacity_entropy", 0, 1e6)
    _check_ramp(cfg.reg.normal_roughness, "reg.normal_roughness", 0, 1e6)
    check(r.normal_gradient_scale > 0 or max(cfg.reg.orientation.start, cfg.reg.orientation.end) == 0,
          "reg.orientation", "penalises normals, which reach the geometry only with render.normal_gradient_scale > 0; "
          "set one of them")
    e = cfg.export
    check_between(e.resolution, "export.resolution", 16, 1024)
    check(e.threshold is None or 0 < e.threshold <= 1e6, "export.threshold", "must be in (0, 1e6] or null")
    check(bool(e.formats) and set(e.formats) <= {"glb", "obj", "ply"}, "export.formats",
          f"choose from glb, obj, ply; got {list(e.formats)}")
    check_between(e.max_faces, "export.max_faces", 0, 100_000_000)
    check_between(e.texture_size, "export.texture_size", 16, 8192)
    check_between(e.preview_resolution, "export.preview_resolution", 16, 4096)


def _check_stages(cfg: RunConfig) -> None:
    check(len(cfg.stages) >= 1, "stages", "need at least one stage")
    ends = [s.until for s in cfg.stages]
    check(all(a < b for a, b in zip(ends, ends[1:])) and 0 < ends[0], "stages",
          f"each stage must end after the one before (until: {ends})")
    check(ends[-1] == 1.0, "stages", f"the last stage must end at until: 1.0 (the end of the run), got {ends[-1]}")
    names = [s.name for s in cfg.stages]
    check(len(set(names)) == len(names), "stages", f"stage names must differ, got {names}")
    for i, s in enumerate(cfg.stages):
        key = f"stages[{i}] ({s.name})"
        check_between(s.textureless_prob, f"{key}.textureless_prob", 0, 1)
        check(0 < s.guidance_scale <= 1000, f"{key}.guidance_scale", f"must be in (0, 1000], got {s.guidance_scale}")
        for group in ("geometry", "albedo", "background"):
            check_between(getattr(s.lr_scale, group), f"{key}.lr_scale.{group}", 0, 100)
        check_between(s.geometry_growth, f"{key}.geometry_growth", 0, 100)
        check(0 < s.max_reach <= 1, f"{key}.max_reach", f"must be in (0, 1] (a share of the scene box), got {s.max_reach}")


def _check_guidance(cfg: RunConfig) -> None:
    g = cfg.guidance
    check(bool(g.model.strip()), "guidance.model", "empty")
    for name, pair in (("t_start", g.t_start), ("t_end", g.t_end)):
        check(0 <= pair[0] < pair[1] <= 1, f"guidance.{name}", f"need 0 <= low < high <= 1, got {list(pair)}")
    check_between(g.t_anneal_until, "guidance.t_anneal_until", 0, 1)
    check_between(g.perp_neg_weight, "guidance.perp_neg_weight", 0, 100)
    for entry in g.loras:
        path, weight = split_lora(entry)
        check(math.isfinite(weight) and -10 <= weight <= 10, "guidance.loras", f"weight of {path} must be in [-10, 10]")
    check(not g.perp_neg or g.view_dependent_prompts, "guidance.perp_neg",
          "needs guidance.view_dependent_prompts=true (its negatives are the other views' prompts)")


def _check_field(cfg: RunConfig) -> None:
    f = cfg.field
    check(0 < f.bound <= 100, "field.bound", "must be in (0, 100]")
    check(0 < f.blob_radius <= 2 * f.bound, "field.blob_radius", "must be in (0, 2 * field.bound]")
    check(0.01 <= f.albedo_init <= 0.99, "field.albedo_init", "must be in [0.01, 0.99]")
    enc, geo = f.encoding, f.geometry
    if isinstance(enc, GridEncoding):
        check_between(enc.resolution, "field.encoding.resolution", 4, 512)
        check(all(2 <= c <= 512 for c in enc.coarse_resolutions), "field.encoding.coarse_resolutions",
              "each must be in [2, 512]")
    else:
        check_between(enc.levels, "field.encoding.levels", 1, 32)
        check_between(enc.log2_table_size, "field.encoding.log2_table_size", 10, 24)
        check_between(enc.max_resolution, "field.encoding.max_resolution", 9, 8192)
        check_between(enc.hidden_dim, "field.encoding.hidden_dim", 1, 1024)
    if isinstance(geo, SdfGeometry):
        check(0 < geo.beta <= f.bound, "field.geometry.beta", "must be in (0, field.bound]")
        check(0 < geo.scale <= 10, "field.geometry.scale", "must be in (0, 10]")
        check_between(geo.redistance_every, "field.geometry.redistance_every", 0, MAX_STEPS)
        check_between(geo.eikonal, "field.geometry.eikonal", 0, 1e6)
    else:
        check_between(geo.blob_density, "field.geometry.blob_density", 0, 100)
