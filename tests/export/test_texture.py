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
    from sds.export.texture import bake_texture

    def albedo(points):
        return ((points + 1) / 2).clamp(0, 1)

    grid = sample_density_grid(
        fakes.SdfField(fakes.sphere_sdf(0.5)).density, 1.0, 32, 65536, show_progress=False
    )
    mesh = clean_mesh(*extract_surface(grid, 1.0, fakes.PEAK / 2), 0.05, True, 0, 0)
    baked = bake_texture(mesh, albedo, texture_size=128, chunk_size=65536)
    rng = np.random.default_rng(0)
    bary = rng.dirichlet(np.ones(3), size=len(baked.faces))[:, :, None]  # one random point per face
    points = (bary * baked.vertices[baked.faces]).sum(1)
    uv = (bary * baked.uvs[baked.faces]).sum(1)
    error = np.abs(bilinear(baked.texture, uv) - albedo(torch.from_numpy(points)).numpy()).max(1)
    assert np.quantile(error, 0.99) < 0.02 and error.max() < 0.04
