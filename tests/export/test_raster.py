"""The mesh rasteriser against analytic answers: a textured unit cube (silhouette, colours, background) and a
tilted plane (perspective-correct UVs), back faces, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

import sds.export.raster as raster
from sds.cameras import camera_rays, orbit_cameras
from sds.field.shading import AMBIENT

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
UP_FACE_UV = ((0.1, 0.6), (0.4, 0.9))  # the red quarter of the texture (u < 0.5, v > 0.5), a texel inside it
SIDE_UV = ((0.6, 0.1), (0.9, 0.4))  # blue


def two_colour_texture(size: int = 8) -> np.ndarray:
    """[size, size, 3] uint8: red in the top-left quarter (u < 0.5, v > 0.5; row 0 is the top), blue elsewhere.
    A u or v flip anywhere between the file and the screen turns the cube's top face blue."""
    texture = np.zeros((size, size, 3), np.uint8)
    texture[..., 2] = 255
    texture[: size // 2, : size // 2] = (255, 0, 0)
    return texture


def unit_cube() -> raster.RenderMesh:
    """[-0.5, 0.5]^3, 4 vertices a face (flat normals, own UVs), counter-clockwise from outside; the top (+Y)
    face maps into the red quarter of the texture, the five others into blue."""
    vertices, normals, uvs, faces = [], [], [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            n = np.zeros(3)
            n[axis] = sign
            u = np.roll(n, 1)  # u x v = n: a right-handed frame on the face, so corners run counter-clockwise
            v = np.cross(n, u)
            (u0, v0), (u1, v1) = UP_FACE_UV if axis == 1 and sign > 0 else SIDE_UV
            base = len(vertices)
            for a, b, uv in ((-1, -1, (u0, v0)), (1, -1, (u1, v0)), (1, 1, (u1, v1)), (-1, 1, (u0, v1))):
                vertices.append(0.5 * (n + a * u + b * v))
                normals.append(n)
                uvs.append(uv)
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return raster.render_mesh_from_arrays(vertices, faces, normals, uvs, two_colour_texture(), (0, 0, 0), 1.0)


def cube_by_ray_casting(cameras, size: int):
    """Per pixel centre: hit [B, H, W] and the expected colour [B, H, W, 3] (white where missed)."""
    origins, dirs = (t.double() for t in camera_rays(cameras, size, size))
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0, t1 = (-0.5 - origins) / safe, (0.5 - origins) / safe
    t_in, axis = torch.minimum(t0, t1).max(-1)
    hit = t_in < torch.maximum(t0, t1).min(-1).values
    point = origins + t_in[..., None] * dirs
    normal = torch.nn.functional.one_hot(axis, 3).double() * -torch.sign(dirs.gather(-1, axis[..., None]))
    top = (axis == 1) & (normal[..., 1] > 0)
    albedo = torch.where(top[..., None], torch.tensor(RED).double(), torch.tensor(BLUE).double())
    to_light = torch.nn.functional.normalize(cameras.position[:, None, None].double() - point, dim=-1)
    shade = AMBIENT + (1 - AMBIENT) * (normal * to_light).sum(-1, keepdim=True).clamp(min=0)
    expected = torch.where(hit[..., None], albedo * shade, torch.ones_like(point))
    # Pixels whose centre falls within 1e-3 of a cube edge could go to either face: not compared.
    in_face = torch.where(torch.nn.functional.one_hot(axis, 3).bool(), 0.0, point.abs()).amax(-1)
    return hit, expected.float(), hit & (in_face < 0.5 - 1e-3)


CAMERAS = orbit_cameras(
    torch.tensor([30.0, 200.0, 290.0]),
    torch.tensor([20.0, 35.0, -25.0]),
    torch.tensor([2.5, 2.5, 3.0]),
    torch.tensor([40.0, 40.0, 30.0]),
)


def _first(cameras):
    return orbit_cameras(
        cameras.azimuth_deg[:1], cameras.elevation_deg[:1], cameras.radius[:1], cameras.fov_deg[:1]
    )


def test_cube_pixels_match_ray_casting():
    size = 96
    out = raster.render_mesh(unit_cube(), CAMERAS, size, supersample=1)
    hit, expected, interior = cube_by_ray_casting(CAMERAS, size)
    assert torch.equal(out["opacity"] > 0.5, hit)  # the silhouette, pixel for pixel
    torch.testing.assert_close(out["rgb"][interior], expected[interior], atol=2e-3, rtol=0)
    assert (out["rgb"][~hit] == 1.0).all()  # background: white
    assert (out["rgb"][interior][:, 0] > 0.3).any()  # the top face (red) is seen from above


def test_cube_silhouette_area_is_the_projected_hull():
    size = 128
    corners = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    out = raster.render_mesh(unit_cube(), CAMERAS, size, supersample=1)
    for view in range(len(CAMERAS)):
        pix, _ = raster.project(corners, CAMERAS.c2w[view], float(CAMERAS.fov_deg[view]), size)
        area = ConvexHull(pix.double().numpy()).volume  # in 2-D, "volume" is the area (pixels^2)
        assert float(out["opacity"][view].sum()) == pytest.approx(area, rel=0.02)


def test_supersampled_coverage_is_fractional_at_edges_only():
    out = raster.render_mesh(unit_cube(), _first(CAMERAS), 48, supersample=2)
    opacity = out["opacity"][0]
    assert set(torch.unique(opacity).tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert 0 < ((opacity > 0) & (opacity < 1)).sum() < 0.25 * (opacity == 1).sum()


def plane(half: float = 1.5) -> raster.RenderMesh:
    """A square in the plane z = 0 facing +Z, u = x / (2 half) + 0.5, v = y / (2 half) + 0.5."""
    xy = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    vertices = np.concatenate([xy, np.zeros((4, 1))], 1)
    normals = np.tile([0.0, 0.0, 1.0], (4, 1))
    texture = np.zeros((2, 2, 3), np.uint8)
    return raster.render_mesh_from_arrays(
        vertices, [[0, 1, 2], [0, 2, 3]], normals, xy / (2 * half) + 0.5, texture, (0, 0, 0), 1.0
    )


def test_uvs_are_perspective_correct_and_back_faces_culled():
    mesh, size = plane(), 64  # every corner in front of the camera (faces across the near plane are dropped)
    cams = orbit_cameras(
        torch.tensor([50.0, 180.0]), torch.tensor([30.0, 10.0]), torch.full((2,), 2.0), torch.full((2,), 60.0)
    )
    face_map, bary = raster.rasterize(mesh.vertices, mesh.faces, cams.c2w[0], 60.0, size)
    hit = face_map >= 0
    assert hit.float().mean() > 0.5  # the plane runs past the image's borders: off-screen corners are fine
    uv = (bary[hit][..., None] * mesh.uvs[mesh.faces[face_map[hit]]]).sum(1)
    origins, dirs = (t[0].double() for t in camera_rays(_first(cams), size, size))
    point = origins - (origins[..., 2:] / dirs[..., 2:]) * dirs  # where each pixel's ray meets z = 0
    expected = point[..., :2] / 3.0 + 0.5
    torch.testing.assert_close(uv.double(), expected[hit], atol=1e-4, rtol=0)  # affine weights err by ~1e-2
    behind, _ = raster.rasterize(mesh.vertices, mesh.faces, cams.c2w[1], 60.0, size)
    assert (behind == -1).all()  # seen from behind (azimuth 180): culled, as the glb is single-sided


def test_chunked_candidates_give_the_same_image(monkeypatch):
    full = raster.render_mesh(unit_cube(), CAMERAS, 64, supersample=1)
    monkeypatch.setattr(raster, "MAX_CANDIDATES", 500)  # many chunks, and faces bigger than a chunk
    chunked = raster.render_mesh(unit_cube(), CAMERAS, 64, supersample=1)
    assert torch.equal(full["rgb"], chunked["rgb"]) and torch.equal(full["opacity"], chunked["opacity"])


def test_render_fn_is_square_only():
    render = raster.mesh_render_fn(unit_cube())
    assert render(_first(CAMERAS), 16, 16)["rgb"].shape == (1, 16, 16, 3)
    with pytest.raises(ValueError, match="square"):
        render(_first(CAMERAS), 16, 20)
