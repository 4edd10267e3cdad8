from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sds.config import (
    ConfigError,
    Ramp,
    RunConfig,
    constant,
    from_dict,
    load_config,
    requested_model,
    to_dict,
    to_yaml,
)

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_file_loads_and_round_trips(path):
    cfg = load_config(path, prompt="a red cube")
    assert from_dict(yaml.safe_load(to_yaml(cfg))) == cfg


def test_overrides_win_and_aliases_work():
    cfg = load_config(CONFIGS[0], ["steps=7", "model=/x/y", "guidance.guidance_scale=3", "seed=2"], prompt="a cube")
    assert (cfg.steps, cfg.guidance.model, cfg.guidance.guidance_scale, cfg.seed) == (7, "/x/y", constant(3.0), 2)


@pytest.mark.parametrize("override,key,words", [
    ("stpes=3", "stpes", "did you mean 'steps'"),
    ("guidance.guidance_sclae=3", "guidance.guidance_sclae", "did you mean 'guidance.guidance_scale'"),
    ("steps=-5", "steps", "[1, 10000000]"),
    ("steps=1.5", "steps", "integer"),
    ("guidance.guidance_scale=0", "guidance.guidance_scale", "(0, 1000]"),
    ("guidance.guidance_scale=.inf", "guidance.guidance_scale", "finite"),
    ("guidance.guidance_scale=.nan", "guidance.guidance_scale", "finite"),
    ("optim.grad_clip_norm=-1", "optim.grad_clip_norm", "wrong way"),
    ("optim.grad_clip_norm=0", "optim.grad_clip_norm", "zero every gradient"),
    ("export.chunk_size=0", "export.chunk_size", "[1024,"),
    ("export.preview_resolution=0", "export.preview_resolution", "[16, 4096]"),
    ("seed=9223372036854775808", "seed", "2**63"),
    ("guidance.t_min=0.99", "guidance.t_min", "t_min < t_max"),
    ("guidance.t_min_start=0.99", "guidance.t_min_start", "t_min_start < t_max"),
    ("field.coarse_resolutions=[1, 8]", "field.coarse_resolutions", "[2, 512]"),
    ("guidance.weighting=cubic", "guidance.weighting", "one of"),
    ("render.samples_per_ray=true", "render.samples_per_ray", "integer"),
    ("camera.radius_range=[3, 2]", "camera.radius_range", "low <= high"),
    ("camera.radius_range=[1.0, 2.0]", "camera.radius_range", "outside the scene"),
    ("export.formats=[glb, fbx]", "export.formats", "glb, obj, ply"),
    ("export.blur_voxels=-1", "export.blur_voxels", "[0, 8]"),
    ("field.albedo_init=1", "field.albedo_init", "[0.01, 0.99]"),
    ("optim.texture_density_step=2", "optim.texture_density_step", "[0, 1]"),
    ("optim.texture_density_step={start: 0, end: 1.5, end_step: 10}", "optim.texture_density_step", "[0, 1]"),
    ("field.kind=voxels", "field.kind", "one of"),
    ("reg.orientation={start: 1}", "reg.orientation", "end"),
])
def test_bad_values_name_the_key_in_one_line(override, key, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override], prompt="a red cube")
    message = str(e.value)
    assert message.startswith(key + ":") and words in message and "\n" not in message


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_rejected(prompt):
    with pytest.raises(ConfigError, match="^prompt: empty"):
        load_config(None, [], prompt=prompt)


def test_overlong_prompt_rejected():
    with pytest.raises(ConfigError, match="^prompt: longer than"):
        load_config(None, [], prompt="a" * 5000)


def test_ramp_endpoints_and_yaml_forms():
    r = Ramp(0.0, 1.0, 10, 20)
    assert (r.at(0), r.at(10), r.at(15), r.at(20), r.at(99)) == (0.0, 0.0, 0.5, 1.0, 1.0)
    cfg = load_config(None, ["reg.opacity_sparsity=0.5", "reg.opacity_entropy={start: 0, end: 2, end_step: 4}"],
                      prompt="x")
    assert cfg.reg.opacity_sparsity == Ramp(0.5, 0.5)
    assert cfg.reg.opacity_entropy.at(2) == 1.0


