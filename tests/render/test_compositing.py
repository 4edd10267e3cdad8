"""Compositing against analytic answers and against nerfacc's own implementation."""

from __future__ import annotations

import math

import pytest
import torch

from sds.render.compositing import RaySamples, accumulate_color, along_rays, composite_weights, sample_weights


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


def _packed(samples: RaySamples) -> RaySamples:
    """The same dense [R, S] samples in nerfacc's packed layout: [R * S] with the ray of each."""
    r, s = samples.t.shape
    return RaySamples(samples.t.reshape(-1), samples.deltas.reshape(-1),
                      torch.arange(r, device=samples.t.device).repeat_interleave(s), n_rays=r)


def _random_rays():
    gen = torch.Generator().manual_seed(0)
    density = torch.rand(5, 7, generator=gen) * 4
    deltas = torch.rand(5, 7, generator=gen) * 0.3 + 0.01
    t = torch.cumsum(deltas, -1) - deltas / 2  # each sample in the middle of its interval
    return density, RaySamples(t, deltas), torch.rand(5, 7, 3, generator=gen)


def test_sums_along_packed_rays_match_dense():
    density, dense, values = _random_rays()
    packed = _packed(dense)
    weights = sample_weights(density, dense)
    assert torch.equal(weights, composite_weights(density, dense.deltas)[0])
    assert torch.allclose(along_rays(weights, values), (weights[..., None] * values).sum(1))
    assert torch.allclose(along_rays(weights, None), weights.sum(-1))
    assert torch.allclose(along_rays(weights.reshape(-1), values.reshape(-1, 3), packed), along_rays(weights, values),
                          atol=1e-6)
    assert torch.allclose(along_rays(weights.reshape(-1), None, packed), weights.sum(-1), atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="nerfacc's packed weights need CUDA")
def test_packed_weights_match_dense():
    density, dense, _ = _random_rays()
    packed = _packed(RaySamples(dense.t.cuda(), dense.deltas.cuda()))
    weights = sample_weights(density.reshape(-1).cuda(), packed).cpu()
    assert torch.allclose(weights, composite_weights(density, dense.deltas)[0].reshape(-1), atol=1e-6)


@pytest.mark.parametrize("packed", [False, True])
def test_color_depth_gradient_scale_keeps_the_image_and_reshapes_only_the_weights_gradient(packed):
    # Two rays of three samples with different colours along each: the weights' gradient of a linear loss is
    # c_i . v at scale 1, the ray's mean colour . v at scale 0, and the mix in between.
    torch.manual_seed(0)
    weights = torch.tensor([[0.1, 0.5, 0.2], [0.3, 0.0, 0.6]])
    color = torch.rand(2, 3, 3)
    v = torch.tensor([0.7, -1.3, 2.0])
    mean = along_rays(weights, color) / weights.sum(-1, keepdim=True)
    samples = _packed(RaySamples(torch.zeros(2, 3), torch.ones(2, 3))) if packed else None
    for scale in (1.0, 0.5, 0.0):
        w = weights.clone().requires_grad_()
        c = color.clone().requires_grad_()
        if packed:
            rgb = accumulate_color(w.view(-1), c.view(-1, 3), scale, samples)
        else:
            rgb = accumulate_color(w, c, scale)
        assert torch.allclose(rgb, along_rays(weights, color))
        (rgb * v).sum().backward()
        assert torch.allclose(c.grad, weights[..., None] * v)
        seen = scale * color + (1 - scale) * mean[:, None, :]
        assert torch.allclose(w.grad, seen @ v, atol=1e-6)
    assert not torch.allclose(color @ v, mean[:, None, :] @ v)  # the two ends differ on this data
