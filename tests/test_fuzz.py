"""Fuzzing the command line (hypothesis): whatever values and prompts a user types, the CLI either succeeds or
says what is wrong in one line with a non-zero exit, and writes nothing before the config is valid."""

from __future__ import annotations

import math
import signal
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sds.cli import _choose_recipe, main
from sds.config import RunConfig, from_dict, load_config, to_dict


def _leaf_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        keys += _leaf_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"]
    return keys


# The default config's keys, plus the variants' own (a bare kind or a key of the other kind) and misspellings.
KEYS = [*_leaf_keys(to_dict(RunConfig())), "seed", "steps", "model", "no_such_key", "guidance.nope", "camera",
        "field.encoding", "field.geometry", "field.encoding.levels", "field.encoding.max_resolution",
        "field.geometry.blob_density", "field.geometry.activation", "stages.lr_scale"]
SCALARS = st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=12), st.none())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3)).map(
    lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip())
OVERRIDES = st.lists(st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=4)
PROMPTS = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


def _run(capsys, args):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = main(args)
    except SystemExit as e:  # argparse exits for its own errors
        code = e.code
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.startswith("sds:")]


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(prompt=PROMPTS, overrides=OVERRIDES)
def test_show_config_succeeds_and_reloads_or_fails_in_one_line(prompt, overrides, capsys):
    code, out, err = _run(capsys, ["show-config", "--prompt", prompt, "--", *overrides])
    if code == 0:  # the printed config is the resolved one, and reloads to the same object
        printed = from_dict(yaml.safe_load(out))
        assert printed.prompt == prompt
        recipe, _ = _choose_recipe(SimpleNamespace(config=None, overrides=overrides, recipe=None))
        assert printed == load_config(None, overrides, prompt=prompt, require_prompt=False, recipe=recipe)
    else:
        assert code == 2 and len(err) == 1, (code, err)


@FUZZ
@given(prompt=PROMPTS, overrides=OVERRIDES)
def test_generate_rejects_bad_input_in_one_line_and_writes_nothing(prompt, overrides, capsys, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fuzz")
    args = ["generate", "--no-progress", "--", prompt, *overrides, f"output_dir={out_dir}", "model=./no/such/model"]
    code, _, err = _run(capsys, args)
    assert code in (1, 2) and len(err) == 1, (code, err)  # a valid config still needs a model: one line either way
    assert not any(out_dir.iterdir())


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_never_reach_a_run(value):
    from sds.config import ConfigError

    for key in ("guidance.t_anneal_until", "optim.lr_grid", "field.geometry.beta", "render.random_background_prob",
                "reg.opacity_entropy.end"):
        with pytest.raises(ConfigError, match="finite"):
            load_config(None, [f"{key}={yaml.safe_dump(value).split()[0]}"], prompt="a red cube")