def test_numbers_with_an_exponent_but_no_dot_are_numbers(tmp_path):
    # PyYAML reads 1e-3 (YAML 1.1) as text; a user typing it means the number, in an override or a file.
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr_grid: 3e-2\nreg:\n  opacity_entropy: {start: 0, end: 1E+3, end_step: 4}\n")
    cfg = load_config(path, ["guidance.guidance_scale=5e1", "reg.opacity_sparsity=1e-3"], prompt="x")
    assert cfg.optim.lr_grid == 0.03 and cfg.guidance.guidance_scale == constant(50.0)
    assert cfg.reg.opacity_sparsity == Ramp(0.001, 0.001) and cfg.reg.opacity_entropy.end == 1000.0
    with pytest.raises(ConfigError, match="^optim.lr_grid: expected a number, got '3e-2x'"):
        load_config(None, ["optim.lr_grid=3e-2x"], prompt="x")
    with pytest.raises(ConfigError, match="^steps: expected an integer"):  # integers stay integers
        load_config(None, ["steps=1e3"], prompt="x")


def test_saved_config_has_no_class_paths():
    text = to_yaml(RunConfig(prompt="a red cube"))
    assert "!!python" not in text and "sds." not in text
    assert to_dict(RunConfig())["camera"]["radius_range"] == [2.3, 2.7]
    # a constant ramp is written as its number, a real ramp as its mapping; both read back equal
    assert to_dict(RunConfig())["reg"]["eikonal"] == 0.1
    assert to_dict(RunConfig())["reg"]["opacity_entropy"] == {"start": 0.0, "end": 1000.0, "start_step": 50,
                                                               "end_step": 150}


