"""Recipes: shipped YAML files of the method, chosen from the model or by --recipe, layered under the user's
config file and overrides, and recorded in the run."""

from __future__ import annotations

import dataclasses
import signal

import pytest

from sds.cli import main
from sds.config import ConfigError, RunConfig, load_config, requested_model
from sds.recipes import choose_recipe, load_recipe, shipped_names


def test_every_shipped_recipe_loads_and_resolves_to_a_valid_config():
    assert {"builtin", "dreamfusion", "dreamfusion-if"} <= set(shipped_names())
    for name in shipped_names():
        recipe = load_recipe(name)
        assert recipe.description and recipe.chosen_for
        assert load_config(None, [], prompt="a red cube", recipe=name).recipe == name


def test_the_builtin_recipe_is_the_tuned_defaults():
    cfg = load_config(None, [], prompt="a red cube", recipe="builtin")
    assert dataclasses.replace(cfg, recipe="") == load_config(None, [], prompt="a red cube")
    assert dataclasses.replace(cfg, recipe="", prompt="") == RunConfig()


def test_the_readme_shows_the_builtin_recipe_s_stages_as_they_are():
    """The README's recipe block is a copy for reading; it must not drift from the shipped file."""
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(stages:\n.*?)```", readme, re.S)
    assert block, "README.md has no ```yaml block starting with stages:"
    assert yaml.safe_load(block.group(1))["stages"] == load_recipe("builtin").config["stages"]


@pytest.mark.parametrize("model,requested,expected", [
    ("builtin", None, "builtin"),
    ("stabilityai/stable-diffusion-2-1-base", None, "dreamfusion"),
    ("/models/deepfloyd-if", None, "dreamfusion"),
    ("stabilityai/stable-diffusion-2-1-base", "builtin", "builtin"),  # asked for: always wins
])
def test_the_recipe_is_chosen_from_the_model_unless_asked_for(model, requested, expected):
    name, reason = choose_recipe(model, requested)
    assert name == expected and reason


def test_deepfloyd_if_gets_its_own_recipe_from_its_folder_or_its_hub_name(tiny_if_model, tiny_sdxl_model):
    assert choose_recipe(str(tiny_if_model), None)[0] == "dreamfusion-if"  # model_index.json: IFPipeline
    assert choose_recipe("DeepFloyd/IF-I-XL-v1.0", None)[0] == "dreamfusion-if"  # not cached: by its name
    assert choose_recipe(str(tiny_sdxl_model), None)[0] == "dreamfusion"
    assert choose_recipe("DeepFloyd/IF-II-L-v1.0", None)[0] == "dreamfusion"  # stage II is not a text-to-image base
    name, reason = choose_recipe(str(tiny_if_model), None)
    assert "DeepFloyd IF stage I" in reason


