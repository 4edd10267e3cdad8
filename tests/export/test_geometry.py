"""Export of analytic shapes: the mesh matches the known surface, floaters go, empty scenes fail cleanly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from sds.export import EmptySceneError, export_result
from sds.export.surface import clean_mesh, extract_surface


def load_merged(path) -> trimesh.Trimesh:
    """Load a mesh file and weld its UV-seam copies back together (positions only)."""
    mesh = trimesh.load(path, force="mesh", process=False)
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)


def test_sphere_is_watertight_with_the_right_radius(tmp_path, fakes, make_config):
    field = fakes.SdfField(fakes.sphere_sdf(0.5))
    out = export_result(
        field, 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", make_config(), show_progress=False
    )
    mesh = load_merged(out.files["glb"])
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert mesh.is_watertight and mesh.volume > 0  # closed, outward-facing
    assert len(mesh.split(only_watertight=False)) == 1
    assert radius.mean() == pytest.approx(0.5, rel=0.02)
    assert np.abs(radius - 0.5).max() < 0.02 * 0.5
    assert out.faces_after_cleanup == out.faces_before_cleanup  # nothing to clean
    assert set(out.timings_s) >= {"grid", "marching_cubes", "cleanup", "texture", "write", "preview"}


def test_box_extents(tmp_path, fakes, make_config):
    half = (0.4, 0.25, 0.3)
    field = fakes.SdfField(fakes.box_sdf(half))
    cfg = make_config(formats=("ply",), resolution=64)
    out = export_result(field, 1.0, fakes.sphere_render_fn(0.3), tmp_path / "r", cfg, show_progress=False)
    mesh = load_merged(out.files["ply"])
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.extents, 2 * np.array(half), rtol=0.02)
    np.testing.assert_allclose(mesh.bounds.mean(0), 0.0, atol=0.01)


def test_floater_is_dropped(tmp_path, fakes, make_config):
    sdf = fakes.union_sdf(fakes.sphere_sdf(0.5), fakes.sphere_sdf(0.08, center=(0.75, -0.7, 0.6)))
    out = export_result(
        fakes.SdfField(sdf),
        1.0,
        fakes.sphere_render_fn(0.5),
        tmp_path / "r",
        make_config(),
        show_progress=False,
    )
    mesh = load_merged(out.files["glb"])
    assert len(mesh.split(only_watertight=False)) == 1
    assert np.linalg.norm(mesh.vertices, axis=1).max() < 0.51
    assert out.faces_after_cleanup < out.faces_before_cleanup


def test_auto_threshold_matches_the_silhouette(tmp_path, fakes, make_config):
    # A Gaussian blob has no natural surface; the renders say it is a sphere of radius 0.5.
    cfg = make_config(threshold=None, resolution=64)
    out = export_result(
        fakes.GaussianField(), 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", cfg, show_progress=False
    )
    radius = np.linalg.norm(load_merged(out.files["glb"]).vertices, axis=1)
    assert out.threshold_is_automatic and out.silhouette_iou > 0.97
    expected_level = 100.0 * np.exp(-(0.5**2) / (2 * 0.35**2))
    assert out.threshold == pytest.approx(expected_level, rel=0.05)
    assert radius.mean() == pytest.approx(0.5, rel=0.02)


def test_decimation_respects_max_faces_and_keeps_shape(fakes):
    from sds.export.grid import sample_density_grid

    grid = sample_density_grid(
        fakes.SdfField(fakes.sphere_sdf(0.5)).density, 1.0, 48, 65536, show_progress=False
    )
    vertices, faces = extract_surface(grid, 1.0, fakes.PEAK / 2)
    mesh = clean_mesh(vertices, faces, 0.05, True, smooth_iterations=3, max_faces=800)
    assert len(mesh.faces) <= 800
    assert mesh.is_watertight
    assert np.linalg.norm(mesh.vertices, axis=1).mean() == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("threshold", [None, 25.0])
def test_empty_scene_raises_and_writes_nothing(tmp_path, fakes, make_config, threshold):
    out_dir = tmp_path / "run" / "result"
    with pytest.raises(EmptySceneError, match="empty scene"):
        export_result(
            fakes.EmptyField(), 1.0, fakes.sphere_render_fn(0.0), out_dir, make_config(threshold=threshold),
            show_progress=False,
        )  # fmt: skip
    assert not out_dir.exists()
    assert not any(tmp_path.rglob("*.*"))


def test_level_above_every_density_is_an_empty_scene(tmp_path, fakes, make_config):
    field = fakes.SdfField(fakes.sphere_sdf(0.5))
    with pytest.raises(EmptySceneError):
        export_result(field, 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", make_config(threshold=1e3))
    assert not any(tmp_path.iterdir())


def test_failure_while_writing_leaves_no_files(tmp_path, fakes, make_config, monkeypatch):
    import sds.export.pipeline as pipeline

    def broken_preview(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(pipeline, "write_preview", broken_preview)
    field = fakes.SdfField(fakes.sphere_sdf(0.5))
    with pytest.raises(RuntimeError, match="renderer crashed"):
        export_result(
            field, 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", make_config(), show_progress=False
        )
    assert list(tmp_path.iterdir()) == []  # no result folder, no staging folder


def test_field_is_queried_in_chunks_without_grad(tmp_path, fakes, make_config):
    seen = []

    class Recording(fakes.SdfField):
        def density(self, points):
            seen.append((points.shape[0], torch.is_grad_enabled()))
            return super().density(points)

    cfg = make_config(chunk_size=10_000)
    export_result(
        Recording(fakes.sphere_sdf(0.5)), 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", cfg, False
    )
    assert max(n for n, _ in seen) <= 10_000
    assert sum(n for n, _ in seen) == 48**3
    assert not any(grad for _, grad in seen)