def test_show_config_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from sds.cli import main; main(['show-config', 'steps=3']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "steps: 3" in out.stdout


def test_cli_takes_overrides_on_either_side_of_flags():
    import subprocess
    import sys

    from sds.cli import build_parser, main  # noqa: F401

    out = subprocess.run([sys.executable, "-m", "sds.cli", "show-config", "steps=3", "--prompt", "x", "seed=4"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "steps: 3" in out.stdout and "seed: 4" in out.stdout


def test_orientation_penalty_needs_normal_gradients():
    with pytest.raises(ConfigError, match="^reg.orientation: penalises normals"):
        load_config(None, ["render.normal_gradient_scale=0", "reg.orientation=0.01"], prompt="a red cube")
    with pytest.raises(ConfigError, match="^reg.orientation: penalises normals"):  # the default scale is 0
        load_config(None, ["reg.orientation=0.01"], prompt="a red cube")
    assert load_config(None, ["render.normal_gradient_scale=0.5", "reg.orientation=0.01"], prompt="a red cube")


def test_density_tv_needs_a_grid_field():
    with pytest.raises(ConfigError, match="^reg.density_tv: needs field.kind grid"):
        load_config(None, ["field.kind=hashgrid", "reg.density_tv=1"], prompt="a red cube")
    assert load_config(None, ["reg.density_tv=1"], prompt="a red cube").reg.density_tv.end == 1


def test_eikonal_needs_an_sdf_grid_field():
    for extra in (["field.geometry=density"], ["field.geometry=sdf", "field.kind=hashgrid"]):
        with pytest.raises(ConfigError, match="^reg.eikonal: needs field.geometry sdf and field.kind grid"):
            load_config(None, [*extra, "reg.eikonal=0.1"], prompt="a red cube")
    cfg = load_config(None, ["field.geometry=sdf", "reg.eikonal=0.1"], prompt="a red cube")
    assert cfg.field.geometry == "sdf" and cfg.reg.eikonal.end == 0.1
    with pytest.raises(ConfigError, match="^field.geometry: "):
        load_config(None, ["field.geometry=mesh"], prompt="a red cube")


def test_redistancing_needs_an_sdf_grid_field():
    for extra in (["field.geometry=density"], ["field.geometry=sdf", "field.kind=hashgrid"]):
        with pytest.raises(ConfigError, match="^field.redistance_every: needs field.geometry sdf and field.kind grid"):
            load_config(None, [*extra, "field.redistance_every=25"], prompt="a red cube")
    assert load_config(None, ["field.geometry=sdf", "field.redistance_every=25"],
                       prompt="a red cube").field.redistance_every == 25
    assert load_config(None, [], prompt="a red cube").field.redistance_every == 25  # the default


@pytest.mark.parametrize("field", [["field.geometry=density"], ["field.kind=hashgrid"]])
def test_sdf_only_defaults_are_off_for_other_fields(field, tmp_path):
    """The eikonal and redistancing defaults need an sdf grid; picking another field turns them off, not an error."""
    defaults = load_config(None, [], prompt="a red cube")
    assert defaults.field.geometry == "sdf" and defaults.reg.eikonal.end > 0 and defaults.field.redistance_every > 0
    cfg = load_config(None, field, prompt="a red cube")
    assert cfg.reg.eikonal.end == 0 and cfg.field.redistance_every == 0
    yaml_file = tmp_path / "run.yaml"  # a YAML file's choice of field does the same
    key, value = field[0].split("=")
    yaml_file.write_text(f"field:\n  {key.split('.')[1]}: {value}\n")
    cfg = load_config(yaml_file, [], prompt="a red cube")
    assert cfg.reg.eikonal.end == 0 and cfg.field.redistance_every == 0
    with pytest.raises(ConfigError, match="^reg.eikonal: needs field.geometry sdf"):  # set explicitly: still checked
        load_config(None, [*field, "reg.eikonal=0.1"], prompt="a red cube")


def test_grid_only_defaults_are_off_for_a_hash_grid():
    """The texture stage's density freeze needs a grid field; a density grid keeps it, a hash grid drops it."""
    assert load_config(None, [], prompt="a red cube").optim.freeze_density_from == 150
    assert load_config(None, ["field.geometry=density"], prompt="a red cube").optim.freeze_density_from == 150
    assert load_config(None, ["field.kind=hashgrid"], prompt="a red cube").optim.freeze_density_from is None
    with pytest.raises(ConfigError, match="^optim.freeze_density_from: needs field.kind grid"):  # explicit: checked
        load_config(None, ["field.kind=hashgrid", "optim.freeze_density_from=5"], prompt="a red cube")


def test_default_guidance_scale_drops_once_the_texture_stage_begins():
    """50 through the shape stage, 25 from the texture stage's second step on (docs/tuning.md, sweep 16): moving
    one stage boundary without the ramp fails here."""
    cfg = load_config(None, [], prompt="a red cube")
    scale, shape_stage = cfg.guidance.guidance_scale, cfg.render.albedo_warmup_steps
    assert cfg.optim.freeze_density_from == shape_stage
    assert all(scale.at(step) == 50.0 for step in range(shape_stage + 1))
    assert all(scale.at(step) == 25.0 for step in range(shape_stage + 1, cfg.steps))


def test_stable_diffusion_config_keeps_the_density_field():
    """configs/stable-diffusion.yaml names the model; the DreamFusion-style recipe chosen for it gives the rest."""
    from sds.recipes import choose_recipe

    path = Path(__file__).parents[1] / "configs" / "stable-diffusion.yaml"
    recipe, _ = choose_recipe(requested_model(path, []), None)
    cfg = load_config(path, [], prompt="a red cube", recipe=recipe)
    assert cfg.field.geometry == "density" and cfg.field.kind == "hashgrid"
    assert cfg.reg.eikonal.end == 0 and cfg.field.redistance_every == 0 and cfg.optim.freeze_density_from is None
    assert (cfg.field.albedo_init, cfg.guidance.anneal_fraction) == (0.5, 0.5)  # the prior's tuning is not assumed
    assert cfg.guidance.guidance_scale == constant(100.0)
    assert cfg.render.normal_gradient_scale == 1 and cfg.render.color_depth_gradient_scale.at(0) == 1


@pytest.mark.parametrize("override,words", [
    ("field.sdf_beta=0", "^field.sdf_beta: must be in \\(0, field.bound\\]"),
    ("field.sdf_scale=-1", "^field.sdf_scale: must be in \\(0, 10\\]"),
    ("field.redistance_every=-1", "^field.redistance_every: must be in \\[0, 1e\\+07\\]"),
    ("field.redistance_blur_voxels=5", "^field.redistance_blur_voxels: must be in \\[0, 4\\]"),
    ('field.redistance_blur_voxels={"start":1,"end":-1,"start_step":0,"end_step":100}',
     "^field.redistance_blur_voxels: must be in \\[0, 4\\]"),
    ('field.redistance_blur_voxels={"start":1,"end":0,"start_step":200,"end_step":100}',
     "^field.redistance_blur_voxels: need 0 <= start_step <= end_step"),
    ("optim.lr_final_fraction=0", "^optim.lr_final_fraction: must be in \\(0, 1\\]"),
    ("optim.lr_decay_start=1", "^optim.lr_decay_start: must be in \\[0, 1\\)"),
    ("optim.freeze_density_from=-1", "^optim.freeze_density_from: must be in \\[0, 1e\\+07\\] or null"),
    ("optim.texture_lr_scale=0", "^optim.texture_lr_scale: must be in \\(0, 100\\]"),
    ("render.color_depth_gradient_scale=-0.5", "^render.color_depth_gradient_scale: must be in \\[0, 1\\]"),
    ('render.color_depth_gradient_scale={"start":0,"end":1.5,"start_step":0,"end_step":100}',
     "^render.color_depth_gradient_scale: must be in \\[0, 1\\]"),
    ('render.color_depth_gradient_scale={"start":0,"end":1,"start_step":200,"end_step":100}',
     "^render.color_depth_gradient_scale: need 0 <= start_step <= end_step"),
    ("render.normal_gradient_scale=1.5", "^render.normal_gradient_scale: must be in \\[0, 1\\]"),
    ("render.normal_gradient_scale=-0.1", "^render.normal_gradient_scale: must be in \\[0, 1\\]"),
    ("camera.low_view_fraction=1.5", "^camera.low_view_fraction: must be in \\[0, 1\\]"),
    ('camera.low_view_fraction={"start":0,"end":0.25,"start_step":200,"end_step":100}',
     "^camera.low_view_fraction: need 0 <= start_step <= end_step"),
    ('reg.opacity_entropy={"start":0,"end":1,"start_step":5,"end_step":1}',
     "^reg.opacity_entropy: need 0 <= start_step <= end_step"),
    ("camera.low_elevation_range_deg=[0,-10]", "^camera.low_elevation_range_deg: need -90 <= low <= high <= 90"),
])
def test_optim_and_render_option_ranges_are_checked(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, [override], prompt="a red cube")


def test_frozen_density_needs_a_grid_field():
    with pytest.raises(ConfigError, match="^optim.freeze_density_from: needs field.kind grid"):
        load_config(None, ["field.kind=hashgrid", "optim.freeze_density_from=5"], prompt="a red cube")


def _numeric_keys(node: dict, prefix: str = ""):
    """(dotted key, default) of every number, list of numbers or null-able number in the config."""
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _numeric_keys(value, key + ".")
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            yield key, value
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            yield key, value


NUMERIC_KEYS = [k for k in _numeric_keys(to_dict(RunConfig())) if k[0] != "guidance.revision"]


@pytest.mark.parametrize("key,default", NUMERIC_KEYS, ids=[k for k, _ in NUMERIC_KEYS])
def test_every_numeric_key_has_a_range(key, default):
    """Huge, hugely negative and non-finite values of every numeric key fail at load, naming the key."""
    whole = isinstance(default, int) or (isinstance(default, list) and isinstance(default[0], int))
    extremes = [10**20, -(10**20)] if whole else [1e30, -1e30, ".nan", ".inf", "-.inf"]
    for value in extremes:
        text = f"[{', '.join([str(value)] * len(default))}]" if isinstance(default, list) else str(value)
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"{key}={text}"], prompt="a red cube")
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("key", ["guidance.guidance_scale", "reg.eikonal", "optim.texture_density_step"])
def test_ramp_steps_have_a_range(key):
    with pytest.raises(ConfigError, match="end_step"):
        load_config(None, [f"{key}={{start: 1, end: 1, start_step: 0, end_step: {10**12}}}"], prompt="a red cube")


def test_lora_paths_are_saved_absolute_and_not_needed_to_reopen_a_config(tmp_path, monkeypatch):
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["lora=style.safetensors:0.7"], prompt="a red cube")
    assert cfg.guidance.loras == (f"{lora}:0.7",)
    lora.unlink()  # moved away: a saved config still reopens (export does not need the LoRA) ...
    assert from_dict(yaml.safe_load(to_yaml(cfg))) == cfg
    with pytest.raises(ConfigError, match="no such LoRA file"):  # ... but a new run needs it
        load_config(None, ["lora=style.safetensors"], prompt="a red cube")


def test_lora_override_with_a_guidance_section_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("guidance:\n")
    (tmp_path / "a.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="guidance"):
        load_config(path, [f"lora={tmp_path / 'a.safetensors'}", "guidance=3"], prompt="a red cube")


def test_part_of_a_ramp_overrides_a_recipes_constant():
    cfg = load_config(None, ["guidance.guidance_scale.end=50"], prompt="a red cube", recipe="dreamfusion")
    assert cfg.guidance.guidance_scale == Ramp(100.0, 50.0)
