"""The volume renderer: the pure-torch path against analytic answers and the prior's own renders, the gradient
scales, and the choice of sampler."""

from __future__ import annotations

import math

import pytest
import torch

from sds.config import DensityGeometry, FieldConfig, GridEncoding
from sds.render.renderer import RenderSettings, VolumeRenderer, dense_samples, render_samples


class _Slab(torch.nn.Module):
    """Density sigma inside |z| < half, zero elsewhere; albedo red."""

    def __init__(self, sigma, half):
        super().__init__()
        self.sigma, self.half, self.bound = sigma, half, 1.0
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def query(self, points):
        inside = points[:, 2].abs() < self.half
        albedo = torch.tensor([1.0, 0.0, 0.0]).expand(points.shape[0], 3)
        return self.sigma * inside.float(), albedo

    def density(self, points):
        return self.query(points)[0]


def test_renderer_slab_opacity_and_colour():
    sigma, half = 2.0, 0.25
    field = _Slab(sigma, half)
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.3, -0.2, 3.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    samples = dense_samples(origins, dirs, field.bound, 512, perturb=False, generator=None)
    out = render_samples(field, origins, dirs, origins, samples, RenderSettings("albedo"))
    expected = 1 - math.exp(-sigma * 2 * half)
    assert torch.allclose(out["opacity"], torch.full((2,), expected), atol=2e-3)
    assert torch.allclose(out["rgb"][:, 0], out["opacity"], atol=1e-6)  # red * opacity, no background yet
    assert torch.equal(out["backfacing"], torch.zeros(2))  # unlit: no normals, nothing faces away


def test_sampler_choice_on_cpu():
    from sds.errors import UserError
    from sds.field.background import ConstantBackground

    field = _Slab(1.0, 0.25)
    assert VolumeRenderer(field, ConstantBackground(), 8).path == "torch"  # auto: no CUDA here
    assert VolumeRenderer(field, ConstantBackground(), 8, "torch").path == "torch"
    with pytest.raises(UserError, match="needs a CUDA device"):
        VolumeRenderer(field, ConstantBackground(), 8, "nerfacc")


def test_crisp_grid_sphere_renders_like_the_prior_data():
    # The NeRF renderer (density geometry, cameras and light as in SDS) against the prior's own sphere tracer on
    # the true red sphere: a crisp surface must look the same to the prior, colour included, or SDS bends the
    # albedo to make up the difference (docs/tuning.md, sweep 4). The sdf geometry's surface is as soft as
    # its beta makes it (the true sphere at the default beta renders 0.06 darker inside at 32 px).
    import torch.nn.functional as F

    from sds.cameras import sample_orbit_cameras
    from sds.config import RunConfig
    from sds.field.shading import sample_light_positions
    from sds.prior.data import DataConfig, render_primitive
    from sds.prior.world import COLORS, sdf
    from sds.train import make_trainer

    cfg = RunConfig(prompt="a red sphere", field=FieldConfig(geometry=DensityGeometry()))
    trainer = make_trainer(cfg, torch.device("cpu"))
    field, r = trainer.field, cfg.field.encoding.resolution
    axis = torch.linspace(-field.bound, field.bound, r)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")  # grid_sample order: x -> W, y -> H, z -> D
    points = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    red = torch.tensor(COLORS["red"])
    with torch.no_grad():  # density e^7 ~ 1100 inside, ~0 outside; blob cancelled; true albedo (coarse levels 0)
        field.geometry_grids[0][0, 0] = ((-sdf("sphere", points) / 0.005).clamp(-10, 7)
                                         - field.blob(points)).reshape(r, r, r)
        field.albedo_grids[0][0] = (torch.logit(red) - field.albedo_offset)[:, None, None, None]
    data, n = DataConfig(), 12
    truth, _ = render_primitive("sphere", red.expand(n, 3), data, torch.Generator().manual_seed(0), n)
    gen = torch.Generator().manual_seed(0)  # the same draws as render_primitive's: same cameras and lights
    cams = sample_orbit_cameras(n, data.radius_range, data.elevation_range_deg, data.fov_range_deg, gen)
    light = sample_light_positions(cams, data.light_jitter_deg, gen)
    with torch.no_grad():
        out = trainer.renderer.render(cams, 32, 32, RenderSettings("lambertian"), light).rgb.permute(0, 3, 1, 2)
    inside = (F.avg_pool2d(truth, 3, 1, 1) < 0.97).any(1)  # object pixels away from the silhouette
    for c in range(3):
        assert out[:, c][inside].mean() == pytest.approx(float(truth[:, c][inside].mean()), abs=0.02)
    assert (out - truth).abs().mean() < 0.02


