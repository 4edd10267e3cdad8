"""What the exporter needs from the rest of sds (a field and a renderer), and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sds.errors import UserError

if TYPE_CHECKING:
    import torch

    from sds.cameras import Cameras


class DensityAlbedoField(Protocol):
    """A trained radiance field, queried in world space (+Y up, inside [-bound, bound]^3).

    The exporter calls both methods under ``torch.no_grad()`` with at most ``ExportConfig.chunk_size``
    points at a time.
    """

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] world points -> [N] non-negative volume density (1 / world units)."""
        ...

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] world points -> [N, 3] base colour in [0, 1], in the same (sRGB-encoded) space as renders."""
        ...


class RenderFn(Protocol):
    """A renderer of the scene: the NeRF's own volume render (the auto iso-level, the preview's NeRF row) or the
    exported mesh's (``raster.mesh_render_fn``: the preview's mesh row and the turntable)."""

    def __call__(self, cameras: Cameras, height: int, width: int, shaded: bool = True) -> dict[str, torch.Tensor]:
        """Render B views: ``"rgb"`` [B, H, W, 3] and ``"opacity"`` [B, H, W], both in [0, 1].

        ``shaded=False`` asks only for the opacity (silhouettes): the renderer may then skip the lighting,
        which needs normals, and return unlit colour."""
        ...


class EmptySceneError(UserError, ValueError):
    """The field holds no surface to export (nothing crosses the iso-level, or clean-up removed it all)."""


@dataclass
class ExportOutput:
    """What ``export_result`` wrote and measured."""

    out_dir: Path
    files: dict[str, Path]  # kind ("glb", "obj", "mtl", "texture", "ply", "preview", "video") -> final path
    threshold: float  # density iso-level used for marching cubes (1 / world units)
    threshold_is_automatic: bool  # True when chosen by silhouette matching (cfg.threshold is None)
    silhouette_iou: float | None  # silhouette IoU (pooled over views) at the automatic level; None if fixed
    faces_before_cleanup: int  # straight out of marching cubes
    faces_after_cleanup: int  # after floater removal, hole filling, smoothing and decimation
    num_vertices: int  # of the written mesh (UV seams split vertices)
    texture_size: int  # texture width = height, in texels
    scale: float  # normalised = (world - center) * scale; (center, scale) = ((0, 0, 0), 1) if not normalised
    center: tuple[float, float, float]
    touches_bound: bool  # the surface reaches the scene box's faces, which cut it flat (see reaches_bound)
    watertight: bool  # the welded mesh (model.ply's) is closed: every edge has exactly two faces
    timings_s: dict[str, float] = field(default_factory=dict)  # phase -> wall-clock seconds
