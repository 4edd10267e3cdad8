from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sds.config import (
    ConfigError,
    DensityGeometry,
    GridEncoding,
    HashGridEncoding,
    LrScale,
    Ramp,
    RunConfig,
    SdfGeometry,
    from_dict,
    load_config,
    requested_model,
    to_dict,
    to_yaml,
)

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_file_loads_and_round_trips(path):
    cfg = load_config(path, prompt="a red cube")
    assert from_dict(yaml.safe_load(to_yaml(cfg))) == cfg


def test_overrides_win_and_aliases_work():
    cfg = load_config(CONFIGS[0], ["steps=7", "model=/x/y", "guidance.t_anneal_until=0.5", "seed=2"], prompt="a cube")
    assert (cfg.steps, cfg.guidance.model, cfg.guidance.t_anneal_until, cfg.seed) == (7, "/x/y", 0.5, 2)


@pytest.mark.parametrize("override,key,words", [
    ("stpes=3", "stpes", "did you mean 'steps'"),
    ("guidance.t_anneal_unti=3", "guidance.t_anneal_unti", "did you mean 'guidance.t_anneal_until'"),
    ("steps=-5", "steps", "[1, 10000000]"),
    ("steps=1.5", "steps", "integer"),
    ("guidance.t_anneal_until=.inf", "guidance.t_anneal_until", "finite"),
    ("guidance.t_anneal_until=.nan", "guidance.t_anneal_until", "finite"),
    ("export.preview_resolution=0", "export.preview_resolution", "[16, 4096]"),
    ("seed=9223372036854775808", "seed", "2**63"),
    ("guidance.t_start=[0.99, 0.5]", "guidance.t_start", "low < high"),
    ("guidance.t_end=[0.5]", "guidance.t_end", "2 values"),
    ("field.encoding.coarse_resolutions=[1, 8]", "field.encoding.coarse_resolutions", "[2, 512]"),
    ("guidance.weighting=cubic", "guidance.weighting", "one of"),
    ("render.samples_per_ray=true", "render.samples_per_ray", "integer"),
    ("camera.radius_range=[3, 2]", "camera.radius_range", "low <= high"),
    ("camera.radius_range=[1.0, 2.0]", "camera.radius_range", "outside the scene"),
    ("export.formats=[glb, fbx]", "export.formats", "glb, obj, ply"),
    ("field.albedo_init=1", "field.albedo_init", "[0.01, 0.99]"),
    ("field.encoding=voxels", "field.encoding.kind", "one of grid, hashgrid"),
    ("field.encoding.kind=[]", "field.encoding.kind", "one of grid, hashgrid"),  # was a TypeError (fuzz)
    ("field.encoding={kind: grid, levels: 3}", "field.encoding.levels", "unknown key of the grid kind"),
    ("field.geometry={kind: density, beta: 0.1}", "field.geometry.beta", "unknown key of the density kind"),
    ("field.geometry.beta=0", "field.geometry.beta", "(0, field.bound]"),
    ("field.geometry.scale=-1", "field.geometry.scale", "(0, 10]"),
    ("field.geometry.redistance_every=-1", "field.geometry.redistance_every", "[0, 1e+07]"),
    ("reg.orientation={start: 1}", "reg.orientation", "end"),
    ("reg.opacity_entropy={start: 0, end: 1, start_at: 0.5, end_at: 0.1}", "reg.opacity_entropy", "start_at <= end_at"),
    ("reg.opacity_entropy={start: 0, end: 1, end_at: 2}", "reg.opacity_entropy", "fractions of the run"),
    ("render.normal_gradient_scale=1.5", "render.normal_gradient_scale", "[0, 1]"),
    ("render.color_depth_gradient_scale=-0.5", "render.color_depth_gradient_scale", "[0, 1]"),
    ("stages=[]", "stages", "at least one stage"),
    ("stages=[{until: 0.5}]", "stages", "must end at until: 1.0"),
    ("stages=[{name: a, until: 0.6}, {name: b, until: 0.4}, {name: c}]", "stages", "end after the one before"),
    ("stages=[{name: a, until: 0.5}, {name: a}]", "stages", "names must differ"),
    ("stages=[{guidance_scale: 0}]", "stages[0] (main).guidance_scale", "(0, 1000]"),
    ("stages=[{lr_scale: {albedo: -1}}]", "stages[0] (main).lr_scale.albedo", "[0, 100]"),
    ("stages=[{lr_scale: {geomtry: 1}}]", "stages.lr_scale.geomtry", "did you mean 'stages.lr_scale.geometry'"),
    ("stages=[{shading: shiny}]", "stages.shading", "one of albedo, lit"),
    ("stages=[{geometry_growth: -0.5}]", "stages[0] (main).geometry_growth", "[0, 100]"),
    ("stages=[{max_reach: 0}]", "stages[0] (main).max_reach", "(0, 1] (a share of the scene box)"),
    ("stages=[{max_reach: 1.2}]", "stages[0] (main).max_reach", "(0, 1] (a share of the scene box)"),
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


def test_ramp_yaml_forms():
    cfg = load_config(None, ["reg.orientation=0.5", "reg.opacity_entropy={start: 0, end: 2, end_at: 0.5}",
                             "render.normal_gradient_scale=1"], prompt="x")
    assert cfg.reg.orientation == Ramp(0.5, 0.5)
    assert cfg.reg.opacity_entropy == Ramp(0.0, 2.0, 0.0, 0.5)


def test_field_variants_are_types_picked_by_kind_each_with_only_its_own_keys():
    cfg = load_config(None, ["field.encoding=hashgrid", "field.encoding.levels=4"], prompt="x")
    assert cfg.field.encoding == HashGridEncoding(levels=4)
    cfg = load_config(None, ["field.geometry.kind=density", "field.geometry.blob_density=2"], prompt="x")
    assert cfg.field.geometry == DensityGeometry(blob_density=2.0)
    assert load_config(None, ["field.encoding.resolution=32"], prompt="x").field.encoding == GridEncoding(resolution=32)
    assert load_config(None, [], prompt="x").field.geometry == SdfGeometry()  # the defaults: an sdf grid


def test_numbers_with_an_exponent_but_no_dot_are_numbers(tmp_path):
    # PyYAML reads 1e-3 (YAML 1.1) as text; a user typing it means the number, in an override or a file.
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr_grid: 3e-2\nreg:\n  opacity_entropy: {start: 0, end: 1E+3, end_at: 0.5}\n")
    cfg = load_config(path, ["field.geometry.beta=5e-2", "optim.lr_mlp=1e-3"], prompt="x")
    assert cfg.optim.lr_grid == 0.03 and cfg.field.geometry.beta == 0.05
    assert cfg.optim.lr_mlp == 0.001 and cfg.reg.opacity_entropy.end == 1000.0
    with pytest.raises(ConfigError, match="^optim.lr_grid: expected a number, got '3e-2x'"):
        load_config(None, ["optim.lr_grid=3e-2x"], prompt="x")
    with pytest.raises(ConfigError, match="^steps: expected an integer"):  # integers stay integers
        load_config(None, ["steps=1e3"], prompt="x")


def test_saved_config_has_no_class_paths():
    text = to_yaml(RunConfig(prompt="a red cube"))
    assert "!!python" not in text and "sds." not in text
    assert to_dict(RunConfig())["camera"]["radius_range"] == [2.3, 2.7]
    # a constant ramp is written as its number, a real ramp as its mapping; both read back equal
    assert to_dict(RunConfig())["reg"]["orientation"] == 0.0
    assert to_dict(RunConfig())["reg"]["opacity_entropy"] == {"start": 0.0, "end": 1000.0, "start_at": 0.1,
                                                               "end_at": 0.3}
    assert to_dict(RunConfig())["field"]["encoding"]["kind"] == "grid"


def test_show_config_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from sds.cli import main; main(['show-config', 'steps=3']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "steps: 3" in out.stdout
    assert "# shape    0-0" in out.stdout  # the stage table, as YAML comments (the output still loads)
    assert yaml.safe_load(out.stdout)["steps"] == 3


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


def test_a_hash_grid_with_the_default_sdf_loads_and_is_logged_not_redistanced(caplog):
    import logging

    from sds.build import build_field

    cfg = load_config(None, ["field.encoding=hashgrid", "field.encoding.levels=2"], prompt="a red cube")
    with caplog.at_level(logging.INFO):
        build_field(cfg.field)
    assert "not reset and has no eikonal term" in caplog.text
    from sds.schedule import plan

    assert not any(plan(cfg, s).redistance for s in range(cfg.steps)) and plan(cfg, 0).reg_weights["eikonal"] == 0


def test_stable_diffusion_config_keeps_the_density_field():
    """configs/stable-diffusion.yaml names the model; the DreamFusion-style recipe chosen for it gives the rest."""
    from sds.recipes import choose_recipe

    path = Path(__file__).parents[2] / "configs" / "stable-diffusion.yaml"
    recipe, _ = choose_recipe(requested_model(path, []), None)
    cfg = load_config(path, [], prompt="a red cube", recipe=recipe)
    assert cfg.field.geometry.kind == "density" and cfg.field.encoding.kind == "hashgrid"
    assert (cfg.field.albedo_init, cfg.guidance.t_start) == (0.5, (0.02, 0.98))  # the prior's tuning is not assumed
    assert [s.guidance_scale for s in cfg.stages] == [100.0, 100.0]
    assert [s.lr_scale for s in cfg.stages] == [LrScale(), LrScale()]  # no texture stage slowing the geometry
    assert cfg.render.normal_gradient_scale == 1 and cfg.render.color_depth_gradient_scale == 1


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


def test_stage_values_have_ranges():
    for bad in ("stages=[{guidance_scale: 1e30}]", "stages=[{textureless_prob: .nan}]",
                "stages=[{lr_scale: {geometry: .inf}}]", "stages=[{until: -1e30}]"):
        with pytest.raises(ConfigError) as e:
            load_config(None, [bad], prompt="a red cube")
        assert str(e.value).startswith("stages") and "\n" not in str(e.value)


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
    cfg = load_config(None, ["reg.opacity_entropy.end=50"], prompt="a red cube", recipe="dreamfusion")
    assert cfg.reg.opacity_entropy == Ramp(0.0, 50.0)


def test_every_user_facing_key_has_a_one_line_docstring_and_the_list_fits_on_a_screen():
    import ast
    import dataclasses
    import inspect

    from sds.config import schema

    documented = set()
    for node in ast.walk(ast.parse(inspect.getsource(schema))):
        if isinstance(node, ast.ClassDef):
            for stmt, after in zip(node.body, node.body[1:]):
                if isinstance(stmt, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value,
                                                                                                   ast.Constant):
                    documented.add(f"{node.name}.{stmt.target.id}")
    user_keys = []
    for entry in schema.USER_SECTIONS:
        section, _, key = entry.rpartition(".")
        value = getattr(RunConfig(), entry) if not section else None
        if dataclasses.is_dataclass(value):  # a whole section
            user_keys += [(type(value).__name__, f.name) for f in dataclasses.fields(value)]
        else:
            user_keys.append((type(getattr(RunConfig(), section)).__name__ if section else "RunConfig", key))
    missing = [f"{c}.{k}" for c, k in user_keys if f"{c}.{k}" not in documented]
    assert not missing
    assert 20 <= len(user_keys) <= 40  # one screen


