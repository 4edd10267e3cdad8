"""Compositing against analytic answers and against nerfacc's own dense implementation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sds.config import FieldConfig
from sds.render.compositing import accumulate, accumulate_color, composite_weights
from sds.render.renderer import render_rays_torch
from sds.render.samplers import ray_aabb


def test_constant_density_slab_opacity():
    sigma, length, n = 1.7, 0.8, 256
    density = torch.full((1, n), sigma, dtype=torch.float64)
    deltas = torch.full((1, n), length / n, dtype=torch.float64)
    weights, transmittance = composite_weights(density, deltas)
    assert weights.sum().item() == pytest.approx(1 - math.exp(-sigma * length), abs=1e-9)
    assert transmittance[0, -1].item() == pytest.approx(math.exp(-sigma * length * (n - 1) / n), abs=1e-9)


def test_weights_match_nerfacc_dense():
    nerfacc = pytest.importorskip("nerfacc")
    gen = torch.Generator().manual_seed(0)
    density = torch.rand(64, 48, generator=gen) * 5
    t = torch.sort(torch.rand(64, 49, generator=gen) * 3, dim=-1).values
    deltas = t[:, 1:] - t[:, :-1]
    ours, trans = composite_weights(density, deltas)
    theirs, trans_theirs, _ = nerfacc.render_weight_from_density(t[:, :-1], t[:, 1:], density)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours.sum(-1), theirs.sum(-1), atol=1e-5)
    assert torch.allclose(trans, trans_theirs, atol=1e-5)


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
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.3, -0.2, 3.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    out = render_rays_torch(_Slab(sigma, half), origins, dirs, origins, 512, "albedo", 0.35, perturb=False)
    expected = 1 - math.exp(-sigma * 2 * half)
    assert torch.allclose(out["opacity"], torch.full((2,), expected), atol=2e-3)
    assert torch.allclose(out["rgb"][:, 0], out["opacity"], atol=1e-6)  # red * opacity, no background yet


def test_ray_aabb():
    near, far = ray_aabb(torch.tensor([[0.0, 0.0, 3.0], [5.0, 5.0, 3.0]]), torch.tensor([[0, 0, -1.0], [0, 0, -1.0]]), 1.0)
    assert near[0] == pytest.approx(2.0) and far[0] == pytest.approx(4.0)
    assert near[1] == far[1]  # a miss


def test_blob_init_is_a_ball():
    from sds.field.nerf import GridField

    field = GridField(FieldConfig(geometry="density", blob_density=10.0, blob_radius=0.5))
    d = field.density(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.45, 0.0], [0.0, 0.8, 0.0], [1.5, 0, 0]]))
    assert d[0] > d[1] > d[2] and d[2] < 0.1 and d[3] == 0


def test_coarse_grids_add_to_the_fine_grid_and_spread_gradients():
    from sds.field.nerf import GridField

    field = GridField(FieldConfig(geometry="density", grid_resolution=16, coarse_resolutions=(4,), blob_density=0.0))
    points = torch.rand(50, 3) * 2 - 1
    with torch.no_grad():
        field.coarse[0].fill_(0.5)  # a constant coarse grid is a constant offset everywhere
        field.grid[0, 1] = torch.linspace(-1, 1, 16)[None, None, :]  # albedo logit varies with x
    raw = field.raw(points)
    assert torch.allclose(raw[:, 0], torch.full((50,), 0.5), atol=1e-6)
    assert torch.allclose(raw[:, 1], points[:, 0] + 0.5, atol=1e-5)
    # A step on one point's gradient moves the field 0.3 away through the coarse grid, not through the fine one.
    near, far = torch.tensor([[0.1, 0.1, 0.1]]), torch.tensor([[0.4, 0.1, 0.1]])
    field.raw(near)[:, 0].sum().backward()
    before = field.raw(far)[:, 0].detach()
    with torch.no_grad():
        field.grid -= field.grid.grad
    assert torch.allclose(field.raw(far)[:, 0], before)
    with torch.no_grad():
        field.coarse[0] -= field.coarse[0].grad
    assert float(before - field.raw(far)[:, 0].detach()) > 0.1


def test_coarse_levels_not_coarser_than_the_grid_are_left_out():
    from sds.field.nerf import GridField

    field = GridField(FieldConfig(geometry="density", grid_resolution=12, coarse_resolutions=(8, 16)))
    assert [g.shape[-1] for g in field.coarse] == [8]


def test_hashgrid_field_normals_point_outwards():
    from sds.field.nerf import HashGridField

    field = HashGridField(FieldConfig(geometry="density", kind="hashgrid", hash_levels=4, hash_max_resolution=32))
    points = torch.tensor([[0.3, 0.0, 0.0], [0.0, -0.3, 0.0]])
    n = field.normals(points)
    assert torch.allclose(n, points / points.norm(dim=-1, keepdim=True), atol=0.05)


def test_crisp_grid_sphere_renders_like_the_prior_data():
    # The NeRF renderer (density geometry, cameras and light as in SDS) against the prior's own sphere tracer on
    # the true red sphere: a crisp surface must look the same to the prior, colour included, or SDS bends the
    # albedo to make up the difference (docs/tuning.md, sweep 4). The sdf geometry's surface is as soft as
    # field.sdf_beta makes it (the true sphere at the default beta renders 0.06 darker inside at 32 px).
    import torch.nn.functional as F

    from sds.cameras import sample_orbit_cameras
    from sds.config import RunConfig
    from sds.field.shading import sample_light_positions
    from sds.prior.data import DataConfig, render_primitive
    from sds.prior.world import COLORS, sdf
    from sds.train import make_trainer

    cfg = RunConfig(prompt="a red sphere", field=FieldConfig(geometry="density"))
    trainer = make_trainer(cfg, torch.device("cpu"))
    field, r = trainer.field, cfg.field.grid_resolution
    axis = torch.linspace(-field.bound, field.bound, r)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")  # grid_sample order: x -> W, y -> H, z -> D
    points = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    red = torch.tensor(COLORS["red"])
    with torch.no_grad():  # density e^7 ~ 1100 inside, ~0 outside; blob cancelled; true albedo
        field.grid[0, 0] = ((-sdf("sphere", points) / 0.005).clamp(-10, 7) - field.blob(points)).reshape(r, r, r)
        field.grid[0, 1:] = (torch.logit(red) - field.albedo_offset)[:, None, None, None]
    data, n = DataConfig(), 12
    truth, _ = render_primitive("sphere", red.expand(n, 3), data, torch.Generator().manual_seed(0), n)
    gen = torch.Generator().manual_seed(0)  # the same draws as render_primitive's: same cameras and lights
    cams = sample_orbit_cameras(n, data.radius_range, data.elevation_range_deg, data.fov_range_deg, gen)
    light = sample_light_positions(cams, data.light_jitter_deg, gen)
    with torch.no_grad():
        out = trainer.renderer.render(cams, 32, 32, light, "lambertian").rgb.permute(0, 3, 1, 2)
    inside = (F.avg_pool2d(truth, 3, 1, 1) < 0.97).any(1)  # object pixels away from the silhouette
    for c in range(3):
        assert out[:, c][inside].mean() == pytest.approx(float(truth[:, c][inside].mean()), abs=0.02)
    assert (out - truth).abs().mean() < 0.02


def test_init_noise_perturbs_only_the_coarsest_density_and_follows_the_seed():
    from sds.field.nerf import GridField

    def field(noise: float, seed: int) -> GridField:
        torch.manual_seed(seed)
        return GridField(FieldConfig(geometry="density", grid_resolution=24, coarse_resolutions=(16, 8),
                                     init_noise=noise))

    quiet, a, b, c = field(0.0, 0), field(1.0, 0), field(1.0, 0), field(1.0, 1)
    coarsest = [g.shape[-1] for g in a.coarse].index(8)
    noise = a.coarse[coarsest][0, 0].detach()
    assert float(noise.std()) == pytest.approx(1.0, rel=0.15)  # 512 draws
    assert torch.equal(noise, b.coarse[coarsest][0, 0]) and not torch.equal(noise, c.coarse[coarsest][0, 0])
    assert a.coarse[coarsest][0, 1:].abs().max() == 0  # albedo untouched
    for g_quiet, g_noisy in zip([quiet.grid, *quiet.coarse], [a.grid, *a.coarse]):
        if g_noisy is not a.coarse[coarsest]:
            assert torch.equal(g_quiet, g_noisy)  # the fine grid and the other coarse level stay zero
    assert all(g.abs().max() == 0 for g in [quiet.grid, *quiet.coarse])


@pytest.mark.parametrize("kind", ["grid", "hashgrid"])
def test_albedo_init_sets_the_start_albedo_and_moves_with_the_logits(kind):
    from sds.build import build_field

    torch.manual_seed(0)
    cfg = FieldConfig(kind=kind, grid_resolution=12, coarse_resolutions=(), hash_levels=2,
                      hash_log2_table_size=10, hash_max_resolution=16, albedo_init=0.8)
    field = build_field(cfg)
    points = torch.rand(64, 3) * 2 - 1
    if kind == "grid":  # the grid starts at zero logits: the albedo is exactly the init
        assert torch.allclose(field.albedo(points), torch.full((64, 3), 0.8))
        with torch.no_grad():
            field.grid[0, 3] = torch.logit(torch.tensor(0.1)) - torch.logit(torch.tensor(0.8))
        assert torch.allclose(field.albedo(points)[:, 2], torch.full((64,), 0.1), atol=1e-6)
    else:  # the MLP head's random start is offset from the init, not centred on grey
        grey = build_field(dataclasses.replace(cfg, albedo_init=0.5))
        grey.load_state_dict(field.state_dict())
        offset = torch.logit(field.albedo(points)) - torch.logit(grey.albedo(points))
        assert torch.allclose(offset, torch.full_like(offset, float(torch.logit(torch.tensor(0.8)))), atol=1e-4)


def test_density_tv_of_a_linear_ramp_and_of_coarse_levels():
    from sds.field.nerf import GridField

    field = GridField(FieldConfig(geometry="density", grid_resolution=12, coarse_resolutions=(4,)))
    with torch.no_grad():
        field.grid[0, 0] = 0.5 * torch.arange(12.0)[:, None, None]  # a step of 0.5 along one axis
        field.grid[0, 1:] = torch.randn(3, 12, 12, 12)  # albedo does not count
    assert field.density_tv().item() == pytest.approx(0.25 / 3, rel=1e-6)  # mean over the three axes
    field.density_tv().backward()
    assert field.coarse[0].grad[0, 0].abs().sum() > 0  # the penalty reaches the coarse level it sums in
    with torch.no_grad():
        field.grid.zero_()
        field.coarse[0].fill_(3.0)
    assert field.density_tv().item() == pytest.approx(0.0, abs=1e-10)  # a constant field has none


def test_view_renders_leave_faint_fog_unlit_and_look_the_same():
    # A crisp sphere in a faint fog (density e^-5 ~ 0.007 outside: what trained exp fields keep): most samples
    # of a ray are fog with weights 1e-4..1e-3. View renders skip their normals; the image must not change.
    from sds.config import RunConfig
    from sds.export.views import preview_cameras
    from sds.prior.world import sdf
    from sds.render.renderer import VIEW_MIN_SHADING_WEIGHT
    from sds.train import make_trainer

    trainer = make_trainer(RunConfig(prompt="a red sphere", field=FieldConfig(geometry="density")), torch.device("cpu"))
    field, r = trainer.field, trainer.cfg.field.grid_resolution
    axis = torch.linspace(-1, 1, r)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    points = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    with torch.no_grad():
        field.grid[0, 0] = ((-sdf("sphere", points) / 0.005).clamp(-5, 7) - field.blob(points)).reshape(r, r, r)
    normals_of = []
    real_normals = field.normals
    field.normals = lambda p: normals_of.append(len(p)) or real_normals(p)
    cams = preview_cameras(1.0, 2)
    with torch.no_grad():
        train_like = trainer.renderer.render(cams, 32, 32, shading="lambertian").rgb
        lit_train = sum(normals_of)
        view = trainer.renderer.render(cams, 32, 32, shading="lambertian", min_shading_weight=VIEW_MIN_SHADING_WEIGHT).rgb
    lit_view = sum(normals_of) - lit_train
    assert lit_view < lit_train / 3
    assert (view - train_like).abs().max() < 3 / 255 and (view - train_like).abs().mean() < 0.5 / 255


def test_normal_gradient_scale_scales_only_the_gradient_through_the_normals():
    # Scale 0: the lambertian image is the same, and the density's gradient is exactly what it would be if the
    # normals were constants handed to the shader. Scale 0.5: halfway between that and the full gradient.
    from sds.cameras import sample_orbit_cameras
    from sds.field.background import ConstantBackground
    from sds.field.nerf import GridField
    from sds.render.renderer import VolumeRenderer

    torch.manual_seed(0)
    field = GridField(FieldConfig(geometry="density", grid_resolution=12, coarse_resolutions=(4,)))
    with torch.no_grad():
        field.grid.normal_(0.0, 1.0)
    cams = sample_orbit_cameras(2, (2.3, 2.7), (0.0, 40.0), (40.0, 40.0), torch.Generator().manual_seed(1))

    def density_grad(scale: float, constant_normals: bool = False):
        renderer = VolumeRenderer(field, ConstantBackground(), 24, 0.35, "torch", normal_gradient_scale=scale)
        field.grid.grad = None
        if constant_normals:
            true_normals = field.normals
            field.normals = lambda p: true_normals(p).detach()
        try:
            rgb = renderer.render(cams, 8, 8, shading="lambertian").rgb
        finally:
            field.__dict__.pop("normals", None)
        (rgb * torch.linspace(0, 1, 3)).sum().backward()
        return rgb.detach(), field.grid.grad[0, 0].clone()

    rgb_full, grad_full = density_grad(1.0)
    rgb_detached, grad_detached = density_grad(0.0)
    rgb_half, grad_half = density_grad(0.5)
    _, grad_reference = density_grad(1.0, constant_normals=True)
    assert torch.equal(rgb_detached, rgb_full) and torch.allclose(rgb_half, rgb_full)
    assert torch.allclose(grad_detached, grad_reference, atol=1e-7)
    assert not torch.allclose(grad_detached, grad_full, atol=1e-4)  # the normals did carry a gradient
    assert torch.allclose(grad_half, (grad_reference + grad_full) / 2, atol=1e-6)


def test_laplace_density_of_a_signed_distance():
    from sds.field.nerf import laplace_density

    beta = 0.05
    sdf = torch.tensor([-10.0, -0.1, 0.0, 0.1, 10.0])
    expected = torch.tensor([1.0, 1 - 0.5 * math.exp(-2), 0.5, 0.5 * math.exp(-2), 0.0]) / beta
    assert torch.allclose(laplace_density(sdf, beta), expected, atol=1e-6)


def test_sdf_field_starts_as_a_crisp_sphere_with_radial_normals():
    from sds.field.nerf import GridField

    beta, radius = 0.02, 0.5
    field = GridField(FieldConfig(geometry="sdf", sdf_beta=beta, blob_radius=radius))
    d = field.density(torch.tensor([[0.0, 0.0, 0.0], [0.0, radius, 0.0], [radius + 0.1, 0.0, 0.0]]))
    assert torch.allclose(d, torch.tensor([1 / beta, 0.5 / beta, 0.5 * math.exp(-0.1 / beta) / beta]), rtol=1e-4)
    # Normals come from the distance, so they are radial inside and outside the thin band alike.
    points = torch.tensor([[0.2, 0.0, 0.0], [0.0, -0.7, 0.0], [0.3, 0.3, -0.3]])
    assert torch.allclose(field.normals(points), points / points.norm(dim=-1, keepdim=True), atol=1e-4)
    # A ray through the centre crosses 2 * radius of density 1 / beta: opaque. One passing 0.1 outside meets
    # only the Laplace tail 0.5 exp(-d / beta) / beta, d = sqrt(0.6^2 + s^2) - 0.5 along it: integrate that.
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.0, radius + 0.1, 3.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    out = render_rays_torch(field, origins, dirs, origins, 512, "albedo", 0.35, perturb=False)
    s = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    tail = 0.5 * torch.exp(-((0.6**2 + s**2).sqrt() - radius) / beta) / beta
    expected = 1 - math.exp(-float(torch.trapezoid(tail, s)))
    assert out["opacity"][0] > 0.999
    assert float(out["opacity"][1].detach()) == pytest.approx(expected, rel=0.02) and 0.03 < expected < 0.06


def test_eikonal_is_zero_for_a_distance_and_one_for_twice_a_distance():
    from sds.field.nerf import GridField

    field = GridField(FieldConfig(geometry="sdf", grid_resolution=24, coarse_resolutions=(8,), sdf_scale=0.5))
    assert field.eikonal().item() < 0.01  # the start sphere is a distance (off only at the voxels by the centre)
    axis = torch.linspace(-1, 1, 24)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    with torch.no_grad():  # channel 0 adds the start sphere's distance again: d doubles, |grad d| = 2
        field.grid[0, 0] = field.start_sphere_sdf(torch.stack([x, y, z], -1)) / 0.5
    assert field.eikonal().item() == pytest.approx(1.0, abs=0.02)
    field.eikonal().backward()
    assert field.coarse[0].grad[0, 0].abs().sum() > 0  # the penalty reaches the coarse level too


def _edge_crossings(d: torch.Tensor, lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the zero level set crosses each lattice edge with a sign change: the fraction of the edge (linear
    interpolation) and the point."""
    fractions, points = [], []
    for k in range(3):
        a, b = d.narrow(k, 0, d.shape[k] - 1), d.narrow(k, 1, d.shape[k] - 1)
        crossing = (a < 0) != (b < 0)
        t = a[crossing] / (a - b)[crossing]
        start, end = lattice.narrow(k, 0, d.shape[k] - 1)[crossing], lattice.narrow(k, 1, d.shape[k] - 1)[crossing]
        fractions.append(t)
        points.append(start + t[:, None] * (end - start))
    return torch.cat(fractions), torch.cat(points)


