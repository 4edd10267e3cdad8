"""Export of analytic shapes: the mesh matches the known surface, floaters go, empty scenes fail cleanly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from sds.export import EmptySceneError, export_result
from sds.export.surface import clean_mesh, extract_surface, filter_normals


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
    assert not out.touches_bound
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


def test_a_field_that_fills_its_box_is_reported(tmp_path, fakes, make_config, caplog):
    # A box bigger than the scene (half 1.3 > bound 1) is cut flat by it: the mesh is the scene box, and the
    # export says so rather than pass the box off as the object.
    cfg = make_config(formats=("ply",))
    with caplog.at_level("WARNING", logger="sds.export.pipeline"):
        out = export_result(fakes.SdfField(fakes.box_sdf((1.3, 1.3, 1.3))), 1.0, fakes.sphere_render_fn(0.9),
                            tmp_path / "r", cfg, show_progress=False)
    assert out.touches_bound and "edge of the scene box" in caplog.text
    inside = export_result(fakes.SdfField(fakes.box_sdf((0.85, 0.85, 0.85))), 1.0, fakes.sphere_render_fn(0.9),
                           tmp_path / "r2", cfg, show_progress=False)
    assert not inside.touches_bound  # near the faces but inside them: the object's own sides


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
    mesh = clean_mesh(vertices, faces, 0.05, max_faces=800)
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


@pytest.mark.parametrize("radius,is_speck", [(0.035, True), (0.1, False)])
def test_a_speck_is_an_empty_scene_not_scaled_up(tmp_path, fakes, make_config, radius, is_speck):
    """A field collapsed to a speck (spanning < 5 % of the box) is refused, not normalised to unit size."""
    field = fakes.SdfField(fakes.sphere_sdf(radius))
    cfg = make_config(resolution=128, normalize=True)
    if is_speck:
        with pytest.raises(EmptySceneError, match="speck"):
            export_result(field, 1.0, fakes.sphere_render_fn(radius), tmp_path / "r", cfg, show_progress=False)
        assert not any(tmp_path.iterdir())
    else:
        out = export_result(field, 1.0, fakes.sphere_render_fn(radius), tmp_path / "r", cfg, show_progress=False)
        assert out.scale == pytest.approx(1 / (2 * radius), rel=0.1)


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


def test_field_is_queried_in_chunks_without_grad(tmp_path, fakes, make_config, monkeypatch):
    import sds.export.pipeline as pipeline
    from sds.export.surface_color import samples_per_point

    seen = {"density": [], "albedo": []}

    class Recording(fakes.SdfField):
        def density(self, points):
            seen["density"].append((points.shape[0], torch.is_grad_enabled()))
            return super().density(points)

        def albedo(self, points):
            seen["albedo"].append((points.shape[0], torch.is_grad_enabled()))
            return super().albedo(points)

    monkeypatch.setattr(pipeline, "CHUNK_SIZE", 10_000)
    export_result(
        Recording(fakes.sphere_sdf(0.5)), 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", make_config(), False
    )
    calls = seen["density"] + seen["albedo"]
    assert max(n for n, _ in calls) <= 10_000  # the bake's rays along the normals count too
    assert not any(grad for _, grad in calls)
    density_points = sum(n for n, _ in seen["density"])
    per_point = samples_per_point(pipeline.BAKE_DEPTH)  # the grid, then samples along each texel's normal
    assert density_points > 48**3 and (density_points - 48**3) % per_point == 0


def _unfilled_mesh(fakes, sdf) -> trimesh.Trimesh:
    """What marching cubes makes of the export's grid (resolution 64) without the hidden-space fill."""
    from sds.export.grid import sample_density_grid
    from sds.export.pipeline import BLUR_VOXELS
    from sds.export.surface import blur

    grid = blur(sample_density_grid(fakes.SdfField(sdf).density, 1.0, 64, 65536, show_progress=False), BLUR_VOXELS)
    return trimesh.Trimesh(*extract_surface(grid, 1.0, fakes.PEAK / 2), process=True)


def test_enclosed_cavity_is_filled(tmp_path, fakes, make_config):
    # A ball of radius 0.5 with an empty pocket of radius 0.25 inside: the pocket is never seen, and
    # without filling it marching cubes gives a second, inner shell.
    shell = lambda p: torch.maximum(fakes.sphere_sdf(0.5)(p), -fakes.sphere_sdf(0.25)(p))  # noqa: E731
    unfilled = _unfilled_mesh(fakes, shell)
    assert len(unfilled.split(only_watertight=False)) == 2
    assert np.linalg.norm(unfilled.vertices, axis=1).min() < 0.27  # the inner shell is there
    cfg = make_config(formats=("ply",), resolution=64)
    out = export_result(fakes.SdfField(shell), 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", cfg,
                        show_progress=False)
    mesh = trimesh.load(out.files["ply"], process=False)  # welded as written
    assert len(mesh.split(only_watertight=False)) == 1 and mesh.is_watertight and mesh.euler_number == 2
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.05)  # one solid ball, genus 0


