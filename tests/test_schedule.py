"""plan(cfg, step): everything that varies over a run, checked at the stage boundaries and with steps doubled."""

from __future__ import annotations

import pytest

from sds.config import LrScale, Ramp, load_config
from sds.schedule import at_step, plan, ramp_at, stage_bounds, stage_table, t_range_at


@pytest.fixture(scope="module")
def default():
    return load_config(None, [], prompt="a red cube")


def test_the_default_three_stage_schedule_at_its_boundaries(default):
    assert default.steps == 500
    first, last_shape, first_texture, last_texture, first_colour, last = (
        plan(default, s) for s in (0, 149, 150, 449, 450, 499))
    assert [p.stage for p in (first, last_shape, first_texture, last_texture, first_colour, last)] == [
        "shape", "shape", "texture", "texture", "colour", "colour"]
    assert (first.shading, last_shape.shading, first_texture.shading, first_colour.shading) == (
        "albedo", "albedo", "lit", "lit")
    assert first_texture.textureless_prob == 0  # grey views would train only the slowed geometry
    assert (last_shape.lr_scale, first_texture.lr_scale, first_colour.lr_scale) == (
        LrScale(), LrScale(geometry=0.3), LrScale(geometry=0.0, albedo=8.0))
    assert [plan(default, s).guidance_scale for s in (0, 149, 150, 449, 450, 499)] == [50, 50, 25, 25, 2, 2]
    # The entropy ramp rises over the shape stage: 0 until step 50 (1/10), 1000 from step 150 (3/10).
    assert [plan(default, s).reg_weights["opacity_entropy"] for s in (0, 50, 100, 150, 499)] == [0, 0, 500, 1000, 1000]
    assert all(plan(default, s).reg_weights["eikonal"] == 0.1 for s in (0, 150, 499))


@pytest.mark.parametrize("steps", [500, 1000, 100])
def test_doubling_or_shrinking_steps_scales_every_stage_and_ramp(steps):
    cfg = load_config(None, [f"steps={steps}"], prompt="a red cube")
    boundary, last = round(steps * 0.3), round(steps * 0.9)
    assert [(s.name, begin, end) for s, begin, end in stage_bounds(cfg)] == [
        ("shape", 0, boundary), ("texture", boundary, last), ("colour", last, steps)]
    assert plan(cfg, boundary - 1).stage == "shape" and plan(cfg, boundary).stage == "texture"
    assert plan(cfg, boundary - 1).guidance_scale == 50 and plan(cfg, boundary).guidance_scale == 25
    assert plan(cfg, last).stage == "colour" and plan(cfg, last).lr_scale.geometry == 0
    assert plan(cfg, round(steps / 10)).reg_weights["opacity_entropy"] == 0
    assert plan(cfg, boundary).reg_weights["opacity_entropy"] == 1000


def test_redistancing_follows_every_25th_step_and_stops_in_the_texture_stage(default):
    after = [s + 1 for s in range(default.steps) if plan(default, s).redistance]
    assert after == [25, 50, 75, 100, 125, 150]  # step 149 ends the shape stage and still redistances


def test_t_range_anneals_over_a_fraction_of_the_run_so_doubling_steps_stretches_it(default):
    doubled = load_config(None, ["steps=1000"], prompt="a red cube")
    assert t_range_at(default, 0) == pytest.approx((0.3, 0.98))
    assert t_range_at(default, 56) == pytest.approx(t_range_at(doubled, 112))  # half-way through the anneal
    lo, hi = t_range_at(default, 56)  # 56 / 112.5 of the way from (0.3, 0.98) to (0.02, 0.5)
    assert (lo, hi) == pytest.approx((0.3 - 0.28 * 56 / 112.5, 0.98 - 0.48 * 56 / 112.5))
    assert t_range_at(default, 113) == pytest.approx((0.02, 0.5))  # 0.225 of 500 = 112.5
    assert t_range_at(doubled, 113)[1] > 0.5  # still annealing in the longer run


def test_a_fraction_lands_on_the_nearest_step():
    assert (at_step(0.3333, 450), at_step(0.1111, 450), at_step(0.2, 5000), at_step(1.0, 7)) == (150, 50, 1000, 7)


def test_ramp_at_its_endpoints_and_midpoint():
    r = Ramp(0.0, 1.0, 0.1, 0.2)
    assert [ramp_at(r, s, 100) for s in (0, 10, 15, 20, 99)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert ramp_at(Ramp(3.0, 3.0), 50, 100) == 3.0


def test_a_users_stages_and_the_stage_table():
    cfg = load_config(None, ["steps=100", "stages=[{name: a, until: 0.5, guidance_scale: 7}, "
                             "{name: b, shading: albedo, lr_scale: {albedo: 0}, geometry_growth: 0.25,"
                             " max_reach: 0.8}]"], prompt="x")
    assert [plan(cfg, s).stage for s in (0, 49, 50, 99)] == ["a", "a", "b", "b"]
    assert plan(cfg, 50).lr_scale.albedo == 0 and plan(cfg, 50).guidance_scale == 100
    assert (plan(cfg, 49).geometry_growth, plan(cfg, 50).geometry_growth) == (1.0, 0.25)
    assert (plan(cfg, 49).max_reach, plan(cfg, 50).max_reach) == (1.0, 0.8)
    lines = stage_table(cfg).splitlines()
    assert lines[0].split()[6:8] == ["growth", "reach"]
    assert lines[1].split()[:4] == ["a", "0-49", "lit", "7"] and lines[2].split()[:3] == ["b", "50-99", "albedo"]
    assert lines[1].split()[9:11] == ["1", "1"] and lines[2].split()[9:11] == ["0.25", "0.8"]  # after "1 / 1 / 1"


def test_plan_is_pure(default):
    assert plan(default, 123) == plan(default, 123)
