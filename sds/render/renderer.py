"""The volume renderer: cameras -> rays -> samples -> field -> shading -> composited image.

Two samplers with one compositing path: pure torch (stratified samples in the scene cube, dense; every
device) and nerfacc's occupancy grid (packed samples; CUDA only, ``sds.render.nerfacc_path``). Whatever the
sampler, ``render_samples`` queries the field, shades and composites the same way.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import torch

from sds.cameras import Cameras, camera_rays
from sds.errors import UserError
from sds.field.shading import TRAIN_MIN_SHADING_WEIGHT, shade
from sds.render.compositing import RaySamples, accumulate_color, along_rays, sample_weights
from sds.render.samplers import ray_aabb, stratified_samples

log = logging.getLogger(__name__)

SHADINGS = ("albedo", "lambertian", "textureless")

VIEW_MIN_SHADING_WEIGHT = 1e-3
"""The same for renders to look at (preview, turntable). The exp field's faint fog gives most samples of a ray
a weight of 1e-4..1e-3; leaving them unlit changes a trained sphere's frame by at most 1.2 / 255 (mean 0.3 / 255)
and makes it 3x faster (0.86 -> 0.28 s for 128 x 128 on one thread)."""


@dataclass(frozen=True)
class RenderSettings:
    """How one render shades and samples."""

    shading: str = "albedo"
    """"albedo", "lambertian" or "textureless"."""
    perturb: bool = False
    """Jitter samples inside their intervals (training) instead of taking their centres."""
    min_shading_weight: float = TRAIN_MIN_SHADING_WEIGHT
    """Samples lighter than this are not lit (see VIEW_MIN_SHADING_WEIGHT)."""
    normal_gradient_scale: float = 1.0
    """Scale of the gradient reaching the geometry through the shading normals (render.normal_gradient_scale)."""
    color_depth_gradient_scale: float = 1.0
    """Scale of the gradient through which colour along a ray is seen (render.color_depth_gradient_scale)."""


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [B, H, W, 3] in [0, 1], composited over the background
    opacity: torch.Tensor  # [B, H, W]
    depth: torch.Tensor  # [B, H, W] expected distance along the ray (0 where empty)
    backfacing: torch.Tensor  # [B, H, W] sum_i w_i * max(0, n_i . d)^2, weights detached (0 for albedo shading)


def render_samples(field, origins: torch.Tensor, dirs: torch.Tensor, light: torch.Tensor, samples: RaySamples,
                   settings: RenderSettings) -> dict[str, torch.Tensor]:
    """Rays [R, 3] evaluated at `samples`: colour [R, 3] (no background), opacity, depth and backfacing [R]."""
    if samples.packed:  # one sample per row: [N, 1]
        idx = samples.ray_indices
        origins, dirs, light, t = origins[idx], dirs[idx], light[idx], samples.t[:, None]
    else:
        t = samples.t
    points = origins[:, None, :] + t[..., None] * dirs[:, None, :]  # [R, S, 3] or [N, 1, 3]
    density, albedo = field.query(points.reshape(-1, 3))
    density = density.view(t.shape) if not samples.packed else density
    weights = sample_weights(density, samples).view(t.shape)
    color, backfacing = shade(field, points, albedo.view(*t.shape, 3), weights, dirs, light, settings.shading,
                              settings.min_shading_weight, settings.normal_gradient_scale)
    if samples.packed:  # back to nerfacc's flat layout
        weights, color, backfacing, t = weights[:, 0], color[:, 0], backfacing[:, 0], t[:, 0]
        packed = samples
    else:
        packed = None
    return {"rgb": accumulate_color(weights, color, settings.color_depth_gradient_scale, packed),
            "opacity": along_rays(weights, None, packed),
            "depth": along_rays(weights * t, None, packed),
            "backfacing": along_rays(weights.detach() * backfacing, None, packed)}


def dense_samples(origins: torch.Tensor, dirs: torch.Tensor, bound: float, samples_per_ray: int, perturb: bool,
                  generator: torch.Generator | None) -> RaySamples:
    """samples_per_ray stratified samples per ray inside the scene cube."""
    near, far = ray_aabb(origins, dirs, bound)
    t, deltas = stratified_samples(near, far, samples_per_ray, perturb, generator)
    return RaySamples(t, deltas)


class VolumeRenderer:
    """Renders a field (and background) from cameras; picks the sampler once and logs it."""

    def __init__(self, field, background, samples_per_ray: int, sampler: str = "auto"):
        self.field = field
        self.background = background
        self.samples_per_ray = samples_per_ray
        device = next(iter(field.parameters())).device
        self.field_device = device
        self.path = self._choose_path(sampler, device)
        self.estimator = None
        if self.path == "nerfacc":
            from sds.render.nerfacc_path import make_estimator

            self.estimator = make_estimator(field.bound, device)

    @staticmethod
    def _choose_path(sampler: str, device: torch.device) -> str:
        if sampler == "torch":
            return "torch"
        if device.type != "cuda":
            if sampler == "nerfacc":
                raise UserError("render.sampler=nerfacc needs a CUDA device; nerfacc's packed sampling is CUDA-only")
            log.info("renderer: pure-torch stratified sampling (nerfacc's occupancy grid needs CUDA; this is %s)",
                     device.type)
            return "torch"
        if sampler == "auto" and importlib.util.find_spec("nerfacc") is None:  # an extra: pip install 'sds3d[cuda]'
            log.warning("renderer: pure-torch stratified sampling on CUDA: nerfacc is not installed (pip install "
                        "'sds3d[cuda]' for its occupancy grid)")
            return "torch"
        log.info("renderer: nerfacc occupancy-grid sampling on CUDA")
        return "nerfacc"

    def state_dict(self) -> dict:
        """The occupancy grid (nerfacc path), so a resumed run renders from the same one; {} on the torch path."""
        return {} if self.estimator is None else {"estimator": self.estimator.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the occupancy grid; without a saved one (an older checkpoint), fill it from the field."""
        if self.estimator is None:
            return
        if "estimator" in state:
            self.estimator.load_state_dict(state["estimator"])
        else:
            from sds.render.nerfacc_path import refresh_estimator

            refresh_estimator(self.estimator, self.field, self.samples_per_ray)

    def update(self, step: int, generator: torch.Generator | None = None) -> None:
        """Refresh the occupancy grid (nerfacc path only), at the renderer's samples per ray, its random cells
        drawn from `generator` (the run's, so CUDA runs are seeded)."""
        if self.estimator is not None:
            from sds.render.nerfacc_path import update_estimator

            update_estimator(self.estimator, self.field, step, self.samples_per_ray, generator)

    def render(self, cameras: Cameras, height: int, width: int, settings: RenderSettings = RenderSettings(),
               light_pos: torch.Tensor | None = None, background_rgb: torch.Tensor | None = None,
               background_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
               chunk_rays: int | None = None) -> RenderOutput:
        """Render B views at height x width. light_pos [B, 3] (default: at each camera).

        background_rgb [B, 3] replaces the background model on the views where background_mask [B] is true
        (all views if no mask): random solid-colour augmentation. chunk_rays bounds memory for large renders.
        """
        if settings.shading not in SHADINGS:
            raise ValueError(f"unknown shading {settings.shading!r}; choose from {SHADINGS}")
        origins, dirs = camera_rays(cameras, height, width)
        b = len(cameras)
        light = cameras.position if light_pos is None else light_pos
        light = light[:, None, None, :].expand(b, height, width, 3).reshape(-1, 3)
        o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        chunk = chunk_rays or o.shape[0]
        parts = [self._render_rays(o[i:i + chunk], d[i:i + chunk], light[i:i + chunk], settings, generator)
                 for i in range(0, o.shape[0], chunk)]
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        bg = self.background(d)
        if background_rgb is not None:
            mask = torch.ones(b, dtype=torch.bool, device=bg.device) if background_mask is None else background_mask
            solid = background_rgb[:, None, None, :].expand(b, height, width, 3).reshape(-1, 3)
            per_ray = mask[:, None].expand(b, height * width).reshape(-1, 1)
            bg = torch.where(per_ray, solid, bg)
        rgb = out["rgb"] + (1 - out["opacity"][:, None]) * bg
        return RenderOutput(rgb.view(b, height, width, 3), out["opacity"].view(b, height, width),
                            out["depth"].view(b, height, width), out["backfacing"].view(b, height, width))

    def _render_rays(self, origins, dirs, light, settings: RenderSettings, generator) -> dict[str, torch.Tensor]:
        if self.path == "nerfacc":
            from sds.render.nerfacc_path import packed_samples

            samples = packed_samples(self.estimator, self.field, origins, dirs, self.samples_per_ray,
                                     settings.perturb, generator)
        else:
            samples = dense_samples(origins, dirs, self.field.bound, self.samples_per_ray, settings.perturb, generator)
        return render_samples(self.field, origins, dirs, light, samples, settings)
