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
