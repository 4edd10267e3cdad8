"""UV rasterisation and dilation, against hand-made cases."""

from __future__ import annotations

import numpy as np
import torch

from sds.export.texture import dilate_colors, rasterize_uv


def test_two_triangles_covering_the_square_cover_every_texel():
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    face_map, bary = rasterize_uv(uvs, faces, 16)
    assert (face_map >= 0).all()
    np.testing.assert_allclose(bary.sum(-1), 1.0)
    # Interpolating the UVs back gives each texel centre (v up: row 0 is v near 1).
    uv_back = (bary[..., None] * uvs[faces[face_map]]).sum(-2)
    rows, cols = np.mgrid[0:16, 0:16]
    np.testing.assert_allclose(uv_back[..., 0], (cols + 0.5) / 16, atol=1e-9)
    np.testing.assert_allclose(uv_back[..., 1], 1 - (rows + 0.5) / 16, atol=1e-9)


def test_small_triangle_covers_only_its_texels():
    uvs = np.array([[0.0, 1.0], [0.5, 1.0], [0.0, 0.5]])  # top-left corner, half of a 4x4 quarter
    face_map, _ = rasterize_uv(uvs, np.array([[0, 1, 2]]), 8)
    covered = face_map >= 0
    assert covered[:4, :4].sum() == 10 and covered.sum() == 10  # 4 + 3 + 2 + 1 texel centres


def test_dilation_grows_colours_then_fills_the_rest_with_the_mean():
    image = np.zeros((9, 9, 3))
    filled = np.zeros((9, 9), dtype=bool)
    image[4, 4], filled[4, 4] = (1.0, 0.5, 0.0), True
    out = dilate_colors(image, filled, iterations=2)
    np.testing.assert_allclose(out[2:7, 2:7], np.broadcast_to((1.0, 0.5, 0.0), (5, 5, 3)))
    np.testing.assert_allclose(out[0, 0], (1.0, 0.5, 0.0))  # beyond reach: the mean colour


def bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample a [T, T, 3] uint8 texture at [N, 2] UVs (v up), like a GPU with bilinear filtering."""
    size = texture.shape[0]
    x = np.clip(uv[:, 0] * size - 0.5, 0, size - 1)
    y = np.clip((1 - uv[:, 1]) * size - 0.5, 0, size - 1)
    x0, y0 = np.minimum(x.astype(int), size - 2), np.minimum(y.astype(int), size - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = texture.astype(np.float64) / 255
    top = t[y0, x0] * (1 - fx) + t[y0, x0 + 1] * fx
    bottom = t[y0 + 1, x0] * (1 - fx) + t[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_baked_texture_reproduces_a_smooth_albedo_everywhere_on_the_surface(fakes):
    # Bilinear lookups anywhere on any triangle, chart borders included, must give the field's colour:
    # this is what dilation past chart borders buys (no dark seams).
    from sds.export.grid import sample_density_grid
    from sds.export.surface import clean_mesh, extract_surface
    from sds.export.surface_color import surface_color_fn
    from sds.export.texture import bake_texture

    def albedo(points):
        return ((points + 1) / 2).clamp(0, 1)

    field = fakes.SdfField(fakes.sphere_sdf(0.5), albedo)
    grid = sample_density_grid(field.density, 1.0, 32, 65536, show_progress=False)
    mesh = clean_mesh(*extract_surface(grid, 1.0, fakes.PEAK / 2), 0.05, 0)
    baked = bake_texture(mesh, surface_color_fn(field, depth=0.0), texture_size=128, chunk_size=65536)
    rng = np.random.default_rng(0)
    bary = rng.dirichlet(np.ones(3), size=len(baked.faces))[:, :, None]  # one random point per face
    points = (bary * baked.vertices[baked.faces]).sum(1)
    uv = (bary * baked.uvs[baked.faces]).sum(1)
    error = np.abs(bilinear(baked.texture, uv) - albedo(torch.from_numpy(points)).numpy()).max(1)
    assert np.quantile(error, 0.99) < 0.02 and error.max() < 0.04


class _LayeredBall:
    """An opaque ball of radius 0.5 (density 500 inside, 0 outside), red within 0.03 of its surface, blue deeper."""

    def density(self, points):
        return 500.0 * (points.norm(dim=-1) <= 0.5).float()

    def albedo(self, points):
        outer = (points.norm(dim=-1, keepdim=True) >= 0.47).float()
        return outer * torch.tensor([1.0, 0.0, 0.0]) + (1 - outer) * torch.tensor([0.0, 0.0, 1.0])


def _sphere_points(radius: float, n: int = 64) -> torch.Tensor:
    """[n, 6]: points on a sphere with their outward normals."""
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    return torch.cat([radius * normals, normals], dim=-1)


def test_surface_color_is_what_the_render_shows_along_the_normal():
    from sds.export.surface_color import surface_color_fn

    inside = _sphere_points(0.45)  # a mesh cut 0.05 inside the rendered surface, in the blue core
    at_point = surface_color_fn(_LayeredBall(), depth=0.0)(inside)
    seen = surface_color_fn(_LayeredBall(), depth=0.06)(inside)
    torch.testing.assert_close(at_point, torch.tensor([0.0, 0.0, 1.0]).expand(64, 3))
    # Looking from 0.51 inward, the first sample inside the ball (r = 0.50, opacity 1 - exp(-500 * 0.011) = 0.996)
    # is red: the camera sees the red layer, whatever the albedo at the mesh point.
    assert (seen[:, 0] > 0.99).all() and (seen[:, 2] < 0.01).all()
    outside = _sphere_points(0.53)  # a mesh cut outside it: the ray still reaches the red layer within 0.06
    assert (surface_color_fn(_LayeredBall(), depth=0.06)(outside)[:, 0] > 0.99).all()


def test_surface_color_is_normalised_and_falls_back_where_nothing_is_seen():
    from sds.export.surface_color import surface_color_fn

    class Uniform:
        def __init__(self, density):
            self.level = density

        def density(self, points):
            return torch.full(points.shape[:1], self.level)

        def albedo(self, points):
            return torch.tensor([0.2, 0.6, 0.4]).expand(len(points), 3)

    points = _sphere_points(0.3)
    # A faint fog (opacity about 0.01 over the ray): one colour everywhere is seen as that colour, not darker.
    seen = surface_color_fn(Uniform(0.1), 0.06)(points)
    torch.testing.assert_close(seen, torch.tensor([0.2, 0.6, 0.4]).expand(64, 3))

    class Empty(_LayeredBall):
        def density(self, points):
            return torch.zeros(points.shape[:1])

    # Nothing along the ray: the albedo at the point itself, not black.
    torch.testing.assert_close(surface_color_fn(Empty(), 0.06)(_sphere_points(0.45)),
                               torch.tensor([0.0, 0.0, 1.0]).expand(64, 3))
