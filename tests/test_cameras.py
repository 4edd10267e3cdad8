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