def test_hidden_tunnel_is_filled_and_visible_hole_kept(tmp_path, fakes, make_config):
    # A U-shaped tunnel in a ball: two straight legs enter from +x (seen along x) and meet through a
    # leg along y deep inside (seen from nowhere). Filled, the handle is gone (genus 0, two dents);
    # left alone it is a handle (genus 1).
    tunnel = fakes.union_sdf(fakes.box_sdf((0.25, 0.08, 0.08), center=(0.35, 0.2, 0.0)),
                             fakes.box_sdf((0.25, 0.08, 0.08), center=(0.35, -0.2, 0.0)),
                             fakes.box_sdf((0.08, 0.28, 0.08), center=(0.1, 0.0, 0.0)))
    ball = lambda p: torch.maximum(fakes.sphere_sdf(0.5)(p), -tunnel(p))  # noqa: E731
    assert _unfilled_mesh(fakes, ball).euler_number == 0
    cfg = make_config(formats=("ply",), resolution=64)
    out = export_result(fakes.SdfField(ball), 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", cfg,
                        show_progress=False)
    mesh = load_merged(out.files["ply"])
    assert len(mesh.split(only_watertight=False)) == 1 and mesh.is_watertight
    assert mesh.euler_number == 2
    # The legs seen from outside stay open: no surface fills the mouth of a leg.
    mouth = np.abs(mesh.vertices - [0.5, 0.2, 0.0]).max(1) < 0.05
    assert not mouth.any()


def test_torus_hole_is_kept_by_the_hidden_fill(tmp_path, fakes, make_config):
    def torus(p):
        ring = (p[..., 0] ** 2 + p[..., 2] ** 2).sqrt() - 0.4
        return (ring**2 + p[..., 1] ** 2).sqrt() - 0.15

    cfg = make_config(formats=("ply",), resolution=64)
    out = export_result(fakes.SdfField(torus), 1.0, fakes.sphere_render_fn(0.5), tmp_path / "r", cfg,
                        show_progress=False)
    mesh = load_merged(out.files["ply"])
    assert mesh.is_watertight and mesh.euler_number == 0  # genus 1
    raw = trimesh.load(out.files["ply"], process=False)  # the PLY is welded already: nothing to merge
    assert raw.is_watertight and raw.euler_number == 0 and len(raw.vertices) == len(mesh.vertices)
    assert out.watertight


def test_blur_removes_voxel_noise_handles():
    from sds.export.surface import blur

    gen = torch.Generator().manual_seed(0)
    noisy = torch.rand(32, 32, 32, generator=gen)
    smooth = blur(noisy, 1.0)
    assert smooth.shape == noisy.shape and smooth.dtype == noisy.dtype
    assert smooth.std() < 0.5 * noisy.std()  # independent voxel noise falls by far more than half
    assert smooth.mean() == pytest.approx(float(noisy.mean()), abs=0.02)
    assert torch.equal(blur(noisy, 0.0), noisy)


def _noisy(mesh: trimesh.Trimesh, amplitude: float, seed: int = 0) -> trimesh.Trimesh:
    """The mesh with every vertex moved along its normal by uniform noise in [-amplitude, amplitude]."""
    noise = np.random.default_rng(seed).uniform(-amplitude, amplitude, (len(mesh.vertices), 1))
    return trimesh.Trimesh(mesh.vertices + noise * mesh.vertex_normals, mesh.faces, process=False)


def _axis_aligned_area(mesh: trimesh.Trimesh, tolerance_deg: float = 10.0) -> float:
    """Fraction of the area whose normal is within tolerance of a coordinate axis (a cube's faces)."""
    cos = np.abs(mesh.face_normals).max(1)
    return float(mesh.area_faces[cos >= np.cos(np.radians(tolerance_deg))].sum() / mesh.area)


def test_normal_filter_flattens_a_noisy_cube_and_keeps_its_edges():
    cube = trimesh.creation.box((1.0, 1.0, 1.0)).subdivide_to_size(0.05)
    cube = trimesh.Trimesh(cube.vertices, cube.faces, process=True)
    noisy = _noisy(cube, 0.01)
    filtered = filter_normals(noisy)
    assert _axis_aligned_area(noisy) < 0.6 and _axis_aligned_area(filtered) > 0.95
    assert np.array_equal(filtered.faces, noisy.faces) and filtered.is_watertight
    # Edges and corners stay where they were: Laplacian or Taubin smoothing would pull the corners in.
    corners = np.abs(cube.vertices).min(1) > 0.49
    assert np.abs(filtered.vertices[corners]).min() > 0.48
    assert filtered.volume == pytest.approx(1.0, rel=0.01)


def test_normal_filter_keeps_a_sphere_round_and_its_size():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    noisy = _noisy(sphere, 0.01)
    filtered = filter_normals(noisy)
    radius = np.linalg.norm(filtered.vertices, axis=1)
    assert np.abs(radius - 0.5).max() < 0.6 * np.abs(np.linalg.norm(noisy.vertices, axis=1) - 0.5).max()
    assert radius.mean() == pytest.approx(0.5, rel=0.01)
    # It stays a sphere, not a polyhedron: normals follow the position everywhere.
    cos = (filtered.face_normals * filtered.triangles_center / np.linalg.norm(filtered.triangles_center, axis=1,
                                                                              keepdims=True)).sum(1)
    assert cos.min() > np.cos(np.radians(12))
