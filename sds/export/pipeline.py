"""``export_result``: trained field -> cleaned, textured mesh files + preview image + turntable video."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import trimesh

from sds.export.grid import sample_density_grid
from sds.export.interfaces import DensityAlbedoField, EmptySceneError, ExportOutput, RenderFn
from sds.export.iso_level import auto_iso_level
from sds.export.media import write_preview, write_turntable
from sds.export.raster import mesh_render_fn, read_glb, render_mesh_from_arrays
from sds.export.surface import blur, clean_mesh, extract_surface, fill_hidden, filter_normals
from sds.export.surface_color import samples_per_point, surface_color_fn
from sds.export.texture import TexturedMesh, bake_texture, weld
from sds.export.writers import write_glb, write_obj, write_ply
from sds.lattice import grid_spacing

if TYPE_CHECKING:
    from sds.config import ExportConfig

logger = logging.getLogger(__name__)

# In the log and in run.json's warnings (where a re-export replaces what starts with "export:").
SCENE_BOX_WARNING = "export: the surface reaches the edge of the scene box and is cut flat there"

MESH_FORMATS = ("glb", "obj", "ply")

CHUNK_SIZE = 65536
"""Points per field query while sampling the grid and baking (bounds memory)."""
BLUR_VOXELS = 1.0
"""Gaussian blur (sigma, voxels) of the density grid before the iso-level: voxel noise would become handles."""
MIN_COMPONENT_FRACTION = 0.05
"""Connected components with fewer faces than this fraction of the largest are floaters, dropped."""
BAKE_DEPTH = 0.06
"""Half-length (world units) of the ray along each normal whose composited albedo a texel gets: the colour a
camera facing the surface sees in the NeRF, wherever the iso-level cuts the rendered layer."""
ROUGHNESS = 0.8
VIDEO_FRAMES = 36


@torch.no_grad()
def export_result(
    field: DensityAlbedoField,
    bound: float,
    render_fn: RenderFn,
    out_dir: Path,
    cfg: ExportConfig,
    show_progress: bool = True,
    name: str = "model",
) -> ExportOutput:
    """Extract, clean, texture and write the field's surface, plus a preview and a turntable.

    Phases (each timed in ``ExportOutput.timings_s``): density on a cfg.resolution^3 grid over
    [-bound, bound]^3; the iso-level (cfg.threshold, or automatic: see ``iso_level.auto_iso_level``);
    marching cubes; clean-up (floaters, holes, decimation, feature-preserving normal filtering); UV unwrap and colour
    bake (what the NeRF shows along each normal, see ``surface_color``); normalisation (centre the bounding
    box at the origin, longest side 1) if cfg.normalize;
    then ``model.glb`` / ``model.obj`` (+ ``model.mtl``, ``texture.png``) / ``model.ply`` (welded, vertex
    colours) per cfg.formats, named ``name`` inside (a file-safe slug of the prompt); ``preview.png`` (the
    exported mesh, read back from model.glb when written, above the NeRF, from the same cameras) and, if
    cfg.video, ``turntable.mp4`` of the mesh (``.gif`` without ffmpeg).

    Files are written to a hidden staging folder beside out_dir and moved in (``os.replace``) only
    once all of them exist, so a failure never leaves half-written files. Raises EmptySceneError
    (writing nothing) when there is no surface.
    """
    _check_formats(cfg.formats)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"  # goes into OBJ/PLY text headers
    timings: dict[str, float] = {}
    device = _field_device(field)
    with _timed(timings, "grid"):
        grid = sample_density_grid(
            field.density, bound, cfg.resolution, CHUNK_SIZE, show_progress, device
        )
        grid = blur(grid, BLUR_VOXELS)
    with _timed(timings, "threshold"):
        if cfg.threshold is None:
            level, iou = auto_iso_level(grid, bound, render_fn, CHUNK_SIZE)
        else:
            level, iou = float(cfg.threshold), None
    with _timed(timings, "fill_hidden"):  # never seen from outside, enclosed pockets only add inner shells
        grid = fill_hidden(grid, level)
    with _timed(timings, "marching_cubes"):
        vertices, faces = extract_surface(grid, bound, level)
    with _timed(timings, "cleanup"):
        mesh = clean_mesh(vertices, faces, MIN_COMPONENT_FRACTION, cfg.max_faces)
        mesh = filter_normals(mesh)  # the field's noise leaves bumps on flat faces; edges are kept
    _check_not_a_speck(mesh.vertices, bound)
    touches_bound = reaches_bound(mesh.vertices, bound, grid_spacing(bound, cfg.resolution))
    if touches_bound:
        logger.warning("%s ([-%g, %g]^3), so the mesh's flat sides are the box's, not the object's (the NeRF grew "
                       "to fill its box)", SCENE_BOX_WARNING, bound, bound)
    with _timed(timings, "texture"):
        color_fn = surface_color_fn(field, BAKE_DEPTH)
        chunk = max(1, CHUNK_SIZE // samples_per_point(BAKE_DEPTH))
        textured = bake_texture(mesh, color_fn, cfg.texture_size, chunk, device)
    center, scale = unit_box_transform(textured.vertices) if cfg.normalize else (np.zeros(3), 1.0)
    textured = replace(textured, vertices=(textured.vertices - center) * scale)
    placed = (center, scale)  # maps the written mesh back onto the NeRF for the previews
    files = _publish(out_dir, lambda staging: _write_files(textured, name, placed, render_fn, bound, staging, cfg,
                                                           timings))
    watertight = trimesh.Trimesh(*weld(textured)[:2], process=False).is_watertight
    logger.info("export: %d faces, %d vertices (%s once welded) -> %s", len(textured.faces), len(textured.vertices),
                "watertight" if watertight else "not watertight", out_dir)
    return ExportOutput(
        out_dir=out_dir,
        files=files,
        threshold=level,
        threshold_is_automatic=cfg.threshold is None,
        silhouette_iou=iou,
        faces_before_cleanup=len(faces),
        faces_after_cleanup=len(mesh.faces),
        num_vertices=len(textured.vertices),
        texture_size=cfg.texture_size,
        scale=scale,
        center=(float(center[0]), float(center[1]), float(center[2])),
        touches_bound=touches_bound,
        watertight=watertight,
        timings_s=timings,
    )


def reaches_bound(vertices: np.ndarray, bound: float, spacing: float) -> bool:
    """Whether a surface (world vertices [V, 3]) comes within one grid spacing of the scene box's faces. The
    field is empty outside [-bound, bound]^3, so a surface there is the box cutting the object, not the object."""
    return bool(np.abs(vertices).max(initial=0.0) >= bound - spacing)


SPECK_FRACTION = 0.05
"""A surface whose longest side spans less than this fraction of the scene box's side is a collapsed field, not
an object: normalisation would scale it up to unit size and hide that."""


def _check_not_a_speck(vertices: np.ndarray, bound: float) -> None:
    extent = float((vertices.max(0) - vertices.min(0)).max()) if len(vertices) else 0.0
    if extent < SPECK_FRACTION * 2 * bound:
        raise EmptySceneError(f"the field collapsed to a speck (its surface spans {extent:.3f} of the scene box's "
                              f"{2 * bound:g}); nothing was exported. Try another seed or a lower guidance scale")


def unit_box_transform(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """(center [3], scale) so that (vertices - center) * scale has its bounding box centred at the
    origin with its longest side 1. Uniform scale: shapes and normals are unchanged."""
    lo, hi = vertices.min(0), vertices.max(0)
    return (lo + hi) / 2, 1.0 / float((hi - lo).max())


def _write_files(
    mesh: TexturedMesh,
    name: str,
    placed: tuple[np.ndarray, float],
    render_fn: RenderFn,
    bound: float,
    folder: Path,
    cfg: ExportConfig,
    timings: dict[str, float],
) -> dict[str, Path]:
    """Write every requested output into ``folder``; returns kind -> path. placed: the (center, scale) of the
    normalisation, undone for the previews so the NeRF's cameras see the mesh where the NeRF is."""
    files: dict[str, Path] = {}
    with _timed(timings, "write"):
        if "glb" in cfg.formats:
            files["glb"] = folder / "model.glb"
            write_glb(mesh, files["glb"], ROUGHNESS, name)
        if "obj" in cfg.formats:
            files["obj"] = folder / "model.obj"
            files["mtl"], files["texture"] = write_obj(mesh, files["obj"], name)
        if "ply" in cfg.formats:
            files["ply"] = folder / "model.ply"
            write_ply(mesh, files["ply"], name)
    with _timed(timings, "preview"):
        files["preview"] = folder / "preview.png"
        label, render_mesh_fn = _mesh_for_previews(mesh, files.get("glb"), placed)
        rows = {label: render_mesh_fn, "NeRF (volume render)": render_fn}
        write_preview(rows, bound, files["preview"], cfg.preview_resolution)
    if cfg.video:
        with _timed(timings, "video"):
            files["video"] = write_turntable(render_mesh_fn, bound, folder, VIDEO_FRAMES, cfg.preview_resolution)
    return files


