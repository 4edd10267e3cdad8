"""NeRF fields: density (from a logit with a centred fog ball, or from a signed distance) and albedo.

Two kinds behind one interface (``query`` / ``density`` / ``albedo`` / ``param_groups``):
- ``GridField``: a dense voxel grid of 4 channels read with trilinear ``grid_sample`` (cheap on CPU);
- ``HashGridField``: a multi-resolution hash encoding + small MLP heads (Instant-NGP style).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from sds.config import FieldConfig, OptimConfig
from sds.field.encoding import HashGridEncoding

log = logging.getLogger(__name__)


def laplace_density(sdf: torch.Tensor, beta: float) -> torch.Tensor:
    """VolSDF's density from a signed distance (negative inside): Laplace CDF of -sdf with scale beta, over beta.

    1 / beta deep inside, 0.5 / beta on the surface, 0.5 exp(-sdf / beta) / beta outside."""
    s = sdf / beta
    inside = 1 - 0.5 * torch.exp(s.clamp(max=0))
    outside = 0.5 * torch.exp(-s.clamp(min=0))
    return torch.where(s <= 0, inside, outside) / beta


class NeRFField(nn.Module):
    """Base: subclasses return raw [N, 4] (density logit, 3 albedo logits) from ``raw(points)``."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg
        self.bound = cfg.bound

    def raw(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def blob(self, points: torch.Tensor) -> torch.Tensor:
        """[N] density-logit bias: blob_density at the centre, falling linearly, 0 at blob_radius."""
        r = points.pow(2).sum(-1).sqrt()
        return self.cfg.blob_density * (1 - r / self.cfg.blob_radius)

    def start_sphere_sdf(self, points: torch.Tensor) -> torch.Tensor:
        """[N] signed distance to the start sphere of the sdf geometry (radius blob_radius)."""
        return points.pow(2).sum(-1).sqrt() - self.cfg.blob_radius

    def signed_distance(self, raw_channel: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """[N] the sdf geometry's distance: the field's channel 0 (scaled) plus the start sphere."""
        return self.cfg.sdf_scale * raw_channel + self.start_sphere_sdf(points)

    def activate_density(self, logit: torch.Tensor) -> torch.Tensor:
        if self.cfg.density_activation == "exp":
            return torch.exp(logit.clamp(max=15))
        return F.softplus(logit)

    def query(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points [N, 3] (world) -> density [N] (>= 0, per world unit), albedo [N, 3] in [0, 1]."""
        raw = self.raw(points)
        if self.cfg.geometry == "sdf":
            density = laplace_density(self.signed_distance(raw[:, 0], points), self.cfg.sdf_beta)
        else:
            density = self.activate_density(raw[:, 0] + self.blob(points))
        inside = (points.abs() <= self.bound).all(-1)
        return density * inside, torch.sigmoid(raw[:, 1:])

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.query(points)[0]

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return self.query(points)[1]

    def normals(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] unit normals by central differences: the normalised gradient of the signed distance (sdf
        geometry) or minus that of the density. A crisp sdf density is flat inside and outside its thin band,
        so its own gradient would give random normals wherever a sample misses the band."""
        eps = self.cfg.normal_eps
        offsets = torch.eye(3, device=points.device, dtype=points.dtype) * eps
        shifted = torch.cat([points + offsets[:, None] * s for s in (1, -1)]).reshape(-1, 3)  # [6N, 3]
        if self.cfg.geometry == "sdf":
            outward = self.signed_distance(self.raw(shifted)[:, 0], shifted)
        else:
            outward = -self.density(shifted)
        d = outward.reshape(2, 3, -1)
        grad = (d[0] - d[1]).T / (2 * eps)  # [N, 3]
        return grad / grad.pow(2).sum(-1, keepdim=True).add(1e-12).sqrt()

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        raise NotImplementedError


class GridField(NeRFField):
    def __init__(self, cfg: FieldConfig):
        super().__init__(cfg)
        r = cfg.grid_resolution
        self.grid = nn.Parameter(torch.zeros(1, 4, r, r, r))
        levels = [c for c in cfg.coarse_resolutions if c < r]
        if len(levels) < len(cfg.coarse_resolutions):
            log.info("coarse grid levels %s are not coarser than grid_resolution %d: left out",
                     [c for c in cfg.coarse_resolutions if c >= r], r)
        self.coarse = nn.ParameterList([nn.Parameter(torch.zeros(1, 4, c, c, c)) for c in levels])
        if cfg.init_noise > 0:  # from torch's global generator, which make_trainer seeds with the run seed
            coarsest = min(self.coarse, key=lambda g: g.shape[-1]) if levels else self.grid
            with torch.no_grad():
                coarsest[:, 0].add_(cfg.init_noise * torch.randn_like(coarsest[:, 0]))

    def full_grid(self) -> torch.Tensor:
        """The fine grid plus every coarse grid upsampled onto it (one grid_sample per query, not one per level)."""
        size = self.grid.shape[2:]
        return sum((F.interpolate(g, size=size, mode="trilinear", align_corners=True) for g in self.coarse), self.grid)

    def raw(self, points: torch.Tensor) -> torch.Tensor:
        coords = (points / self.bound).view(1, -1, 1, 1, 3)
        out = F.grid_sample(self.full_grid(), coords, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(4, -1).T

    def density_logits(self) -> list[torch.Tensor]:
        """Views of the density channel of the fine grid and of every coarse grid (the albedo is channels 1-3)."""
        return [g[:, 0] for g in (self.grid, *self.coarse)]

    def density_tv(self) -> torch.Tensor:
        """Mean squared difference of the density logit between neighbouring voxels of the summed grid."""
        logit = self.full_grid()[0, 0]
        return sum(torch.diff(logit, dim=d).pow(2).mean() for d in range(3)) / 3

    def eikonal(self) -> torch.Tensor:
        """mean((|grad d| - 1)^2) of the sdf geometry's distance over the voxel lattice (forward differences)."""
        r = self.grid.shape[-1]
        axis = torch.linspace(-self.bound, self.bound, r, device=self.grid.device)
        lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)  # [z, y, x] order as the grid
        d = self.signed_distance(self.full_grid()[0, 0], lattice.flip(-1))
        h = 2 * self.bound / (r - 1)
        grads = [torch.diff(d, dim=k).narrow((k + 1) % 3, 0, r - 1).narrow((k + 2) % 3, 0, r - 1) / h for k in range(3)]
        norm = sum(g.pow(2) for g in grads).add(1e-12).sqrt()
        return (norm - 1).pow(2).mean()

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        return [{"params": [self.grid, *self.coarse], "lr": cfg.lr_grid, "name": "grid"}]


class HashGridField(NeRFField):
    def __init__(self, cfg: FieldConfig):
        super().__init__(cfg)
        self.encoding = HashGridEncoding(cfg.hash_levels, cfg.hash_features_per_level, cfg.hash_log2_table_size,
                                         cfg.hash_base_resolution, cfg.hash_max_resolution)
        self.mlp = nn.Sequential(nn.Linear(self.encoding.output_dim, cfg.hidden_dim), nn.ReLU(),
                                 nn.Linear(cfg.hidden_dim, 4))

    def raw(self, points: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoding((points / self.bound + 1) / 2))

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        return [{"params": list(self.encoding.parameters()), "lr": cfg.lr_grid, "name": "grid"},
                {"params": list(self.mlp.parameters()), "lr": cfg.lr_mlp, "name": "mlp"}]