def test_redistance_keeps_the_surface_and_restores_a_distance():
    from sds.field.nerf import GridField

    field = GridField(FieldConfig(geometry="sdf", grid_resolution=32, coarse_resolutions=(8,), sdf_scale=0.2))
    p, h = field.lattice, field.voxel_size
    true = p.norm(dim=-1) - 0.45  # a sphere of radius 0.45 (the start sphere has 0.5)
    with torch.no_grad():  # the same zero set, but a slope from 1.2 to 2.8 along x; the coarse level holds noise
        field.coarse[0].normal_(generator=torch.Generator().manual_seed(0))
        coarse = field.full_grid()[0, 0] - field.grid[0, 0]
        field.grid[0, 0] = (true * (2 + 0.8 * p[..., 0]) - field.start_sphere_sdf(p)) / 0.2 - coarse
        field.grid[0, 1:] = torch.rand(3, 32, 32, 32)
    albedo, coarse_level = field.grid[0, 1:].clone(), field.coarse[0].clone()
    before = field.lattice_distance().detach()
    assert field.eikonal().item() > 0.5
    assert field.redistance()
    after = field.lattice_distance().detach()
    assert torch.equal(after < 0, before < 0)  # every voxel stays on its side
    # The surface stays put to a hundredth of a voxel: not snapped to voxel centres or to half-way between.
    assert (_edge_crossings(after, p)[0] - _edge_crossings(before, p)[0]).abs().max() < 0.02
    # |grad d| = 1 again, and d is the distance to the sphere within a few hundredths of a voxel on average.
    assert field.eikonal().item() < 0.004
    error = (after - true).abs() / h
    assert error.mean() < 0.06 and error.max() < 0.4
    assert torch.equal(field.grid[0, 1:], albedo) and torch.equal(field.coarse[0], coarse_level)


