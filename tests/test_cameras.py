from __future__ import annotations

import pytest
import torch

from sds.cameras import camera_rays, orbit_cameras, sample_orbit_cameras, view_label


@pytest.mark.parametrize("azimuth,label", [(0, "front"), (44.999, "front"), (45, "side"), (-45, "front"),
                                           (-45.001, "side"), (134.999, "side"), (135, "back"), (180, "back"),
                                           (-135, "side"), (-135.001, "back"), (360, "front"), (225, "side")])
def test_view_label_sector_boundaries(azimuth, label):
    assert view_label(azimuth, 0.0) == label


def test_overhead_wins_at_threshold():
    assert view_label(0.0, 60.0) == "overhead"
    assert view_label(0.0, 59.999) == "front"


def test_orbit_camera_position_and_central_ray():
    cams = orbit_cameras(torch.tensor([90.0]), torch.tensor([30.0]), torch.tensor([2.0]), torch.tensor([40.0]))
    expected = torch.tensor([2 * 3**0.5 / 2, 1.0, 0.0])
    assert torch.allclose(cams.position[0], expected, atol=1e-5)
    origins, dirs = camera_rays(cams, 2, 2)
    centre = dirs[0].mean(dim=(0, 1))
    assert torch.allclose(centre / centre.norm(), -expected / 2, atol=1e-5)  # looks at the origin


def test_corner_ray_angle_matches_fov():
    cams = orbit_cameras(torch.zeros(1), torch.zeros(1), torch.ones(1) * 3, torch.tensor([60.0]))
    _, dirs = camera_rays(cams, 101, 101)
    top_middle = dirs[0, 0, 50]
    angle = torch.rad2deg(torch.acos((top_middle * torch.tensor([0, 0, -1.0])).sum()))
    assert angle == pytest.approx(30 * 100 / 101, abs=0.3)  # pixel centres sit half a pixel inside


def test_stratified_azimuths_cover_circle():
    cams = sample_orbit_cameras(8, (2, 3), (0, 10), (40, 40), torch.Generator().manual_seed(0))
    bins = (cams.azimuth_deg // 45).long()
    assert sorted(bins.tolist()) == list(range(8))


def test_low_views_take_low_elevations_and_keep_the_other_draws():
    def draw(low_views, seed):
        return sample_orbit_cameras(4, (2, 3), (0, 10), (40, 44), torch.Generator().manual_seed(seed),
                                    low_views=low_views, low_elevation_range_deg=(-30, -20))

    lowered_ever = set()
    for seed in range(20):
        plain, lowered = draw(0, seed), draw(2, seed)
        low = lowered.elevation_deg < 0
        assert low.sum() == 2
        assert ((lowered.elevation_deg[low] >= -30) & (lowered.elevation_deg[low] <= -20)).all()
        assert torch.equal(lowered.elevation_deg[~low], plain.elevation_deg[~low])
        for name in ("azimuth_deg", "radius", "fov_deg"):  # only the lowered elevations differ
            assert torch.equal(getattr(lowered, name), getattr(plain, name))
        height = lowered.radius * torch.sin(torch.deg2rad(lowered.elevation_deg))
        assert torch.allclose(lowered.position[:, 1], height, atol=1e-5)  # cameras really sit that low
        lowered_ever.update(low.nonzero().flatten().tolist())
    assert lowered_ever == {0, 1, 2, 3}  # not always the same stratified azimuths


def test_trainer_lowers_views_as_the_ramp_says():
    from sds.config import load_config
    from sds.schedule import plan
    from sds.train import make_trainer, sample_views

    ramp = '{"start":0,"end":0.5,"start_step":10,"end_step":10}'
    cfg = load_config(None, [f"camera.low_view_fraction={ramp}", "camera.low_elevation_range_deg=[-40,-30]"],
                      prompt="a red cube")
    trainer = make_trainer(cfg, torch.device("cpu"))
    counts = {}
    for step in (0, 10, 11, 50):  # the ramp holds its start value up to start_step
        cams, _, _ = sample_views(trainer, plan(cfg, step))
        counts[step] = int((cams.elevation_deg < -20).sum())
    assert counts == {0: 0, 10: 0, 11: 2, 50: 2}