def _mesh_for_previews(
    mesh: TexturedMesh, glb: Path | None, placed: tuple[np.ndarray, float]
) -> tuple[str, RenderFn]:
    """(row label, renderer) of the mesh as the user gets it: read back from model.glb (what a viewer loads), or,
    when no glb is written, the same arrays from memory."""
    center, scale = placed
    if glb is not None:
        return "exported mesh (model.glb)", mesh_render_fn(read_glb(glb, center, scale))
    arrays = render_mesh_from_arrays(mesh.vertices, mesh.faces, mesh.normals, mesh.uvs, mesh.texture, center, scale)
    return "exported mesh", mesh_render_fn(arrays)


def _publish(out_dir: Path, write: Callable[[Path], dict[str, Path]]) -> dict[str, Path]:
    """Run ``write`` into a staging folder beside out_dir, then move each file into out_dir.

    The staging folder sits in out_dir's parent (same file system), so each move is an atomic
    rename; it is removed whatever happens.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        staged = write(staging)
        out_dir.mkdir(exist_ok=True)
        published = {}
        for kind, path in staged.items():
            published[kind] = out_dir / path.name
            os.replace(path, published[kind])
        return published
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_formats(formats: tuple[str, ...]) -> None:
    unknown = sorted(set(formats) - set(MESH_FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {list(MESH_FORMATS)}")


def _field_device(field: DensityAlbedoField) -> torch.device:
    """Where to put query points: the device of the field's first parameter (nn.Module), else CPU."""
    parameters = getattr(field, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            return parameter.device
    return torch.device(getattr(field, "device", "cpu"))


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = time.perf_counter() - start
        logger.debug("export phase %s: %.2f s", phase, timings[phase])