def test_redistance_blur_smooths_bumps_and_barely_moves_a_sphere():
    from sds.field.nerf import GridField

    def crossing_radii(field: GridField) -> torch.Tensor:
        return _edge_crossings(field.lattice_distance().detach(), field.lattice)[1].norm(dim=-1)

    spread = {}
    for blur in (0.0, 1.0):
        field = GridField(FieldConfig(geometry="sdf", grid_resolution=32, coarse_resolutions=()))
        p, h = field.lattice, field.voxel_size
        wave = 2 * math.pi / (4 * h)  # bumps of half a voxel, four voxels apart, on a sphere of radius 0.45
        bumps = 0.5 * h * torch.sin(wave * p[..., 0]) * torch.sin(wave * p[..., 1]) * torch.sin(wave * p[..., 2])
        with torch.no_grad():
            field.grid[0, 0] = (p.norm(dim=-1) - 0.45 + bumps - field.start_sphere_sdf(p)) / field.cfg.sdf_scale
        before = crossing_radii(field)
        field.redistance(blur_voxels=blur)
        after = crossing_radii(field)
        spread[blur] = (before.std() / h, after.std() / h)
        if blur:  # inward by about (blur h)^2 / R = 0.14 voxels
            assert -0.25 < (after.mean() - before.mean()) / h < -0.05
    assert spread[0.0][0] > 0.1 and spread[0.0][1] > 0.8 * spread[0.0][0]  # no blur: the bumps stay
    assert spread[1.0][1] < 0.2 * spread[1.0][0]


