"""NeRF fields: the start shapes, coarse levels, albedo init, parameter groups, the sdf geometry's density,
eikonal penalty and redistancing."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sds.config import DensityGeometry, FieldConfig, GridEncoding, HashGridEncoding, SdfGeometry
from sds.field.nerf import GridField, HashGridField
from sds.render.renderer import RenderSettings, dense_samples, render_samples


def _grid(resolution: int, coarse: tuple[int, ...], geometry=None, **kw) -> GridField:
    return GridField(FieldConfig(encoding=GridEncoding(resolution=resolution, coarse_resolutions=coarse),
                                 geometry=geometry or SdfGeometry(), **kw))


def test_blob_init_is_a_ball():
    field = GridField(FieldConfig(geometry=DensityGeometry(blob_density=10.0), blob_radius=0.5))
    d = field.density(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.45, 0.0], [0.0, 0.8, 0.0], [1.5, 0, 0]]))
    assert d[0] > d[1] > d[2] and d[2] < 0.1 and d[3] == 0


def test_coarse_grids_add_to_the_fine_grid_and_spread_gradients():
    field = _grid(16, (4,), DensityGeometry(blob_density=0.0))
    points = torch.rand(50, 3) * 2 - 1
    with torch.no_grad():  # a constant coarse grid is a constant offset everywhere
        field.geometry_grids[1].fill_(0.5)
        field.albedo_grids[1].fill_(0.5)
        field.albedo_grids[0][0, 0] = torch.linspace(-1, 1, 16)[None, None, :]  # albedo logit varies with x
    raw = field.raw(points)
    assert torch.allclose(raw[:, 0], torch.full((50,), 0.5), atol=1e-6)
    assert torch.allclose(raw[:, 1], points[:, 0] + 0.5, atol=1e-5)
    # A step on one point's gradient moves the field 0.3 away through the coarse grid, not through the fine one.
    near, far = torch.tensor([[0.1, 0.1, 0.1]]), torch.tensor([[0.4, 0.1, 0.1]])
    field.raw(near)[:, 0].sum().backward()
    assert all(g.grad is None or not g.grad.any() for g in field.albedo_grids)  # geometry only
    before = field.raw(far)[:, 0].detach()
    with torch.no_grad():
        field.geometry_grids[0].sub_(field.geometry_grids[0].grad)
    assert torch.allclose(field.raw(far)[:, 0], before)
    with torch.no_grad():
        field.geometry_grids[1].sub_(field.geometry_grids[1].grad)
    assert float(before - field.raw(far)[:, 0].detach()) > 0.1


def test_coarse_levels_not_coarser_than_the_grid_are_left_out():
    field = _grid(12, (8, 16), DensityGeometry())
    assert [g.shape for g in field.geometry_grids] == [(1, 1, 12, 12, 12), (1, 1, 8, 8, 8)]
    assert [g.shape for g in field.albedo_grids] == [(1, 3, 12, 12, 12), (1, 3, 8, 8, 8)]
    assert field.full_grid().shape == (1, 4, 12, 12, 12)


def test_hashgrid_field_normals_point_outwards():
    field = HashGridField(FieldConfig(encoding=HashGridEncoding(levels=4, max_resolution=32),
                                      geometry=DensityGeometry()))
    points = torch.tensor([[0.3, 0.0, 0.0], [0.0, -0.3, 0.0]])
    n = field.normals(points)
    assert torch.allclose(n, points / points.norm(dim=-1, keepdim=True), atol=0.05)


@pytest.mark.parametrize("kind", ["grid", "hashgrid"])
def test_albedo_init_sets_the_start_albedo_and_moves_with_the_logits(kind):
    import dataclasses

    from sds.build import build_field

    torch.manual_seed(0)
    encoding = (GridEncoding(resolution=12, coarse_resolutions=()) if kind == "grid"
                else HashGridEncoding(levels=2, log2_table_size=10, max_resolution=16))
    cfg = FieldConfig(encoding=encoding, albedo_init=0.8)
    field = build_field(cfg)
    points = torch.rand(64, 3) * 2 - 1
    if kind == "grid":  # the grid starts at zero logits: the albedo is exactly the init
        assert torch.allclose(field.albedo(points), torch.full((64, 3), 0.8))
        with torch.no_grad():
            field.albedo_grids[0][0, 2] = torch.logit(torch.tensor(0.1)) - torch.logit(torch.tensor(0.8))
        assert torch.allclose(field.albedo(points)[:, 2], torch.full((64,), 0.1), atol=1e-6)
    else:  # the MLP head's random start is offset from the init, not centred on grey
        grey = build_field(dataclasses.replace(cfg, albedo_init=0.5))
        grey.load_state_dict(field.state_dict())
        offset = torch.logit(field.albedo(points)) - torch.logit(grey.albedo(points))
        assert torch.allclose(offset, torch.full_like(offset, float(torch.logit(torch.tensor(0.8)))), atol=1e-4)


@pytest.mark.parametrize("kind", ["grid", "hashgrid"])
def test_param_groups_split_geometry_and_albedo_by_role(kind):
    # Every parameter is in exactly one group; a step with the albedo's lr scale at 0 (as a stage sets it)
    # leaves every albedo parameter as it was and moves every geometry parameter that got a gradient.
    from sds.config import LrScale, OptimConfig
    from sds.train import optimizer_step

    torch.manual_seed(0)
    if kind == "grid":
        field = _grid(12, (4,), DensityGeometry())
        geometry, albedo = list(field.geometry_grids), list(field.albedo_grids)
    else:
        field = HashGridField(FieldConfig(encoding=HashGridEncoding(levels=2, log2_table_size=10, max_resolution=16),
                                          geometry=DensityGeometry()))
        geometry = [*field.encoding.parameters(), *field.trunk.parameters(), *field.geometry_head.parameters()]
        albedo = list(field.albedo_head.parameters())
    groups = field.param_groups(OptimConfig())
    by_role = {role: [p for g in groups if g["role"] == role for p in g["params"]] for role in ("geometry", "albedo")}
    assert {g["role"] for g in groups} == {"geometry", "albedo"}
    assert all(g["initial_lr"] == g["lr"] > 0 for g in groups)
    assert {id(p) for p in by_role["geometry"]} == {id(p) for p in geometry}
    assert {id(p) for p in by_role["albedo"]} == {id(p) for p in albedo}
    assert len(by_role["geometry"]) + len(by_role["albedo"]) == len(list(field.parameters()))

    optimizer = torch.optim.Adam(groups)
    before = [p.detach().clone() for p in field.parameters()]
    points = torch.rand(256, 3) * 1.6 - 0.8
    density, colour = field.query(points)
    (density.sum() + colour.sum()).backward()
    assert all(p.grad is not None and p.grad.any() for p in albedo)  # the albedo did get a gradient
    optimizer_step(SimpleNamespace(optimizer=optimizer, field=field),
                   SimpleNamespace(lr_scale=LrScale(albedo=0.0), geometry_growth=1.0, max_reach=1.0))
    assert all(g["lr"] == (0 if g["role"] == "albedo" else g["initial_lr"]) for g in optimizer.param_groups)
    after = dict(zip(map(id, field.parameters()), field.parameters()))
    old = dict(zip(map(id, field.parameters()), before))
    assert all(torch.equal(after[id(p)], old[id(p)]) for p in albedo)
    moved = [not torch.equal(after[id(p)], old[id(p)]) for p in geometry if p.grad is not None and p.grad.any()]
    assert moved and all(moved)


def test_damp_growth_keeps_a_share_of_the_growing_step_and_all_of_the_carving_one():
    from sds.train import damp_growth

    before, after = torch.tensor([0.0, 1.0, -1.0, 2.0]), torch.tensor([-1.0, 1.5, -1.0, 1.0])
    # A distance that falls grows the shape (sign -1); a density logit that rises does (sign +1).
    assert torch.equal(damp_growth(before, after, -1.0, 0.25), torch.tensor([-0.25, 1.5, -1.0, 1.75]))
    assert torch.equal(damp_growth(before, after, 1.0, 0.25), torch.tensor([-1.0, 1.125, -1.0, 1.0]))
    assert torch.equal(damp_growth(before, after, -1.0, 1.0), after)


def _stepped(field, *growths: float, max_reach: float = 1.0):
    """Copies of the field after one optimizer_step each, on the same gradient (of a loss that pushes the density
    up at some points and down at others), with the geometry's growing steps kept at each of `growths`, and
    whether each step held growth (the shape reached past max_reach)."""
    import copy

    from sds.config import LrScale, OptimConfig
    from sds.train import optimizer_step

    gen = torch.Generator().manual_seed(0)
    points = torch.rand(2048, 3, generator=gen) * 1.6 - 0.8
    sign = torch.randint(0, 2, (2048,), generator=gen) * 2.0 - 1
    field.zero_grad(set_to_none=True)  # each call steps on this gradient alone
    density, colour = field.query(points)
    ((density * sign).sum() + colour.sum()).backward()
    out, held = [], []
    for growth in growths:
        stepped = copy.deepcopy(field)
        for q, p in zip(stepped.parameters(), field.parameters()):
            q.grad = p.grad.clone()
        optimizer = torch.optim.Adam(stepped.param_groups(OptimConfig()))
        held.append(optimizer_step(SimpleNamespace(optimizer=optimizer, field=stepped),
                                   SimpleNamespace(lr_scale=LrScale(), geometry_growth=growth, max_reach=max_reach))[0])
        out.append(stepped)
    return out if max_reach == 1 else (out, held)


@pytest.mark.parametrize("geometry", [SdfGeometry(), DensityGeometry()], ids=["sdf", "density"])
def test_a_stage_s_geometry_growth_damps_only_the_steps_that_grow_the_shape(geometry):
    points = torch.rand(4096, 3) * 1.6 - 0.8
    start = _grid(12, (4,), geometry)
    full, damped = _stepped(start, 1.0, 0.3)
    before = [g.detach() for g in start.geometry_grids]
    # The field's growth sign is right: keeping only the growing part of the whole step raises the density
    # everywhere (and keeping only the carving part lowers it). damp_growth at share 0 keeps only the part that
    # does not grow by the sign it is given, so the opposite sign keeps only the growing part.
    from sds.train import damp_growth

    grown, carved = _grid(12, (4,), geometry), _grid(12, (4,), geometry)
    with torch.no_grad():
        for g, c, b, f in zip(grown.geometry_grids, carved.geometry_grids, before, full.geometry_grids):
            g.copy_(damp_growth(b, f, -start.growth_sign, 0.0))
            c.copy_(damp_growth(b, f, start.growth_sign, 0.0))
        density = start.density(points)
        assert (grown.density(points) >= density - 1e-6).all() and (grown.density(points) > density + 1e-3).any()
        assert (carved.density(points) <= density + 1e-6).all() and (carved.density(points) < density - 1e-3).any()
    # On every level, a growing step is kept at 0.3 and a carving one whole; both kinds occur; the albedo is
    # untouched by the growth setting.
    for b, f, d in zip(before, full.geometry_grids, damped.geometry_grids):
        step = f.detach() - b
        grows = step * start.growth_sign > 0
        assert grows.any() and (step * start.growth_sign < 0).any()
        assert torch.allclose(d[grows] - b[grows], 0.3 * step[grows], atol=1e-7)
        assert torch.equal(d[~grows], f[~grows])
    assert all(torch.equal(f, d) for f, d in zip(full.albedo_grids, damped.albedo_grids))


def test_reach_is_the_farthest_voxel_inside_the_sdf_surface():
    from sds.lattice import grid_axis

    # A sphere of radius R about the origin: the farthest lattice voxel inside it along an axis is the largest
    # axis value below R (on the axis through the centre), as a share of the box's half-width.
    field = _grid(24, (6,), SdfGeometry(), blob_radius=0.5, bound=1.5)
    axis = grid_axis(1.5, 24)
    for radius in (0.5, 0.9):
        with torch.no_grad():
            field.geometry_grids[0].fill_((0.5 - radius) / field.geometry.scale)  # distance = |x| - radius
        assert field.reach() == pytest.approx(float(axis[axis < radius].max()) / 1.5)
    with torch.no_grad():
        field.geometry_grids[0].fill_(10.0)  # nothing inside
    assert field.reach() == 0.0
    # A density grid has no surface until export picks a threshold.
    assert _grid(8, (), DensityGeometry()).reach() is None


@pytest.mark.parametrize("geometry", [SdfGeometry(), DensityGeometry()], ids=["sdf", "density"])
def test_a_shape_past_the_stage_s_max_reach_takes_no_growing_step(geometry):
    start = _grid(12, (4,), geometry)
    reach = start.reach()
    full = _stepped(start, 1.0)[0]
    before = [g.detach() for g in start.geometry_grids]
    # Within the limit the step is whole, as with no limit.
    (within,), (held,) = _stepped(start, 1.0, max_reach=0.99)
    assert not held and all(torch.equal(f, w) for f, w in zip(full.parameters(), within.parameters()))
    (past,), (held,) = _stepped(start, 1.0, max_reach=0.2)
    if reach is None:  # a density grid cannot say how far it reaches: its steps are whole
        assert not held and all(torch.equal(f, p) for f, p in zip(full.parameters(), past.parameters()))
        return
    assert 0.2 < reach < 0.99
    # Past it, on every level, the growing part of the step is dropped and the carving part kept; the albedo
    # moves as ever.
    assert held
    for b, f, p in zip(before, full.geometry_grids, past.geometry_grids):
        step = f.detach() - b
        grows = step * start.growth_sign > 0
        assert grows.any() and (step * start.growth_sign < 0).any()
        assert torch.equal(p[grows], b[grows]) and torch.equal(p[~grows], f[~grows])
    assert all(torch.equal(f, p) for f, p in zip(full.albedo_grids, past.albedo_grids))


def test_a_hash_field_has_no_growth_sign_and_keeps_its_geometry_steps_whole(caplog):
    from sds.config import load_config
    from sds.train import make_trainer

    field = HashGridField(FieldConfig(encoding=HashGridEncoding(levels=2, log2_table_size=10, max_resolution=16)))
    whole, damped = _stepped(field, 1.0, 0.3)
    assert field.growth_sign is None
    assert any(not torch.equal(a, b) for a, b in zip(field.parameters(), whole.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), damped.parameters()))
    # A recipe that asks for damped growth on a hash field is told, once, when the run starts.
    cfg = load_config(None, ["field.encoding=hashgrid", "field.encoding.levels=2", "field.encoding.log2_table_size=10",
                             "field.encoding.max_resolution=16", "stages=[{name: grow, geometry_growth: 0.3}]"],
                      prompt="x")
    with caplog.at_level("WARNING", logger="sds.train"):
        make_trainer(cfg, torch.device("cpu"))
    assert [r.getMessage() for r in caplog.records if "geometry_growth" in r.getMessage()] == [
        "stages ['grow'] set geometry_growth, which only a grid field has (a hash grid's features have no direction "
        "that grows): their geometry steps are kept whole"]


@pytest.mark.parametrize("field", [["field.geometry={kind: density}", "field.encoding.resolution=8"],
                                   ["field.encoding=hashgrid", "field.encoding.levels=2",
                                    "field.encoding.log2_table_size=10", "field.encoding.max_resolution=16"]],
                         ids=["density", "hash"])
def test_max_reach_on_a_field_that_cannot_measure_its_reach_is_told(field, caplog):
    from sds.config import load_config
    from sds.train import make_trainer

    cfg = load_config(None, [*field, "stages=[{name: near, max_reach: 0.5}]"], prompt="x")
    with caplog.at_level("WARNING", logger="sds.train"):
        make_trainer(cfg, torch.device("cpu"))
    assert [r.getMessage() for r in caplog.records if "max_reach" in r.getMessage()] == [
        "stages ['near'] set max_reach, which only a grid sdf field has (it alone knows where its surface is during "
        "the run): their shapes may grow to the box"]


def test_laplace_density_of_a_signed_distance():
    from sds.field.nerf import laplace_density

    beta = 0.05
    sdf = torch.tensor([-10.0, -0.1, 0.0, 0.1, 10.0])
    expected = torch.tensor([1.0, 1 - 0.5 * math.exp(-2), 0.5, 0.5 * math.exp(-2), 0.0]) / beta
    assert torch.allclose(laplace_density(sdf, beta), expected, atol=1e-6)


def test_sdf_field_starts_as_a_crisp_sphere_with_radial_normals():
    beta, radius = 0.02, 0.5
    field = GridField(FieldConfig(geometry=SdfGeometry(beta=beta), blob_radius=radius))
    d = field.density(torch.tensor([[0.0, 0.0, 0.0], [0.0, radius, 0.0], [radius + 0.1, 0.0, 0.0]]))
    assert torch.allclose(d, torch.tensor([1 / beta, 0.5 / beta, 0.5 * math.exp(-0.1 / beta) / beta]), rtol=1e-4)
    # Normals come from the distance, so they are radial inside and outside the thin band alike.
    points = torch.tensor([[0.2, 0.0, 0.0], [0.0, -0.7, 0.0], [0.3, 0.3, -0.3]])
    assert torch.allclose(field.normals(points), points / points.norm(dim=-1, keepdim=True), atol=1e-4)
    # A ray through the centre crosses 2 * radius of density 1 / beta: opaque. One passing 0.1 outside meets
    # only the Laplace tail 0.5 exp(-d / beta) / beta, d = sqrt(0.6^2 + s^2) - 0.5 along it: integrate that.
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.0, radius + 0.1, 3.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    samples = dense_samples(origins, dirs, field.bound, 512, perturb=False, generator=None)
    out = render_samples(field, origins, dirs, origins, samples, RenderSettings("albedo"))
    s = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    tail = 0.5 * torch.exp(-((0.6**2 + s**2).sqrt() - radius) / beta) / beta
    expected = 1 - math.exp(-float(torch.trapezoid(tail, s)))
    assert out["opacity"][0] > 0.999
    assert float(out["opacity"][1].detach()) == pytest.approx(expected, rel=0.02) and 0.03 < expected < 0.06


def test_eikonal_is_zero_for_a_distance_and_one_for_twice_a_distance():
    field = _grid(24, (8,), SdfGeometry(scale=0.5))
    assert field.eikonal().item() < 0.01  # the start sphere is a distance (off only at the voxels by the centre)
    axis = torch.linspace(-1, 1, 24)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    with torch.no_grad():  # channel 0 adds the start sphere's distance again: d doubles, |grad d| = 2
        field.geometry_grids[0][0, 0] = field.start_sphere_sdf(torch.stack([x, y, z], -1)) / 0.5
    assert field.eikonal().item() == pytest.approx(1.0, abs=0.02)
    field.eikonal().backward()
    assert field.geometry_grids[1].grad[0, 0].abs().sum() > 0  # the penalty reaches the coarse level too
    assert all(g.grad is None for g in field.albedo_grids)  # and never the albedo


def _field_with_distance(distance, resolution: int = 48) -> GridField:
    """A grid field whose sdf geometry is `distance` (a function of [..., 3] points) at its voxels."""
    field = _grid(resolution, (), SdfGeometry(scale=1.0))
    lattice = field.lattice
    with torch.no_grad():
        field.geometry_grids[0][0, 0] = distance(lattice) - field.start_sphere_sdf(lattice)
    return field


def test_normal_roughness_is_zero_on_a_plane_and_curvature_on_a_sphere():
    # A plane's normal is the same everywhere. A sphere's turns by (h / R) sqrt(1 - n_k^2) between neighbours
    # h apart along axis k: over the sphere's directions and the three axes, (pi / 4) h / R on average per pair.
    plane = _field_with_distance(lambda p: p @ torch.tensor([0.36, 0.48, 0.8]) - 0.1)
    assert plane.normal_roughness().item() < 1e-4
    for radius in (0.3, 0.5):
        sphere = _field_with_distance(lambda p, r=radius: p.norm(dim=-1) - r)
        total, count = sphere.normal_turning()
        h = sphere.voxel_size  # the band's voxels lie 0.75 h outside the surface on average: radius R + 0.75 h
        assert (total / count).item() == pytest.approx(math.pi / 4 * h / (radius + 0.75 * h), rel=0.05)
    # The total turning grows with the sphere's radius (area R^2 times turning per pair 1/R): growing never pays.
    small, large = (_field_with_distance(lambda p, r=r: p.norm(dim=-1) - r).normal_roughness() for r in (0.3, 0.5))
    assert large > small * 1.4


def _rounded_box(r: float):
    def distance(p):  # a cube of side 0.8 with edges and corners rounded with radius r (0: sharp)
        q = p.abs() - (0.4 - r)
        return q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0) - r
    return distance


def test_normal_roughness_charges_bumps_not_how_sharp_an_edge_is():
    # Like total variation, the norm of the change counts how far the normal turns, not how fast: a face meeting
    # the next at a sharp edge costs what a rounded edge costs (a squared change would prefer rounded edges),
    # and bumps on the faces cost more.
    sharp = _field_with_distance(_rounded_box(0.0)).normal_roughness().item()
    rounded = _field_with_distance(_rounded_box(0.15)).normal_roughness().item()
    bumpy = _field_with_distance(lambda p: _rounded_box(0.0)(p) + 0.02 * torch.sin(20 * p).prod(-1))
    assert sharp == pytest.approx(rounded, rel=0.2), (sharp, rounded)
    assert bumpy.normal_roughness().item() > 1.5 * sharp
    field = _grid(24, (8,))
    field.normal_roughness().backward()
    assert field.geometry_grids[1].grad.abs().sum() > 0 and all(g.grad is None for g in field.albedo_grids)


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
    field = _grid(32, (8,), SdfGeometry(scale=0.2))
    p, h = field.lattice, field.voxel_size
    true = p.norm(dim=-1) - 0.45  # a sphere of radius 0.45 (the start sphere has 0.47)
    with torch.no_grad():  # the same zero set, but a slope from 1.2 to 2.8 along x; the coarse levels hold noise
        field.geometry_grids[1].normal_(generator=torch.Generator().manual_seed(0))
        field.albedo_grids[1].normal_(generator=torch.Generator().manual_seed(1))
        coarse = field._summed(field.geometry_grids)[0, 0] - field.geometry_grids[0][0, 0]
        field.geometry_grids[0][0, 0] = (true * (2 + 0.8 * p[..., 0]) - field.start_sphere_sdf(p)) / 0.2 - coarse
        field.albedo_grids[0].copy_(torch.rand(1, 3, 32, 32, 32))
    albedo = [g.detach().clone() for g in field.albedo_grids]
    coarse_level = field.geometry_grids[1].detach().clone()
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
    assert all(torch.equal(g, a) for g, a in zip(field.albedo_grids, albedo))
    assert torch.equal(field.geometry_grids[1], coarse_level)


def test_redistance_without_a_surface_changes_nothing():
    field = _grid(16, ())
    with torch.no_grad():
        field.geometry_grids[0][0, 0] = 10.0  # 2 world units outward everywhere: nothing is inside
    params = [p.detach().clone() for p in field.parameters()]
    assert not field.redistance()
    assert all(torch.equal(p, q) for p, q in zip(field.parameters(), params))
