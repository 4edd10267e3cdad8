"""plan(cfg, step): everything that varies over a run, checked at the default schedule's boundaries."""

from __future__ import annotations

import math

import pytest

from sds.config import load_config
from sds.schedule import lr_factor, plan


@pytest.fixture(scope="module")
def default():
    return load_config(None, [], prompt="a red cube")


def test_the_default_two_stage_schedule_at_its_boundaries(default):
    assert default.steps == 450
    first, last_shape, first_texture, last = (plan(default, s) for s in (0, 149, 150, 449))
    assert (first.stage, last_shape.stage, first_texture.stage, last.stage) == ("shape", "shape", "texture", "texture")
    assert (first.shading, last_shape.shading, first_texture.shading) == ("albedo", "albedo", "lit")
    assert first_texture.textureless_prob == 0  # grey views would train only the (nearly frozen) density
    assert (last_shape.density_step, first_texture.density_step, last.density_step) == (1.0, 0.3, 0.3)
    # The guidance scale switches one step after the stage (Ramp(50, 25, 150, 151): 50 at step 150 itself).
    assert [plan(default, s).guidance_scale for s in (0, 150, 151, 449)] == [50, 50, 25, 25]
    # The entropy ramp rises over the shape stage: 0 until step 50, 1000 from step 150.
    assert [plan(default, s).reg_weights["opacity_entropy"] for s in (0, 50, 100, 150, 449)] == [0, 0, 500, 1000, 1000]
    assert all(plan(default, s).reg_weights["eikonal"] == 0.1 for s in (0, 150, 449))


def test_redistancing_follows_every_25th_step_and_stops_in_the_texture_stage(default):
    after = [s + 1 for s in range(default.steps) if plan(default, s).redistance_blur_voxels is not None]
    assert after == [25, 50, 75, 100, 125, 150]  # step 149 ends the shape stage and still redistances


def test_t_range_anneals_over_a_fraction_of_the_run_so_doubling_steps_stretches_it(default):
    doubled = load_config(None, ["steps=900"], prompt="a red cube")
    assert plan(default, 0).t_range == pytest.approx((0.3, 0.98))
    assert plan(default, 56).t_range == pytest.approx(plan(doubled, 112).t_range)  # half-way through the anneal
    end = default.guidance.anneal_fraction * default.steps
    assert plan(default, math.ceil(end)).t_range == pytest.approx((0.02, 0.5))
    assert plan(doubled, math.ceil(end)).t_range[1] > 0.5  # still annealing in the longer run


def test_learning_rate_scale_is_the_decay_times_the_texture_stage_scale():
    cfg = load_config(None, ["steps=100", "optim.lr_final_fraction=0.2", "optim.lr_decay_start=0.5",
                             "optim.texture_lr_scale=3", "optim.freeze_density_from=50"], prompt="a")
    assert plan(cfg, 49).lr_scale == 1.0
    assert plan(cfg, 50).lr_scale == pytest.approx(3.0)
    assert plan(cfg, 99).lr_scale == pytest.approx(3 * 0.2)
    assert lr_factor(cfg, 99) == pytest.approx(0.2)


def test_plan_is_pure(default):
    assert plan(default, 123) == plan(default, 123)


def test_learning_rate_decay_is_constant_then_half_a_cosine_to_the_final_fraction():
    cfg = load_config(None, ["steps=50", "optim.lr_final_fraction=0.2", "optim.lr_decay_start=0.5"], prompt="a")
    assert lr_factor(cfg, 0) == 1.0 and lr_factor(cfg, 25) == 1.0  # constant through the first half
    assert lr_factor(cfg, 37) == pytest.approx(0.6)  # half-way down the cosine: midway between 1 and 0.2
    assert lr_factor(cfg, 49) == pytest.approx(0.2)  # the last step
    values = [lr_factor(cfg, s) for s in range(50)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_factor(load_config(None, ["steps=50"], prompt="a"), 49) == 1.0  # default: constant
