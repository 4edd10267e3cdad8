"""The one place configs become objects: a ``match`` per swappable slot, heavy imports inside the arm."""

from __future__ import annotations

import torch

from sds.config import FieldConfig, RenderConfig, RunConfig
from sds.errors import UserError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda requested but torch sees no CUDA GPU; use device=cpu or device=auto")
    return torch.device(name)


def build_field(cfg: FieldConfig):
    match cfg.kind:
        case "grid":
            from sds.field.nerf import GridField

            return GridField(cfg)
        case "hashgrid":
            from sds.field.nerf import HashGridField

            return HashGridField(cfg)
    raise ValueError(f"field.kind: unknown {cfg.kind!r}")  # pragma: no cover - validated in config


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
    renderer = VolumeRenderer(field, background, cfg.render.samples_per_ray, cfg.render.ambient, cfg.render.sampler,
                              cfg.render.normal_gradient_scale)
    return field, background, renderer
