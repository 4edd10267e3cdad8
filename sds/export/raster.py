"""A small software rasteriser: the exported mesh seen by the preview cameras, as a viewer shows it.

Pure torch on the CPU (nvdiffrast and pyrender need a GPU or an OpenGL context): project the vertices, test
each triangle's pixel bounding box against its edges, keep the nearest surface per pixel (a z-buffer),
interpolate perspective-correct, look the colour up in the baked texture (bilinear) and light it as the NeRF's
previews are lit (``sds.field.shading.lambertian``, a point light at the camera). Back faces are culled, as the
glb's single-sided material asks of a viewer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from sds.cameras import Cameras
from sds.export.interfaces import RenderFn
from sds.field.shading import lambertian

NEAR = 1e-3
"""Faces with a corner closer to the camera plane than this (world units) are dropped, not clipped: the preview
cameras sit 2.5 x bound from the origin, so no exported surface comes near them."""
MAX_CANDIDATES = 1 << 20
"""(pixel, face) pairs tested at once (~120 bytes each): bounds memory whatever the mesh and image size."""
SUPERSAMPLE = 2
"""Pixels rendered per output pixel along each axis, then averaged: smooth silhouettes and texture edges."""
THREADS = 1
"""torch threads while rasterising. Its ops are small (a view is ~100 ops of <= a few M elements), so threads
gain little, and on a busy machine each parallel op waits for a descheduled thread: a 10k-face mesh at 256 px
(2x supersampled) took 38-49 ms a view on 1 thread and 1.2 s on 2 on 2 cores loaded by other jobs."""


@dataclass
class RenderMesh:
    """A textured triangle mesh in world units. Rows of vertices, normals and uvs line up."""

    vertices: torch.Tensor  # [V, 3] float32, world units (where the NeRF is)
    faces: torch.Tensor  # [F, 3] int64, counter-clockwise seen from outside
    normals: torch.Tensor  # [V, 3] float32, unit
    uvs: torch.Tensor  # [V, 2] float32; v = 0 is the texture's bottom row (OBJ/OpenGL convention)
    texture: (
        torch.Tensor
    )  # [T, T, 3] float32 in [0, 1] (sRGB-encoded, as the NeRF's albedo), row 0 at the top


def render_mesh_from_arrays(vertices, faces, normals, uvs, texture, center, scale: float) -> RenderMesh:
    """A RenderMesh from a written mesh's arrays (numpy): vertices [V, 3] in the file's normalised frame go back
    to world units by ``v / scale + center`` (the inverse of the export's normalisation), so the NeRF's cameras
    see the mesh where the NeRF was. texture [T, T, 3] uint8."""
    world = np.asarray(vertices, np.float64) / scale + np.asarray(center, np.float64)
    return RenderMesh(
        vertices=torch.tensor(world, dtype=torch.float32),
        faces=torch.tensor(np.asarray(faces), dtype=torch.int64),
        normals=F.normalize(torch.tensor(np.asarray(normals), dtype=torch.float32), dim=-1),
        uvs=torch.tensor(np.asarray(uvs), dtype=torch.float32),
        texture=torch.tensor(np.asarray(texture)[..., :3], dtype=torch.float32) / 255.0,
    )


def read_glb(path: Path, center, scale: float) -> RenderMesh:
    """The glb as a viewer reads it (trimesh: positions, normals, TEXCOORD_0, baseColorTexture), in world units."""
    mesh = trimesh.load(path, force="mesh", process=False)
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    return render_mesh_from_arrays(
        mesh.vertices, mesh.faces, mesh.vertex_normals, mesh.visual.uv, texture, center, scale
    )


def project(
    vertices: torch.Tensor, c2w: torch.Tensor, fov_deg: float, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """World points [V, 3] -> pixel coordinates [V, 2] (column, row; pixel centres at integers, as
    ``sds.cameras.camera_rays`` shoots its rays) and depth [V] along the camera's view axis (world units)."""
    cam = (vertices - c2w[:3, 3]) @ c2w[:3, :3]  # rows: R^T (p - position), the camera's own axes
    depth = -cam[:, 2]  # the camera looks down its -Z
    ndc = cam[:, :2] / (depth.clamp(min=NEAR)[:, None] * np.tan(np.radians(fov_deg) / 2))
    return torch.stack([(ndc[:, 0] + 1) / 2 * size - 0.5, (1 - ndc[:, 1]) / 2 * size - 0.5], -1), depth


def candidate_pixels(lo: torch.Tensor, extent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pixel of each face's bounding box: (face position [n], column [n], row [n]). lo, extent [f, 2]."""
    count = extent[:, 0] * extent[:, 1]
    which = torch.repeat_interleave(torch.arange(len(count)), count)
    offset = torch.arange(int(count.sum())) - torch.repeat_interleave(count.cumsum(0) - count, count)
    width = extent[which, 0]
    return which, lo[which, 0] + offset % width, lo[which, 1] + offset // width


def rasterize(
    vertices: torch.Tensor, faces: torch.Tensor, c2w: torch.Tensor, fov_deg: float, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest front face at each pixel centre of a size x size view of a mesh (world vertices [V, 3], faces
    [F, 3] counter-clockwise from outside).

    Returns face index [size, size] int64 (-1: background) and perspective-correct barycentric weights
    [size, size, 3] of that face's corners. A pixel centre on an edge shared by two faces goes to one of them.
    """
    pix, depth = project(vertices, c2w, fov_deg, size)
    tri = pix[faces]  # [F, 3, 2]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    # Counter-clockwise from outside turns clockwise on screen, whose rows grow downwards: negative area = front.
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    lo = tri.amin(1).ceil().clamp(min=0).long()
    extent = (tri.amax(1).floor().clamp(max=size - 1).long() - lo + 1).clamp(min=0)
    front = (area < -1e-9) & (depth[faces] > NEAR).all(1) & (extent.prod(1) > 0)
    face_ids = front.nonzero()[:, 0]
    zbuf = torch.full((size * size,), torch.inf)
    face_map = torch.full((size * size,), -1, dtype=torch.long)
    bary_map = torch.zeros(size * size, 3)
    cum = extent[face_ids].prod(1).cumsum(0)
    start = 0
    while start < len(face_ids):
        done = int(cum[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(cum, done + MAX_CANDIDATES, right=True)))
        ids = face_ids[start:stop]
        which, xs, ys = candidate_pixels(lo[ids], extent[ids])
        _draw(ids[which], xs, ys, tri, area, depth[faces], size, zbuf, face_map, bary_map)
        start = stop
    return face_map.view(size, size), bary_map.view(size, size, 3)


def screen_weights(points: torch.Tensor, tri: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentric weights [n, 3] of points [n, 2] in triangles tri [n, 3, 2] whose doubled signed
    areas are area [n] (either winding): all three >= 0 inside. Differentiable in the corners."""
    q = points - tri[:, 0]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    l1 = (q[:, 0] * e2[:, 1] - e2[:, 0] * q[:, 1]) / area
    l2 = (e1[:, 0] * q[:, 1] - q[:, 0] * e1[:, 1]) / area
    return torch.stack([1 - l1 - l2, l1, l2], -1)


def _draw(faces, xs, ys, tri, area, corner_depth, size, zbuf, face_map, bary_map) -> None:
    """Depth-test candidate (face [n], pixel column xs [n], row ys [n]) pairs into the buffers, in place."""
    screen = screen_weights(torch.stack([xs, ys], -1).float(), tri[faces], area[faces])
    inside = (screen >= 0).all(-1)
    faces, screen, pixel = faces[inside], screen[inside], (ys * size + xs)[inside]
    # Screen-space weights over each corner's depth, renormalised: the perspective-correct weights, and 1 / depth.
    w = screen / corner_depth[faces]
    inv_depth = w.sum(-1)
    z = 1 / inv_depth
    nearest = torch.full_like(zbuf, torch.inf).scatter_reduce(0, pixel, z, "amin")
    win = ((z <= nearest[pixel]) & (z < zbuf[pixel])).nonzero()[:, 0]
    # Equal depths (a pixel centre on a shared edge): keep one candidate per pixel, the last.
    last = torch.full_like(face_map, -1).scatter_reduce(0, pixel[win], win, "amax")
    win = win[last[pixel[win]] == win]
    zbuf[pixel[win]] = z[win]
    face_map[pixel[win]] = faces[win]
    bary_map[pixel[win]] = w[win] / inv_depth[win, None]


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of uv [N, 2] (v up) in texture [T, T, 3] (row 0 at the top) -> [N, 3].

    Texel centres sit at (i + 0.5) / T, as in glTF and OpenGL (align_corners=False)."""
    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1).view(1, 1, -1, 2)
    image = texture.permute(2, 0, 1)[None]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


def shade_view(
    mesh: RenderMesh, face_map: torch.Tensor, bary: torch.Tensor, c2w: torch.Tensor
) -> torch.Tensor:
    """Colour [H, W, 3] of a rasterised view over white: texture x lambertian, point light at the camera."""
    hit = face_map >= 0
    corners = mesh.faces[face_map[hit]]  # [n, 3]
    b = bary[hit][..., None]
    point = (b * mesh.vertices[corners]).sum(1)
    normal = F.normalize((b * mesh.normals[corners]).sum(1), dim=-1)
    albedo = sample_texture(mesh.texture, (b * mesh.uvs[corners]).sum(1))
    to_light = F.normalize(c2w[:3, 3] - point, dim=-1)
    image = torch.ones(*face_map.shape, 3)
    image[hit] = lambertian(albedo, normal, to_light)
    return image


@torch.no_grad()
def render_mesh(
    mesh: RenderMesh, cameras: Cameras, size: int, supersample: int = SUPERSAMPLE
) -> dict[str, torch.Tensor]:
    """B views of the mesh: "rgb" [B, size, size, 3] over white and "opacity" [B, size, size] (pixel coverage),
    float32 in [0, 1], on the CPU. supersample 1 samples each pixel at its centre only."""
    cameras = cameras.to("cpu")
    fine = size * supersample
    rgb, opacity = [], []
    with _torch_threads(THREADS):
        for c2w, fov in zip(cameras.c2w.float(), cameras.fov_deg.tolist(), strict=True):
            face_map, bary = rasterize(mesh.vertices, mesh.faces, c2w, fov, fine)
            rgb.append(shade_view(mesh, face_map, bary, c2w))
            opacity.append((face_map >= 0).float())
    rgb_hi = torch.stack(rgb).permute(0, 3, 1, 2)
    opacity_hi = torch.stack(opacity)[:, None]
    return {
        "rgb": F.avg_pool2d(rgb_hi, supersample).permute(0, 2, 3, 1).clamp(0, 1),
        "opacity": F.avg_pool2d(opacity_hi, supersample)[:, 0],
    }


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mesh_render_fn(mesh: RenderMesh, supersample: int = SUPERSAMPLE) -> RenderFn:
    """The mesh behind the NeRF's ``RenderFn`` interface, so previews and turntables take either."""

    def render(cameras: Cameras, height: int, width: int, shaded: bool = True) -> dict[str, torch.Tensor]:
        if height != width:
            raise ValueError(f"the mesh renderer draws square views, not {height}x{width}")
        return render_mesh(mesh, cameras, height, supersample)

    return render
