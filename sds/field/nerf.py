"""NeRF fields: density (from a logit with a centred fog ball, or from a signed distance) and albedo.

Two kinds behind one interface (``query`` / ``density`` / ``albedo`` / ``param_groups``):
- ``GridField``: dense voxel grids (geometry and albedo apart) read with trilinear ``grid_sample`` (cheap on CPU);
- ``HashGridField``: a multi-resolution hash encoding + small MLP heads (Instant-NGP style).

Parameters come in groups with a role, "geometry" or "albedo", so a stage can train one faster than the other
(``StageConfig.lr_scale``).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sds.config import FieldConfig, OptimConfig, SdfGeometry
from sds.field.encoding import HashGridEncoding
from sds.lattice import grid_axis, grid_spacing

log = logging.getLogger(__name__)

NORMAL_EPS = 0.02
"""Step (world units) of the central differences that give normals."""


def laplace_density(sdf: torch.Tensor, beta: float) -> torch.Tensor:
    """VolSDF's density from a signed distance (negative inside): Laplace CDF of -sdf with scale beta, over beta.

    1 / beta deep inside, 0.5 / beta on the surface, 0.5 exp(-sdf / beta) / beta outside."""
    s = sdf / beta
    inside = 1 - 0.5 * torch.exp(s.clamp(max=0))
    outside = 0.5 * torch.exp(-s.clamp(min=0))
    return torch.where(s <= 0, inside, outside) / beta


class NeRFField(nn.Module):
    """Base: subclasses return raw [N, 4] (density logit, 3 albedo logits) from ``raw(points)``."""

    growth_sign: float | None = None
    """The sign of a change of a geometry parameter that grows the shape there, where one sign does (a grid of
    values read by interpolation); None where no such sign exists (hash features through an MLP)."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg
        self.geometry = cfg.geometry
        self.is_sdf = isinstance(cfg.geometry, SdfGeometry)
        self.bound = cfg.bound
        self.albedo_offset = float(np.log(cfg.albedo_init / (1 - cfg.albedo_init)))  # logit: sigmoid(0 + it) = init

    def raw(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reach(self) -> float | None:
        """How far out the shape extends, as a share of the scene box's half-width; None where the field has no
        surface to measure during the run (a density's surface is a threshold chosen at export)."""
        return None

    def blob(self, points: torch.Tensor) -> torch.Tensor:
        """[N] density-logit bias: blob_density at the centre, falling linearly, 0 at blob_radius."""
        r = points.pow(2).sum(-1).sqrt()
        return self.geometry.blob_density * (1 - r / self.cfg.blob_radius)

    def start_sphere_sdf(self, points: torch.Tensor) -> torch.Tensor:
        """[N] signed distance to the start sphere of the sdf geometry (radius blob_radius)."""
        return points.pow(2).sum(-1).sqrt() - self.cfg.blob_radius

    def signed_distance(self, raw_channel: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """[N] the sdf geometry's distance: the field's channel 0 (scaled) plus the start sphere."""
        return self.geometry.scale * raw_channel + self.start_sphere_sdf(points)

    def activate_density(self, logit: torch.Tensor) -> torch.Tensor:
        if self.geometry.activation == "exp":
            return torch.exp(logit.clamp(max=15))
        return F.softplus(logit)

    def query(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points [N, 3] (world) -> density [N] (>= 0, per world unit), albedo [N, 3] in [0, 1]."""
        raw = self.raw(points)
        if self.is_sdf:
            density = laplace_density(self.signed_distance(raw[:, 0], points), self.geometry.beta)
        else:
            density = self.activate_density(raw[:, 0] + self.blob(points))
        inside = (points.abs() <= self.bound).all(-1)
        return density * inside, torch.sigmoid(raw[:, 1:] + self.albedo_offset)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.query(points)[0]

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return self.query(points)[1]

    def normals(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] unit normals by central differences: the normalised gradient of the signed distance (sdf
        geometry) or minus that of the density. A crisp sdf density is flat inside and outside its thin band,
        so its own gradient would give random normals wherever a sample misses the band."""
        eps = NORMAL_EPS
        offsets = torch.eye(3, device=points.device, dtype=points.dtype) * eps
        shifted = torch.cat([points + offsets[:, None] * s for s in (1, -1)]).reshape(-1, 3)  # [6N, 3]
        if self.is_sdf:
            outward = self.signed_distance(self.raw(shifted)[:, 0], shifted)
        else:
            outward = -self.density(shifted)
        d = outward.reshape(2, 3, -1)
        grad = (d[0] - d[1]).T / (2 * eps)  # [N, 3]
        return grad / grad.pow(2).sum(-1, keepdim=True).add(1e-12).sqrt()

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        """Adam's groups, each with a "role" (geometry / albedo) that stages scale and its base rate
        ("initial_lr", as torch's schedulers name it)."""
        raise NotImplementedError


def _forward_differences(d: torch.Tensor) -> torch.Tensor:
    """[3, r-1, r-1, r-1] forward differences of a lattice [r, r, r] along its three axes, on the common corner."""
    r = d.shape[-1]
    return torch.stack([torch.diff(d, dim=k).narrow((k + 1) % 3, 0, r - 1).narrow((k + 2) % 3, 0, r - 1)
                        for k in range(3)])


def _group(params, lr: float, role: str) -> dict:
    return {"params": list(params), "lr": lr, "initial_lr": lr, "role": role}


class GridField(NeRFField):
    """Geometry (1 channel) and albedo (3 channels) each as a fine grid plus coarser grids summed onto it: one
    coarse voxel moves a whole region, so SDS can reshape the start globally instead of voxel by voxel."""

    def __init__(self, cfg: FieldConfig):
        super().__init__(cfg)
        r = cfg.encoding.resolution
        levels = [c for c in cfg.encoding.coarse_resolutions if c < r]
        if len(levels) < len(cfg.encoding.coarse_resolutions):
            log.info("coarse grid levels %s are not coarser than the grid's resolution %d: left out",
                     [c for c in cfg.encoding.coarse_resolutions if c >= r], r)
        self.geometry_grids = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, c, c, c)) for c in (r, *levels)])
        self.albedo_grids = nn.ParameterList([nn.Parameter(torch.zeros(1, 3, c, c, c)) for c in (r, *levels)])
        axis = grid_axis(self.bound, r)
        lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).flip(-1)  # [z, y, x, (x, y, z)]
        self.register_buffer("lattice", lattice, persistent=False)
        self.register_buffer("lattice_reach", lattice.abs().amax(-1) / self.bound, persistent=False)
        # Each level adds to the distance (or density logit) with a positive weight: a falling distance grows the
        # shape, as does a rising density.
        self.growth_sign = -1.0 if self.is_sdf else 1.0

    @staticmethod
    def _summed(grids: nn.ParameterList) -> torch.Tensor:
        """The fine grid plus every coarse grid upsampled onto it."""
        fine, *coarse = grids
        size = fine.shape[2:]
        return sum((F.interpolate(g, size=size, mode="trilinear", align_corners=True) for g in coarse), fine)

    def full_grid(self) -> torch.Tensor:
        """[1, 4, r, r, r]: geometry and albedo summed over levels (one grid_sample per query, not one per level)."""
        return torch.cat([self._summed(self.geometry_grids), self._summed(self.albedo_grids)], dim=1)

    def raw(self, points: torch.Tensor) -> torch.Tensor:
        coords = (points / self.bound).view(1, -1, 1, 1, 3)
        out = F.grid_sample(self.full_grid(), coords, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(4, -1).T

    @property
    def voxel_size(self) -> float:
        return grid_spacing(self.bound, self.geometry_grids[0].shape[-1])

    def lattice_distance(self) -> torch.Tensor:
        """[r, r, r] the sdf geometry's distance at the voxels (indexed z, y, x like the grid)."""
        return self.signed_distance(self._summed(self.geometry_grids)[0, 0], self.lattice)

    @torch.no_grad()
    def reach(self) -> float | None:
        """The sdf geometry's farthest voxel inside the surface along any axis (a share of the box's half-width; 0
        when no voxel is inside). The box bounds a field along its axes, so this is how near the box cuts it."""
        if not self.is_sdf:
            return None
        inside = self.lattice_distance() < 0
        return float(self.lattice_reach[inside].max()) if inside.any() else 0.0

    def eikonal(self) -> torch.Tensor:
        """mean((|grad d| - 1)^2) of the sdf geometry's distance over the voxel lattice (forward differences)."""
        grads = _forward_differences(self.lattice_distance()) / self.voxel_size
        norm = sum(g.pow(2) for g in grads).add(1e-12).sqrt()  # the three axes added in order, as before
        return (norm - 1).pow(2).mean()

    def normal_turning(self, band_voxels: float = 2.0) -> tuple[torch.Tensor, int]:
        """(Sum, count) of the change of the sdf's unit normal from a voxel to its neighbour, |n(x + e_k) - n(x)|,
        over the neighbour pairs (along the three axes) in a band just outside the surface (from half a voxel
        inside to band_voxels outside).

        The norm, not its square: like total variation, it charges how far the normal turns, not how fast, so an
        edge between flat faces costs the same sharp or rounded, and a surface crumpled into bumps costs more.
        The band is outside because inside, a true distance has a kink wherever two faces are equally near (a
        cube's diagonal planes): counting it would charge sharp edges twice."""
        d = self.lattice_distance()
        r = d.shape[-1]
        grads = _forward_differences(d)
        normals = grads / grads.pow(2).sum(0, keepdim=True).add(1e-12).sqrt()
        corner = d[:-1, :-1, :-1].detach() / self.voxel_size
        near = (corner > -0.5) & (corner < band_voxels)
        total, count = d.new_zeros(()), 0
        for k in range(3):
            change = torch.diff(normals, dim=k + 1).pow(2).sum(0).add(1e-12).sqrt()  # [.., r-2 along k, ..]
            mask = near.narrow(k, 0, r - 2) & near.narrow(k, 1, r - 2)
            total = total + change[mask].sum()
            count += int(mask.sum())
        return total, count

    def normal_roughness(self) -> torch.Tensor:
        """The normal's total turning (normal_turning's sum) per lattice cross-section ((r - 1)^2 pairs).

        A sum, not a mean: a surface's cost grows with its size (a sphere's with its radius), so the penalty
        never pays the field to grow (a mean over the surface would: a bigger sphere turns less per voxel)."""
        total, _ = self.normal_turning()
        return total / (self.geometry_grids[0].shape[-1] - 1) ** 2

    @torch.no_grad()
    def redistance(self) -> bool:
        """Make the sdf geometry's channel a true distance to its own zero level set again (|grad d| = 1).

        SDS drives the distance towards whatever renders right, and a flat plateau near 0 inside renders as
        opaque as a surface: a fog that meshes into handles (docs/tuning.md, sweep 10). The eikonal penalty is
        too weak to undo that at weights that leave the shape alone. Resetting the distance keeps the surface
        and drops the plateau. Voxels next to the surface keep their sub-voxel crossing (d / |grad d|); every
        other voxel gets its distance to the closest surface point (foot) of such a voxel. The result goes into
        the fine level, so the coarse levels keep their values. Returns False (and changes nothing) when the
        lattice has no surface: all inside or all outside."""
        from scipy.ndimage import distance_transform_edt

        h = self.voxel_size
        d = self.lattice_distance().double().cpu().numpy()
        inside = d < 0
        band = np.zeros_like(inside)
        for axis in range(3):  # voxels with a 6-neighbour on the other side of the surface
            lo, hi = [slice(None)] * 3, [slice(None)] * 3
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            crossing = inside[tuple(lo)] != inside[tuple(hi)]
            band[tuple(lo)] |= crossing
            band[tuple(hi)] |= crossing
        if not band.any():
            return False
        grad = np.stack(np.gradient(d, h))  # [3 (z, y, x), r, r, r]
        slope = np.sqrt((grad**2).sum(0))
        near = np.clip(d / np.maximum(slope, 1e-6), -h, h)  # the surface is less than a voxel from a band voxel
        # Each band voxel's closest surface point (its foot), in voxel units: step back along the normal.
        voxel = np.indices(d.shape, dtype=np.float64)
        foot = voxel - near / h * grad / np.maximum(slope, 1e-6)
        _, owner = distance_transform_edt(~band, return_indices=True)  # the nearest band voxel of every voxel
        distance2 = ((voxel - foot[(slice(None), *owner)]) ** 2).sum(0)
        # The nearest band voxel's foot need not be the nearest foot (ties, slanted surfaces): offer every voxel
        # its neighbours' feet too. np.roll wraps at the border, but any foot is a surface point, so taking the
        # closest one found can only make the distance more exact.
        for shift in itertools.product((-1, 0, 1), repeat=3):
            if any(shift):
                candidate = np.roll(owner, shift, axis=(1, 2, 3))
                candidate2 = ((voxel - foot[(slice(None), *candidate)]) ** 2).sum(0)
                closer = candidate2 < distance2
                owner = np.where(closer, candidate, owner)
                distance2 = np.where(closer, candidate2, distance2)
        distance = h * np.sqrt(distance2)
        new = np.where(band, near, np.where(inside, -distance, distance))
        fine = self.geometry_grids[0]
        new = torch.from_numpy(new).to(fine)
        coarse = self._summed(self.geometry_grids)[0, 0] - fine[0, 0]
        fine[0, 0] = (new - self.start_sphere_sdf(self.lattice)) / self.geometry.scale - coarse
        return True

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        return [_group(self.geometry_grids.parameters(), cfg.lr_grid, "geometry"),
                _group(self.albedo_grids.parameters(), cfg.lr_grid, "albedo")]


HASH_FEATURES_PER_LEVEL = 2
HASH_BASE_RESOLUTION = 8


class HashGridField(NeRFField):
    """Hash-grid features -> an MLP trunk -> a geometry head and an albedo head. The shared features and trunk
    train with the geometry (a texture stage that slows the geometry leaves the albedo head at full rate)."""

    def __init__(self, cfg: FieldConfig):
        super().__init__(cfg)
        e = cfg.encoding
        self.encoding = HashGridEncoding(e.levels, HASH_FEATURES_PER_LEVEL, e.log2_table_size, HASH_BASE_RESOLUTION,
                                         e.max_resolution)
        self.trunk = nn.Sequential(nn.Linear(self.encoding.output_dim, e.hidden_dim), nn.ReLU())
        self.geometry_head = nn.Linear(e.hidden_dim, 1)
        self.albedo_head = nn.Linear(e.hidden_dim, 3)

    def raw(self, points: torch.Tensor) -> torch.Tensor:
        h = self.trunk(self.encoding((points / self.bound + 1) / 2))
        return torch.cat([self.geometry_head(h), self.albedo_head(h)], dim=-1)

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        return [_group(self.encoding.parameters(), cfg.lr_grid, "geometry"),
                _group([*self.trunk.parameters(), *self.geometry_head.parameters()], cfg.lr_mlp, "geometry"),
                _group(self.albedo_head.parameters(), cfg.lr_mlp, "albedo")]
