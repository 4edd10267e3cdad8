"""Density grid -> triangle mesh: marching cubes at an iso-level, then clean-up."""

from __future__ import annotations

import logging

import fast_simplification
import numpy as np
import torch
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes

from sds.export.interfaces import EmptySceneError
from sds.lattice import grid_spacing

logger = logging.getLogger(__name__)

FILTER_SPATIAL_EDGES = 2.0
"""Spatial width (sigma) of the normal filter, in mean edge lengths."""
FILTER_NORMAL_SIGMA = 0.35
"""Range width (sigma) of the normal filter on |n_i - n_j| (0.35: neighbours more than ~40 degrees off barely count,
so an edge between two faces stays an edge)."""
FILTER_NORMAL_ITERATIONS = 20
FILTER_VERTEX_ITERATIONS = 10


def extract_surface(grid: torch.Tensor, bound: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on a [R, R, R] density grid (indexed [ix, iy, iz] over [-bound, bound]^3).

    Returns world-space vertices [V, 3] (float64) and faces [F, 3] (int64) wound counter-clockwise
    seen from outside (normals point towards lower density). The grid is padded with one layer of
    empty cells so surfaces cut by the cube's faces still close. Raises EmptySceneError when no cell
    crosses the level.
    """
    volume = np.pad(grid.detach().cpu().numpy().astype(np.float32), 1, constant_values=0.0)
    peak = float(volume.max())
    if not volume.min() < level < peak:
        raise EmptySceneError(
            f"empty scene: no density crosses the iso-level {level:.4g} (grid max {peak:.4g})"
        )
    h = grid_spacing(bound, grid.shape[0])
    vertices, faces, _, _ = marching_cubes(volume, level=level, spacing=(h, h, h), allow_degenerate=False)
    # Index 0 of the padded grid sits one spacing outside -bound.
    vertices = vertices.astype(np.float64) - (bound + h)
    # skimage winds faces for a field that *increases* outwards; density decreases outwards, so flip.
    return vertices, faces[:, ::-1].astype(np.int64)


def hidden_empty_space(occupied: torch.Tensor) -> torch.Tensor:
    """[R, R, R] bool: empty voxels that every one of the six axis-aligned lines to the border crosses occupied space on."""
    hidden = ~occupied
    for axis in range(3):
        for flip in (False, True):
            occ = occupied.flip(axis) if flip else occupied
            blocked = torch.cummax(occ.to(torch.uint8), axis).values.bool()  # an occupied voxel lies before it
            hidden &= blocked.flip(axis) if flip else blocked
    return hidden


def fill_hidden(grid: torch.Tensor, level: float) -> torch.Tensor:
    """Raise every empty voxel (below ``level``) that no axis-aligned line of sight from outside reaches.

    Such space is never seen, yet marching cubes gives it surfaces: enclosed pockets become inner shells and
    the foam inside a crisp, noisy NeRF becomes hundreds of handles. Concavities seen along an axis (a
    torus's hole, a cup's inside) are kept; a crevice seen only obliquely is filled. The occupied set is
    the iso-level's, i.e. opaque in the sense the level was chosen (silhouettes). Returns a new grid, or
    the input when nothing is hidden.
    """
    hidden = hidden_empty_space(grid >= level)
    if not hidden.any():
        return grid
    logger.info("clean-up: filled %d hidden empty voxels (cavities, tunnels behind the surface)", int(hidden.sum()))
    return torch.where(hidden, torch.full_like(grid, 2 * level), grid)


def blur(grid: torch.Tensor, sigma_voxels: float) -> torch.Tensor:
    """Gaussian blur of a density grid (sigma in voxels; 0: unchanged): voxel-scale noise would become handles."""
    if sigma_voxels <= 0:
        return grid
    return torch.from_numpy(ndimage.gaussian_filter(grid.detach().cpu().numpy(), sigma_voxels)).to(grid)


def drop_small_components(mesh: trimesh.Trimesh, min_fraction: float) -> trimesh.Trimesh:
    """Remove connected components with fewer faces than ``min_fraction`` x the largest's (floaters)."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    counts = np.bincount(labels)
    keep = counts >= min_fraction * counts.max()
    if keep.all():
        return mesh
    logger.info("clean-up: dropped %d of %d components (floaters)", int((~keep).sum()), len(counts))
    mesh = mesh.copy()
    mesh.update_faces(keep[labels])
    mesh.remove_unreferenced_vertices()
    return mesh


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Quadric decimation (fast-simplification) to at most ``max_faces`` faces."""
    target = max_faces
    vertices, faces = mesh.vertices, mesh.faces
    # The simplifier may stop a little above its target; ask again slightly lower if it does.
    for _ in range(3):
        vertices, faces = fast_simplification.simplify(mesh.vertices, mesh.faces, target_count=target)
        if len(faces) <= max_faces:
            break
        target = int(target * max_faces / len(faces)) - 1
    return trimesh.Trimesh(vertices, faces, process=True)


def clean_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    min_component_fraction: float,
    max_faces: int,
) -> trimesh.Trimesh:
    """Floater removal and hole filling, then decimation (0 = none).

    vertices [V, 3], faces [F, 3] in world units. Raises EmptySceneError if no face survives.
    """
    mesh = trimesh.Trimesh(vertices, faces, process=True)  # merges duplicate vertices
    if len(mesh.faces) == 0:
        raise EmptySceneError("empty scene: marching cubes produced no faces")
    if min_component_fraction > 0:
        mesh = drop_small_components(mesh, min_component_fraction)
    if not mesh.is_watertight:
        trimesh.repair.fill_holes(mesh)
    if max_faces > 0 and len(mesh.faces) > max_faces:
        mesh = decimate(mesh, max_faces)
        # Edge collapses can leave zero-area faces and split off slivers: clean once more.
        mesh.update_faces(mesh.nondegenerate_faces())
        mesh.remove_unreferenced_vertices()
        if min_component_fraction > 0:
            mesh = drop_small_components(mesh, min_component_fraction)
    if len(mesh.faces) == 0:
        raise EmptySceneError("empty scene: nothing left after mesh clean-up")
    return mesh


def filter_normals(
    mesh: trimesh.Trimesh,
    spatial_edges: float = FILTER_SPATIAL_EDGES,
    normal_sigma: float = FILTER_NORMAL_SIGMA,
    normal_iterations: int = FILTER_NORMAL_ITERATIONS,
    vertex_iterations: int = FILTER_VERTEX_ITERATIONS,
) -> trimesh.Trimesh:
    """Feature-preserving denoising: flattens the bumps a noisy field leaves on a face, keeps edges sharp.

    Bilateral filtering of the face normals (Zheng et al. 2011): each face's normal becomes the area-weighted mean of
    the normals of the faces sharing a vertex with it, weighted by a Gaussian of the centroids' distance and of the
    normals' difference, repeated ``normal_iterations`` times; then each vertex moves so its faces meet their
    filtered normals (Sun et al. 2007, ``vertex_iterations`` steps). Unlike Laplacian or Taubin smoothing it does
    not round a cube's edges, and only vertices move: topology, faces and watertightness are unchanged.
    """
    vertices, faces = np.asarray(mesh.vertices, np.float64).copy(), np.asarray(mesh.faces)
    nv, nf = len(vertices), len(faces)
    if nf == 0:
        return mesh
    incidence = mesh.faces_sparse.astype(np.float64).tocsr()  # [V, F]
    ring = (incidence.T @ incidence).tocoo()  # faces sharing at least one vertex, each face with itself
    i, j = ring.row, ring.col
    centroid, area, normal = mesh.triangles_center, mesh.area_faces, np.asarray(mesh.face_normals, np.float64)
    sigma = spatial_edges * float(mesh.edges_unique_length.mean())
    spatial = area[j] * np.exp(-((centroid[i] - centroid[j]) ** 2).sum(1) / (2 * sigma**2))
    for _ in range(normal_iterations):
        weight = spatial * np.exp(-((normal[i] - normal[j]) ** 2).sum(1) / (2 * normal_sigma**2))
        summed = np.stack([np.bincount(i, weight * normal[j, k], minlength=nf) for k in range(3)], -1)
        normal = summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-20)
    face_of, vertex_of = np.repeat(np.arange(nf), 3), faces.ravel()
    faces_per_vertex = np.maximum(np.bincount(vertex_of, minlength=nv), 1)[:, None]
    for _ in range(vertex_iterations):
        centroid = vertices[faces].mean(1)
        n = normal[face_of]
        pull = ((centroid[face_of] - vertices[vertex_of]) * n).sum(1, keepdims=True) * n
        vertices += np.stack([np.bincount(vertex_of, pull[:, k], minlength=nv) for k in range(3)], -1) / faces_per_vertex
    return trimesh.Trimesh(vertices, faces, process=False)
