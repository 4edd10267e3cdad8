"""Analytic stand-ins for a trained NeRF (fields with known surfaces, an exact silhouette renderer).

Shared through fixtures (``fakes``, ``make_config``) rather than imports, so the tests work under
any pytest import mode.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from sds.cameras import Cameras, camera_rays
from sds.config import ExportConfig

PEAK = 50.0  # density inside the analytic shapes; the surface is where it falls to PEAK / 2
EDGE = 0.02  # width of the smooth step (world units), about half a voxel at resolution 48-64
RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


def _length(p: torch.Tensor) -> torch.Tensor:
    return (p[..., 0] ** 2 + p[..., 1] ** 2 + p[..., 2] ** 2).sqrt()


def red_above_blue_below(points: torch.Tensor) -> torch.Tensor:
    """[N, 3] -> [N, 3] albedo: red where y > 0, blue below."""
    upper = (points[:, 1:2] > 0).float()
    return upper * torch.tensor(RED) + (1 - upper) * torch.tensor(BLUE)


class SdfField:
    """density = PEAK * sigmoid(-sdf / EDGE): PEAK / 2 exactly on the surface sdf = 0."""

    def __init__(self, sdf, albedo=red_above_blue_below):
        self.sdf, self._albedo = sdf, albedo
        self.calls = 0

    def density(self, points: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return PEAK * torch.sigmoid(-self.sdf(points) / EDGE)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return self._albedo(points)


def sphere_sdf(radius: float, center: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    c = torch.tensor(center)
    return lambda p: _length(p - c) - radius


def box_sdf(half: tuple[float, float, float], center: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    h, c = torch.tensor(half), torch.tensor(center)

    def sdf(p: torch.Tensor) -> torch.Tensor:
        q = (p - c).abs() - h
        return _length(q.clamp(min=0)) + q.amax(-1).clamp(max=0)

    return sdf


def ellipsoid_sdf(semi_axes: tuple[float, float, float]):
    """An approximate (first-order) ellipsoid SDF: exact zero set, roughly unit gradient near it."""
    a = torch.tensor(semi_axes)
    return lambda p: (_length(p / a) - 1.0) * a.min()


def union_sdf(*sdfs):
    return lambda p: torch.stack([s(p) for s in sdfs]).amin(0)


class GaussianField:
    """A soft blob, density = peak * exp(-|p|^2 / (2 sigma^2)): no obvious level is the surface."""

    def __init__(self, peak: float = 100.0, sigma: float = 0.35):
        self.peak, self.sigma = peak, sigma

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.peak * torch.exp(-(_length(points) ** 2) / (2 * self.sigma**2))

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return red_above_blue_below(points)


class EmptyField:
    def density(self, points: torch.Tensor) -> torch.Tensor:
        return torch.zeros(points.shape[0])

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return torch.zeros(points.shape[0], 3)


def sphere_render_fn(radius: float, albedo=red_above_blue_below):
    """Exact render of an opaque sphere at the origin: opacity 1 where a pixel's ray hits it."""

    def render(cameras: Cameras, height: int, width: int, shaded: bool = True) -> dict[str, torch.Tensor]:
        origins, dirs = camera_rays(cameras, height, width)
        b = (origins * dirs).sum(-1)
        disc = b**2 - ((origins**2).sum(-1) - radius**2)
        hit = disc > 0
        t = -b - disc.clamp(min=0).sqrt()
        points = origins + t[..., None] * dirs
        color = albedo(points.reshape(-1, 3)).reshape(points.shape)
        shade = 0.4 + 0.6 * (-(points / radius) * dirs).sum(-1, keepdim=True).clamp(min=0)
        opacity = hit.float()
        rgb = opacity[..., None] * color * shade + (1 - opacity[..., None])  # white background
        return {"rgb": rgb, "opacity": opacity}

    return render


@pytest.fixture(scope="session")
def fakes() -> SimpleNamespace:
    """The analytic fields, SDFs and renderers above."""
    return SimpleNamespace(
        SdfField=SdfField, GaussianField=GaussianField, EmptyField=EmptyField, sphere_sdf=sphere_sdf,
        box_sdf=box_sdf, ellipsoid_sdf=ellipsoid_sdf, union_sdf=union_sdf, sphere_render_fn=sphere_render_fn,
        red_above_blue_below=red_above_blue_below, RED=RED, BLUE=BLUE, PEAK=PEAK,
    )  # fmt: skip


def small_config(**overrides) -> ExportConfig:
    """Settings sized for CPU tests (a few seconds per export)."""
    base = dict(
        resolution=48, threshold=PEAK / 2, formats=("glb",), texture_size=128, video=False,
        preview_resolution=32, normalize=False,
    )  # fmt: skip
    return ExportConfig(**{**base, **overrides})


@pytest.fixture(scope="session")
def make_config():
    """Factory: small_config(**overrides) -> ExportConfig."""
    return small_config


@pytest.fixture
def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run the Khronos glTF validator / viewer checks")
    return node