def test_view_renders_leave_faint_fog_unlit_and_look_the_same():
    # A crisp sphere in a faint fog (density e^-5 ~ 0.007 outside: what trained exp fields keep): most samples
    # of a ray are fog with weights 1e-4..1e-3. View renders skip their normals; the image must not change.
    from sds.config import RunConfig
    from sds.export.views import preview_cameras
    from sds.prior.world import sdf
    from sds.render.renderer import VIEW_MIN_SHADING_WEIGHT
    from sds.train import make_trainer

    cfg = RunConfig(prompt="a red sphere", field=FieldConfig(geometry=DensityGeometry()))
    trainer = make_trainer(cfg, torch.device("cpu"))
    field, r = trainer.field, cfg.field.encoding.resolution
    axis = torch.linspace(-1, 1, r)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    points = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    with torch.no_grad():
        field.geometry_grids[0][0, 0] = ((-sdf("sphere", points) / 0.005).clamp(-5, 7)
                                         - field.blob(points)).reshape(r, r, r)
    normals_of = []
    real_normals = field.normals
    field.normals = lambda p: normals_of.append(len(p)) or real_normals(p)
    cams = preview_cameras(1.0, 2)
    with torch.no_grad():
        train_like = trainer.renderer.render(cams, 32, 32, RenderSettings("lambertian")).rgb
        lit_train = sum(normals_of)
        view_settings = RenderSettings("lambertian", min_shading_weight=VIEW_MIN_SHADING_WEIGHT)
        view = trainer.renderer.render(cams, 32, 32, view_settings).rgb
    lit_view = sum(normals_of) - lit_train
    assert lit_view < lit_train / 3
    assert (view - train_like).abs().max() < 3 / 255 and (view - train_like).abs().mean() < 0.5 / 255


def _random_density_grid_field(coarse: tuple[int, ...]):
    from sds.field.nerf import GridField

    torch.manual_seed(0)
    field = GridField(FieldConfig(encoding=GridEncoding(resolution=12, coarse_resolutions=coarse),
                                  geometry=DensityGeometry()))
    with torch.no_grad():
        field.geometry_grids[0].normal_(0.0, 1.0)
        field.albedo_grids[0].normal_(0.0, 1.0)
    return field


def _two_cameras():
    from sds.cameras import sample_orbit_cameras

    return sample_orbit_cameras(2, (2.3, 2.7), (0.0, 40.0), (40.0, 40.0), torch.Generator().manual_seed(1))


def test_normal_gradient_scale_scales_only_the_gradient_through_the_normals():
    # Scale 0: the lambertian image is the same, and the density's gradient is exactly what it would be if the
    # normals were constants handed to the shader. Scale 0.5: halfway between that and the full gradient.
    from sds.field.background import ConstantBackground

    field = _random_density_grid_field(coarse=(4,))
    cams = _two_cameras()
    renderer = VolumeRenderer(field, ConstantBackground(), 24, "torch")

    def density_grad(scale: float, constant_normals: bool = False):
        field.zero_grad(set_to_none=True)
        if constant_normals:
            true_normals = field.normals
            field.normals = lambda p: true_normals(p).detach()
        try:
            rgb = renderer.render(cams, 8, 8, RenderSettings("lambertian", normal_gradient_scale=scale)).rgb
        finally:
            field.__dict__.pop("normals", None)
        (rgb * torch.linspace(0, 1, 3)).sum().backward()
        return rgb.detach(), field.geometry_grids[0].grad[0, 0].clone()

    rgb_full, grad_full = density_grad(1.0)
    rgb_detached, grad_detached = density_grad(0.0)
    rgb_half, grad_half = density_grad(0.5)
    _, grad_reference = density_grad(1.0, constant_normals=True)
    assert torch.equal(rgb_detached, rgb_full) and torch.allclose(rgb_half, rgb_full)
    assert torch.allclose(grad_detached, grad_reference, atol=1e-7)
    assert not torch.allclose(grad_detached, grad_full, atol=1e-4)  # the normals did carry a gradient
    assert torch.allclose(grad_half, (grad_reference + grad_full) / 2, atol=1e-6)


def test_color_depth_gradient_scale_in_the_renderer():
    # Through the whole renderer: the image and the albedo's gradient never change with the scale. With a random
    # albedo the density's gradient does; with one albedo everywhere every sample of a ray has the ray's mean
    # colour, so the scale cannot matter.
    from sds.field.background import ConstantBackground

    field = _random_density_grid_field(coarse=())
    cams = _two_cameras()
    renderer = VolumeRenderer(field, ConstantBackground(), 24, "torch")

    def render(scale: float):
        field.zero_grad(set_to_none=True)
        rgb = renderer.render(cams, 8, 8, RenderSettings("albedo", color_depth_gradient_scale=scale)).rgb
        (rgb * torch.tensor([0.2, -1.0, 0.6])).sum().backward()
        return rgb.detach(), field.geometry_grids[0].grad[0, 0].clone(), field.albedo_grids[0].grad[0].clone()

    rgb_1, density_1, albedo_1 = render(1.0)
    rgb_0, density_0, albedo_0 = render(0.0)
    assert torch.allclose(rgb_0, rgb_1) and torch.allclose(albedo_0, albedo_1)
    assert (density_0 - density_1).abs().max() > 0.1 * density_1.abs().max()
    with torch.no_grad():
        field.albedo_grids[0][0] = torch.tensor([0.5, -1.0, 2.0])[:, None, None, None]
    _, density_1, _ = render(1.0)
    _, density_0, _ = render(0.0)
    assert torch.allclose(density_0, density_1, atol=1e-6)
