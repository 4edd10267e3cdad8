"""The automatic iso-level: ray maxima through the grid and the best silhouette cut."""

from __future__ import annotations

import math

import pytest
import torch

from sds.export import EmptySceneError
from sds.export.grid import sample_density_grid
from sds.export.iso_level import auto_iso_level, best_silhouette_level, ray_max_density
from sds.export.views import silhouette_cameras
from sds.lattice import grid_axis


def test_best_level_separates_inside_from_outside():
    # Pixels inside the true silhouette have ray maxima 8..10, outside 0..3: the cut lies between 3 and 8.
    max_density = torch.tensor([10.0, 9.0, 8.0, 3.0, 1.0, 0.0, 0.0])
    target = torch.tensor([True, True, True, False, False, False, False])
    level, iou = best_silhouette_level(max_density, target)
    assert iou == 1.0
    assert level == pytest.approx(math.sqrt(8.0 * 3.0))


def test_best_level_never_splits_tied_pixels():
    max_density = torch.tensor([5.0, 5.0, 5.0, 1.0])
    target = torch.tensor([True, False, False, False])
    level, iou = best_silhouette_level(max_density, target)
    assert 1.0 < level <= 5.0 and iou == pytest.approx(1 / 3)


def test_all_zero_grid_is_an_empty_scene():
    with pytest.raises(EmptySceneError):
        best_silhouette_level(torch.zeros(10), torch.ones(10, dtype=torch.bool))


def test_ray_max_density_of_a_sphere_is_its_profile_at_the_impact_parameter(fakes):
    sphere = fakes.SdfField(fakes.sphere_sdf(0.5))
    grid = sample_density_grid(sphere.density, 1.0, 48, 65536, show_progress=False)
    cameras = silhouette_cameras(1.0, n_views=2)
    maxima = ray_max_density(grid, 1.0, cameras, 32, chunk_size=20_000)
    assert maxima.shape == (2, 32, 32)
    # The silhouette {max >= PEAK/2} is the sphere's projected disc: compare pixel counts (area).
    covered = (maxima >= fakes.PEAK / 2).float().mean(dim=(1, 2))
    render = fakes.sphere_render_fn(0.5)(cameras, 32, 32)["opacity"].mean(dim=(1, 2))
    torch.testing.assert_close(covered, render, atol=0.01, rtol=0)
    assert maxima.max() <= fakes.PEAK * (1 + 1e-5) and maxima[:, 0, 0].max() < 1e-3  # corners see empty space


def test_grid_indexing_matches_world_axes():
    # density = x + 2y + 3z identifies each axis; node [i, j, k] must sit at (axis[i], axis[j], axis[k]).
    grid = sample_density_grid(lambda p: p @ torch.tensor([1.0, 2.0, 3.0]), 1.0, 5, 7, show_progress=False)
    axis = grid_axis(1.0, 5)
    assert grid[4, 0, 2] == pytest.approx(float(axis[4] + 2 * axis[0] + 3 * axis[2]))


def test_auto_level_asks_only_for_silhouettes(fakes):
    calls = []
    sphere = fakes.sphere_render_fn(0.5)

    def recording(cameras, height, width, shaded=True):
        calls.append(shaded)
        return sphere(cameras, height, width)

    r = 64
    axis = torch.linspace(-1, 1, r)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    grid = torch.exp(20 * (0.5 - (x**2 + y**2 + z**2).sqrt()))  # density 1 at the sphere's surface
    level, iou = auto_iso_level(grid, 1.0, recording, chunk_size=1 << 16)
    assert calls and not any(calls)  # every silhouette view was rendered unlit
    assert iou > 0.9 and 0.3 < level < 3


def test_unlit_render_has_the_same_opacity_and_skips_the_normals():
    from sds.build import build_scene
    from sds.commands import nerf_render_fn
    from sds.config import load_config

    cfg = load_config(None, ["field.encoding.resolution=16", "render.samples_per_ray=16"], prompt="a")
    field, _, renderer = build_scene(cfg, torch.device("cpu"))
    queried = []
    field.normals = lambda points: queried.append(len(points)) or torch.zeros_like(points)  # count normal queries
    render = nerf_render_fn(renderer)
    cams = silhouette_cameras(1.0, 2)
    unlit = render(cams, 16, 16, shaded=False)
    assert not queried
    lit = render(cams, 16, 16)
    assert queried and torch.equal(lit["opacity"], unlit["opacity"])