def test_redistance_without_a_surface_changes_nothing():
    from sds.field.nerf import GridField

    field = GridField(FieldConfig(geometry="sdf", grid_resolution=16, coarse_resolutions=()))
    with torch.no_grad():
        field.grid[0, 0] = 10.0  # 2 world units outward everywhere: nothing is inside
    grid = field.grid.detach().clone()
    assert not field.redistance()
    assert torch.equal(field.grid, grid)


@pytest.mark.parametrize("packed", [False, True])
def test_color_depth_gradient_scale_keeps_the_image_and_reshapes_only_the_weights_gradient(packed):
    # Two rays of three samples with different colours along each: the weights' gradient of a linear loss is
    # c_i . v at scale 1, the ray's mean colour . v at scale 0, and the mix in between.
    torch.manual_seed(0)
    weights = torch.tensor([[0.1, 0.5, 0.2], [0.3, 0.0, 0.6]])
    color = torch.rand(2, 3, 3)
    v = torch.tensor([0.7, -1.3, 2.0])
    mean = accumulate(weights, color) / weights.sum(-1, keepdim=True)
    for scale in (1.0, 0.5, 0.0):
        w = weights.clone().requires_grad_()
        c = color.clone().requires_grad_()
        if packed:
            ray_indices = torch.arange(2).repeat_interleave(3)
            rgb = accumulate_color(w.view(-1), c.view(-1, 3), scale, ray_indices, n_rays=2)
        else:
            rgb = accumulate_color(w, c, scale)
        assert torch.allclose(rgb, accumulate(weights, color))
        (rgb * v).sum().backward()
        assert torch.allclose(c.grad, weights[..., None] * v)
        seen = scale * color + (1 - scale) * mean[:, None, :]
        assert torch.allclose(w.grad, seen @ v, atol=1e-6)
    assert not torch.allclose(color @ v, mean[:, None, :] @ v)  # the two ends differ on this data


