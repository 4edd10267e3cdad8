"""UV unwrapping (xatlas) and baking the field's colour into a texture at the 3D surface of each texel."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
import xatlas

from sds.export.grid import query_chunked

logger = logging.getLogger(__name__)

CHART_PADDING_TEXELS = 2  # xatlas gap between charts, so bilinear lookups stay inside one chart
DILATION_TEXELS = 8  # colours grown past chart borders: no seams, also at coarser mip levels
FACES_PER_RASTER_CHUNK = 4096  # bounds the rasteriser's candidate-texel arrays


@dataclass
class TexturedMesh:
    """A mesh split at UV seams, with its baked texture. Vertex rows line up across all arrays."""

    vertices: np.ndarray  # [V, 3] float64, world units
    faces: np.ndarray  # [F, 3] int64, counter-clockwise seen from outside
    normals: np.ndarray  # [V, 3] float64, unit, averaged across seams (smooth shading)
    uvs: np.ndarray  # [V, 2] float64 in [0, 1]; OBJ/OpenGL convention: v = 0 is the image's bottom row
    texture: np.ndarray  # [T, T, 3] uint8 sRGB, row 0 at the top (v = 1)
    vertex_colors: np.ndarray  # [V, 3] uint8 sRGB, the colour at each vertex
    welded_ids: np.ndarray  # [V] int64, each vertex's index in the welded mesh (seam copies share one)


def weld(mesh: TexturedMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mesh without its UV seams: (vertices [W, 3], faces [F, 3], normals [W, 3], colours [W, 3] uint8).

    Seam copies of a vertex hold the same position, normal and colour (all read at the one surface vertex), so
    welding them loses nothing; the result has the cleaned surface's topology (watertight where it is closed).
    """
    first = np.empty(int(mesh.welded_ids.max(initial=-1)) + 1, dtype=np.int64)
    first[mesh.welded_ids] = np.arange(len(mesh.welded_ids))  # any copy will do: they are identical
    return mesh.vertices[first], mesh.welded_ids[mesh.faces], mesh.normals[first], mesh.vertex_colors[first]


