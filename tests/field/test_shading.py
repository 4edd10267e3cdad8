"""Per-sample shading against hand-computed values: lambertian and textureless light, unlit light samples, and
how much each normal faces away from the camera."""

from __future__ import annotations

import pytest
import torch

from sds.field.shading import AMBIENT, lambertian, shade


class _Facing:
    """Every normal is +z."""

    def normals(self, points):
        return torch.tensor([0.0, 0.0, 1.0]).expand(points.shape[0], 3)


def test_lambertian_is_ambient_plus_the_cosine_share():
    albedo = torch.tensor([[0.5, 1.0, 0.2]] * 3)
    normal = torch.tensor([[0.0, 0.0, 1.0]] * 3)
    light = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.6, 0.8], [0.0, 0.0, -1.0]])  # head-on, 0.8, from behind
    expected = albedo * torch.tensor([1.0, AMBIENT + (1 - AMBIENT) * 0.8, AMBIENT])[:, None]
    assert torch.allclose(lambertian(albedo, normal, light), expected)


@pytest.mark.parametrize("shading", ["albedo", "lambertian", "textureless"])
def test_shade_lights_heavy_samples_and_measures_backfacing(shading):
    # One ray along d = (0, 0.6, 0.8): the +z normal faces away from the camera with n . d = 0.8. Sample 0 is
    # heavy (lit, the light straight along its normal); sample 1 is too light to get a normal: ambient only,
    # and it counts as facing nowhere.
    points = torch.tensor([[[0.0, 0.0, 0.1], [0.0, 0.0, 0.2]]])
    albedo = torch.tensor([[[0.5, 1.0, 0.2], [0.4, 0.4, 0.4]]])
    weights = torch.tensor([[0.5, 1e-6]])
    dirs = torch.tensor([[0.0, 0.6, 0.8]])
    light = torch.tensor([[0.0, 0.0, 5.0]])  # on the z axis: straight along the normal from both samples
    color, backfacing = shade(_Facing(), points, albedo, weights, dirs, light, shading, min_weight=1e-4)
    if shading == "albedo":
        assert torch.equal(color, albedo) and torch.equal(backfacing, torch.zeros(1, 2))
        return
    base = albedo if shading == "lambertian" else torch.full_like(albedo, 0.75)
    assert torch.allclose(color[0, 0], base[0, 0])  # ambient + (1 - ambient) * 1
    assert torch.allclose(color[0, 1], AMBIENT * base[0, 1])
    assert torch.allclose(backfacing, torch.tensor([[0.64, 0.0]]))
