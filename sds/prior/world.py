"""The built-in prior's world: five primitives in nine colours, with exact geometry.

Everything here is ground truth: the prior is trained on renders of these shapes, and the fidelity
benchmark scores meshes against the same signed distance functions.

Geometry (world units, +Y up, every shape centred on the origin's vertical axis):
- sphere:   radius 0.5
- cube:     axis-aligned, half-extent 0.4 (side 0.8)
- cylinder: axis +Y, radius 0.4, y in [-0.4, 0.4]
- cone:     axis +Y, base radius 0.5 at y = -0.4, apex at y = +0.5
- torus:    in the XZ plane, major radius 0.4, minor radius 0.15

Colours are albedos in display RGB (0-1); the renderer applies no gamma.
"""

from __future__ import annotations

import torch

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus")

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.88),
    "yellow": (0.95, 0.85, 0.12),
    "purple": (0.55, 0.20, 0.75),
    "orange": (0.96, 0.50, 0.08),
    "cyan": (0.12, 0.80, 0.85),
    "pink": (0.96, 0.50, 0.72),
    "white": (0.95, 0.95, 0.95),
}

BACKGROUND_RGB = (1.0, 1.0, 1.0)


def _length(*components: torch.Tensor) -> torch.Tensor:
    # sqrt of a sum of squares: torch.norm over a size-3 dim is much slower on CPU.
    return sum(c * c for c in components).sqrt()


def sdf_sphere(p: torch.Tensor) -> torch.Tensor:
    return _length(p[..., 0], p[..., 1], p[..., 2]) - 0.5


def sdf_cube(p: torch.Tensor) -> torch.Tensor:
    q = p.abs() - 0.4
    outside = _length(*(q.clamp(min=0).unbind(-1)))
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside


def sdf_cylinder(p: torch.Tensor) -> torch.Tensor:
    d0 = _length(p[..., 0], p[..., 2]) - 0.4
    d1 = p[..., 1].abs() - 0.4
    outside = _length(d0.clamp(min=0), d1.clamp(min=0))
    return outside + torch.maximum(d0, d1).clamp(max=0)


def sdf_cone(p: torch.Tensor) -> torch.Tensor:
    """Exact capped cone (apex radius 0), base radius 0.5 at y=-0.4, apex at y=0.5."""
    half_height, r_base, r_top = 0.45, 0.5, 0.0
    qx = _length(p[..., 0], p[..., 2])
    qy = p[..., 1] - 0.05  # the cone's mid-height sits at y = 0.05
    k1x, k1y = r_top, half_height
    k2x, k2y = r_top - r_base, 2 * half_height
    rim = torch.where(qy < 0, torch.full_like(qx, r_base), torch.full_like(qx, r_top))
    cax = qx - torch.minimum(qx, rim)
    cay = qy.abs() - half_height
    t = (((k1x - qx) * k2x + (k1y - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0, 1)
    cbx = qx - k1x + k2x * t
    cby = qy - k1y + k2y * t
    sign = torch.where((cbx < 0) & (cay < 0), -1.0, 1.0)
    return sign * torch.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby).sqrt()


def sdf_torus(p: torch.Tensor) -> torch.Tensor:
    ring = _length(p[..., 0], p[..., 2]) - 0.4
    return _length(ring, p[..., 1]) - 0.15


SDF = {
    "sphere": sdf_sphere,
    "cube": sdf_cube,
    "cylinder": sdf_cylinder,
    "cone": sdf_cone,
    "torus": sdf_torus,
}

GENUS = {"sphere": 0, "cube": 0, "cylinder": 0, "cone": 0, "torus": 1}


def sdf(shape: str, points: torch.Tensor) -> torch.Tensor:
    """Signed distance [...] of points [..., 3] to the named primitive (negative inside)."""
    return SDF[shape](points)


def occupancy(shape: str, points: torch.Tensor) -> torch.Tensor:
    """Boolean [...] inside-ness of points [..., 3]."""
    return sdf(shape, points) < 0