def unwrap_uv(mesh: trimesh.Trimesh, texture_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts packed into a texture_size^2 atlas.

    Returns (vmapping [V'] index of each new vertex in the input mesh, faces [F, 3], uvs [V', 2]).
    """
    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = CHART_PADDING_TEXELS
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vmapping, faces, uvs = atlas[0]
    return vmapping.astype(np.int64), faces.astype(np.int64), uvs.astype(np.float64)


def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre in UV space, and where.

    uvs [V, 2] (v up), faces [F, 3]. Texel (row r, col c) has its centre at u = (c + 0.5) / size,
    v = 1 - (r + 0.5) / size. Returns face index [size, size] (-1 where uncovered) and barycentric
    weights [size, size, 3]. Vectorised over each triangle's texel bounding box.
    """
    pix = np.stack([uvs[:, 0] * size - 0.5, (1.0 - uvs[:, 1]) * size - 0.5], axis=-1)
    face_map = np.full((size, size), -1, dtype=np.int64)
    bary_map = np.zeros((size, size, 3), dtype=np.float64)
    for start in range(0, len(faces), FACES_PER_RASTER_CHUNK):
        face_ids = np.arange(start, min(start + FACES_PER_RASTER_CHUNK, len(faces)))
        tri = pix[faces[face_ids]]  # [f, 3, 2]
        lo = np.clip(np.ceil(tri.min(1)), 0, size - 1).astype(np.int64)
        hi = np.clip(np.floor(tri.max(1)), 0, size - 1).astype(np.int64)
        extent = np.maximum(hi - lo + 1, 0)
        count = extent[:, 0] * extent[:, 1]
        which = np.repeat(np.arange(len(face_ids)), count)
        offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        xs = lo[which, 0] + offset % np.maximum(extent[which, 0], 1)
        ys = lo[which, 1] + offset // np.maximum(extent[which, 0], 1)
        a, e1, e2 = tri[which, 0], tri[which, 1] - tri[which, 0], tri[which, 2] - tri[which, 0]
        q = np.stack([xs, ys], axis=-1) - a
        det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
        safe = np.where(np.abs(det) < 1e-12, 1.0, det)
        l1 = (q[:, 0] * e2[:, 1] - e2[:, 0] * q[:, 1]) / safe
        l2 = (e1[:, 0] * q[:, 1] - q[:, 0] * e1[:, 1]) / safe
        bary = np.stack([1.0 - l1 - l2, l1, l2], axis=-1)
        inside = (np.abs(det) >= 1e-12) & (bary >= -1e-6).all(-1)
        face_map[ys[inside], xs[inside]] = face_ids[which[inside]]
        bary_map[ys[inside], xs[inside]] = bary[inside]
    return face_map, bary_map


def dilate_colors(image: np.ndarray, filled: np.ndarray, iterations: int) -> np.ndarray:
    """Grow colours into unfilled texels, one ring per iteration (mean of filled 8-neighbours).

    image [T, T, 3] float, filled [T, T] bool. Texels still empty afterwards get the mean colour,
    so mip-mapping never blends in black.
    """
    img = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # [1, 3, T, T]
    mask = torch.from_numpy(filled)[None, None].float()
    kernel = torch.ones(1, 1, 3, 3)
    for _ in range(iterations):
        sums = F.conv2d(img * mask, kernel.expand(3, 1, 3, 3), padding=1, groups=3)
        counts = F.conv2d(mask, kernel, padding=1)
        grow = (mask == 0) & (counts > 0)
        img = torch.where(grow, sums / counts.clamp(min=1), img)
        mask = torch.maximum(mask, grow.float())
    out = img[0].permute(1, 2, 0).numpy().copy()
    if filled.any():
        out[mask[0, 0].numpy() == 0] = image[filled].mean(0)
    return out


def bake_texture(
    mesh: trimesh.Trimesh,
    color_fn: Callable[[torch.Tensor], torch.Tensor],
    texture_size: int,
    chunk_size: int,
    device: torch.device | str = "cpu",
) -> TexturedMesh:
    """Unwrap ``mesh`` (world units) and bake color_fn ([N, 6] point and unit normal -> [N, 3] in [0, 1];
    see ``surface_color.surface_color_fn``).

    Each covered texel's colour is color_fn at the 3D surface point it maps to, with the normal there
    (barycentric interpolation of its triangle's corners); vertex colours come from the same function.
    """
    vmapping, faces, uvs = unwrap_uv(mesh, texture_size)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)[vmapping]
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)[vmapping]
    face_map, bary_map = rasterize_uv(uvs, faces, texture_size)
    filled = face_map >= 0
    bary = bary_map[filled][:, :, None]
    corner_ids = faces[face_map[filled]]  # [n, 3]
    surface = (bary * vertices[corner_ids]).sum(1)
    surface_normals = (bary * normals[corner_ids]).sum(1)
    surface_normals /= np.maximum(np.linalg.norm(surface_normals, axis=1, keepdims=True), 1e-12)
    image = np.zeros((texture_size, texture_size, 3))
    image[filled] = _query_colors(color_fn, np.concatenate([surface, surface_normals], 1), chunk_size, device)
    image = dilate_colors(image, filled, DILATION_TEXELS)
    logger.info("texture: %d^2 texels, %.0f%% inside charts", texture_size, 100 * filled.mean())
    at_vertices = np.concatenate([mesh.vertices, mesh.vertex_normals], 1)
    vertex_colors = _query_colors(color_fn, at_vertices, chunk_size, device)[vmapping]
    return TexturedMesh(
        vertices=vertices,
        faces=faces,
        normals=normals,
        uvs=uvs,
        texture=to_uint8(image),
        vertex_colors=to_uint8(vertex_colors),
        welded_ids=np.unique(vmapping, return_inverse=True)[1].reshape(-1),
    )


def to_uint8(colors: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint8)


@torch.no_grad()
def _query_colors(
    color_fn: Callable[[torch.Tensor], torch.Tensor],
    points: np.ndarray,
    chunk_size: int,
    device: torch.device | str,
) -> np.ndarray:
    """[N, C] float64 points (and normals) -> [N, 3] float64 colours in [0, 1]; non-finite values become 0."""
    pts = torch.from_numpy(np.ascontiguousarray(points)).float().to(device)
    colors = query_chunked(color_fn, pts, chunk_size).float().cpu().numpy().astype(np.float64)
    return np.clip(np.nan_to_num(colors), 0.0, 1.0)
