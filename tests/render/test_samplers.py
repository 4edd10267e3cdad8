"""Where along each ray the field is evaluated."""

from __future__ import annotations

import pytest
import torch

from sds.render.samplers import ray_aabb


def test_ray_aabb():
    origins = torch.tensor([[0.0, 0.0, 3.0], [5.0, 5.0, 3.0]])
    near, far = ray_aabb(origins, torch.tensor([[0, 0, -1.0], [0, 0, -1.0]]), 1.0)
    assert near[0] == pytest.approx(2.0) and far[0] == pytest.approx(4.0)
    assert near[1] == far[1]  # a miss