def test_a_cached_hub_id_is_judged_by_its_model_index_not_its_name(tmp_path, monkeypatch, tiny_if_model):
    """A hub id in the local cache (huggingface_hub's layout: refs/main names a snapshot) is read like a folder."""
    import shutil

    from huggingface_hub import constants

    commit = "0" * 40
    repo = tmp_path / "models--some-org--tiny-if"
    shutil.copytree(tiny_if_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert choose_recipe("some-org/tiny-if", None)[0] == "dreamfusion-if"
    assert choose_recipe("some-org/uncached", None)[0] == "dreamfusion"


def test_the_if_recipe_is_dreamfusion_at_threestudio_s_if_guidance_and_if_s_own_size():
    """threestudio's dreamfusion-if.yaml: guidance_scale 20 in its convention (ours + 1: our 21), 64-px renders."""
    dreamfusion = load_config(None, [], prompt="a", recipe="dreamfusion")
    deepfloyd = load_config(None, [], prompt="a", recipe="dreamfusion-if")
    assert [s.guidance_scale for s in deepfloyd.stages] == [21.0, 21.0] and deepfloyd.render.resolution == 64
    same_stages = [dataclasses.replace(s, guidance_scale=21.0) for s in dreamfusion.stages]
    assert dataclasses.replace(dreamfusion, recipe="dreamfusion-if", stages=tuple(same_stages),
                               render=dataclasses.replace(dreamfusion.render, resolution=64)) == deepfloyd


def test_a_recipe_extends_another_and_may_not_extend_itself(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("description: d\nfor: f\nextends: dreamfusion\nconfig:\n  render: {resolution: 96}\n")
    cfg = load_config(None, [], prompt="a", recipe=str(mine))
    assert cfg.render.resolution == 96 and cfg.render.samples_per_ray == 128 and cfg.steps == 5000  # dreamfusion's
    assert load_config(None, ["render.resolution=32"], prompt="a", recipe=str(mine)).render.resolution == 32
    (tmp_path / "child.yaml").write_text("description: d\nfor: f\nextends: mine.yaml\nconfig: {steps: 7}\n")
    child = load_config(None, [], prompt="a", recipe=str(tmp_path / "child.yaml"))  # a path: from its own folder
    assert child.steps == 7 and child.render.resolution == 96
    mine.write_text("description: d\nfor: f\nextends: child.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(None, [], prompt="a", recipe=str(mine))


def test_a_stable_diffusion_model_no_longer_gets_the_builtin_prior_s_recipe():
    """The bug this fixes: model=SD without --config silently ran the built-in prior's tuned method."""
    overrides = ["model=stabilityai/stable-diffusion-2-1-base"]
    name, _ = choose_recipe(requested_model(None, overrides), None)
    cfg = load_config(None, overrides, prompt="a castle", recipe=name)
    assert cfg.recipe == "dreamfusion" and cfg.guidance.weighting == "one_minus_alpha_bar"
    assert [s.guidance_scale for s in cfg.stages] == [100, 100]  # not the prior's 50 -> 25
    assert cfg.guidance.t_start == (0.02, 0.98) and cfg.field.geometry.kind == "density"


def test_the_model_is_read_from_the_config_file_and_the_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("guidance:\n  model: /models/sd\n")
    assert requested_model(path, []) == "/models/sd"
    assert requested_model(path, ["model=builtin"]) == "builtin"  # an override comes last
    assert requested_model(None, ["guidance.model=/x"]) == "/x"
    assert requested_model(None, []) == "builtin"


def test_layers_recipe_then_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 700\nrender:\n  resolution: 64\n")
    cfg = load_config(path, ["render.resolution=96"], prompt="a", recipe="dreamfusion")
    assert cfg.steps == 700  # the file over the recipe's 5000
    assert cfg.render.resolution == 96  # the override over the file
    assert cfg.render.samples_per_ray == 128  # the recipe over the defaults, where nothing else speaks


def test_a_users_recipe_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("description: fewer steps\nfor: me\nconfig:\n  steps: 90\n  stages:\n    - {guidance_scale: 30}\n")
    cfg = load_config(None, [], prompt="a", recipe=str(path))
    assert cfg.recipe == str(path.resolve()) and cfg.steps == 90 and cfg.stages[0].guidance_scale == 30
    assert load_config(None, [f"recipe={cfg.recipe}"], prompt="a", recipe=cfg.recipe) == cfg  # found again


@pytest.mark.parametrize("text,words", [
    ("description: x\nconfig:\n  stpes: 3\n", "did you mean 'steps'"),
    ("- a\n- b\n", "must be a mapping"),
    ("description: x\nstages: []\n", "unknown entries"),
    ("config: [1,\n", "not valid YAML"),
])
def test_a_broken_recipe_file_is_one_config_error(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(None, [], prompt="a", recipe=str(path))


def test_an_unknown_recipe_name_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'dreamfusion'"):
        load_recipe("dreamfusoin")


def _main(args, capsys):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    code = main(args)
    for s, h in handlers.items():
        signal.signal(s, h)
    return code, capsys.readouterr()


def test_sds_recipes_lists_every_shipped_recipe_in_one_line_each(capsys):
    code, out = _main(["recipes"], capsys)
    lines = out.out.splitlines()
    assert code == 0 and all(any(line.startswith(name) for line in lines) for name in shipped_names())
    assert any(line.startswith("dreamfusion-if ") and "DeepFloyd IF stage I" in line for line in lines)


def test_show_config_names_the_if_recipe_for_an_if_folder(capsys, tiny_if_model):
    import yaml

    code, out = _main(["show-config", f"model={tiny_if_model}"], capsys)
    printed = yaml.safe_load(out.out)
    assert code == 0 and printed["recipe"] == "dreamfusion-if" and printed["stages"][0]["guidance_scale"] == 21.0


def test_show_config_says_which_recipe_resolved(capsys):
    import yaml

    code, out = _main(["show-config", "model=/models/sd"], capsys)
    assert code == 0 and yaml.safe_load(out.out)["recipe"] == "dreamfusion"
    code, out = _main(["show-config", "--recipe", "builtin", "model=/models/sd"], capsys)
    assert code == 0 and yaml.safe_load(out.out)["recipe"] == "builtin"


def test_a_printed_config_reloads_with_the_recipe_it_names(tmp_path, capsys):
    import yaml

    code, out = _main(["show-config", "model=/models/sd", "steps=77"], capsys)
    path = tmp_path / "printed.yaml"
    path.write_text(out.out)
    code, again = _main(["show-config", "--config", str(path)], capsys)
    assert code == 0 and yaml.safe_load(again.out) == yaml.safe_load(out.out)
