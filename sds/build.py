"""The one place configs become objects: a ``match`` per swappable slot, heavy imports inside the arm."""

from __future__ import annotations

import logging

import torch

from sds.config import FieldConfig, GridEncoding, RenderConfig, RunConfig, SdfGeometry
from sds.errors import UserError

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda requested but torch sees no CUDA GPU; use device=cpu or device=auto")
    return torch.device(name)


def build_field(cfg: FieldConfig):
    match cfg.encoding:
        case GridEncoding():
            from sds.field.nerf import GridField

            return GridField(cfg)
        case _:
            from sds.field.nerf import HashGridField

            geo = cfg.geometry
            if isinstance(geo, SdfGeometry) and (geo.redistance_every or geo.eikonal):
                log.info("field: a hash grid's distance is not reset and has no eikonal term (grid only)")
            return HashGridField(cfg)


def build_background(cfg: RenderConfig):
    match cfg.background:
        case "white":
            from sds.field.background import ConstantBackground

            return ConstantBackground((1.0, 1.0, 1.0))
        case "mlp":
            from sds.field.background import MLPBackground

            return MLPBackground()
    raise ValueError(f"render.background: unknown {cfg.background!r}")  # pragma: no cover


def build_scene(cfg: RunConfig, device: torch.device):
    """Field, background and renderer for a run, on device."""
    from sds.render.renderer import VolumeRenderer

    field = build_field(cfg.field).to(device)
    background = build_background(cfg.render).to(device)
    renderer = VolumeRenderer(field, background, cfg.render.samples_per_ray, cfg.render.sampler)
    return field, background, renderer
