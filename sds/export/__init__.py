"""Mesh export: a trained field -> textured glTF/OBJ/PLY, preview image and turntable video.

Entry point: ``export_result(field, bound, render_fn, out_dir, cfg)``; see ``sds.export.pipeline``.
"""

from __future__ import annotations

from sds.export.interfaces import DensityAlbedoField, EmptySceneError, ExportOutput, RenderFn
from sds.export.pipeline import export_result

__all__ = ["DensityAlbedoField", "EmptySceneError", "ExportOutput", "RenderFn", "export_result"]