def test_color_depth_gradient_scale_in_the_renderer():
    # Through the whole renderer: the image and the albedo's gradient never change with the scale. With a random
    # albedo the density's gradient does; with one albedo everywhere every sample of a ray has the ray's mean
    # colour, so the scale cannot matter.
    from sds.cameras import sample_orbit_cameras
    from sds.field.background import ConstantBackground
    from sds.field.nerf import GridField
    from sds.render.renderer import VolumeRenderer

    torch.manual_seed(0)
    field = GridField(FieldConfig(geometry="density", grid_resolution=12, coarse_resolutions=()))
    cams = sample_orbit_cameras(2, (2.3, 2.7), (0.0, 40.0), (40.0, 40.0), torch.Generator().manual_seed(1))

    def render(scale: float):
        renderer = VolumeRenderer(field, ConstantBackground(), 24, 0.35, "torch")
        field.grid.grad = None
        rgb = renderer.render(cams, 8, 8, shading="albedo", color_depth_gradient_scale=scale).rgb
        (rgb * torch.tensor([0.2, -1.0, 0.6])).sum().backward()
        return rgb.detach(), field.grid.grad[0, 0].clone(), field.grid.grad[0, 1:].clone()

    with torch.no_grad():
        field.grid.normal_(0.0, 1.0)
    rgb_1, density_1, albedo_1 = render(1.0)
    rgb_0, density_0, albedo_0 = render(0.0)
    assert torch.allclose(rgb_0, rgb_1) and torch.allclose(albedo_0, albedo_1)
    assert (density_0 - density_1).abs().max() > 0.1 * density_1.abs().max()
    with torch.no_grad():
        field.grid[0, 1:] = torch.tensor([0.5, -1.0, 2.0])[:, None, None, None]
    _, density_1, _ = render(1.0)
    _, density_0, _ = render(0.0)
    assert torch.allclose(density_0, density_1, atol=1e-6)


def test_the_global_rng_is_seeded_from_the_run_generator_and_restored():
    """nerfacc's draws come from torch's global RNG: seeded from the run's generator inside the block, so they
    are fixed by the run's seed, and the global state outside is left as it was."""
    from sds.render.nerfacc_path import global_rng_seeded_from

    def draws(seed):
        gen = torch.Generator().manual_seed(seed)
        with global_rng_seeded_from(gen, torch.device("cpu")):
            inside = torch.rand(4)
        return inside, gen.get_state()

    torch.manual_seed(123)
    before = torch.get_rng_state()
    (a, state_a), (b, state_b) = draws(7), draws(7)
    assert torch.equal(a, b) and torch.equal(state_a, state_b)  # same run state: same draws, same generator after
    assert not torch.equal(draws(8)[0], a)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is restored
    with global_rng_seeded_from(None, torch.device("cpu")):  # no generator: nothing is reseeded
        assert torch.equal(torch.get_rng_state(), before)
