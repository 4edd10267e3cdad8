"""SDS maths: CFG, timesteps, w(t), and the Jacobian-free gradient against analytic answers."""

from __future__ import annotations

import pytest
import torch

from sds.guidance.sds import (
    cfg_combine,
    perp_neg_combine,
    perpendicular_component,
    sample_timesteps,
    score_distillation,
    sds_weight,
    to_epsilon,
)


def test_cfg_combine_is_uncond_plus_scaled_difference():
    u, c = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    assert torch.allclose(cfg_combine(u, c, 7.5), u + 7.5 * (c - u))
    assert torch.allclose(cfg_combine(u, c, 1.0), c)  # scale 1 is the conditional model alone


@pytest.mark.parametrize("t_range", [(0.1, 0.9), (0.6, 0.9), (0.02, 0.5)])
def test_timesteps_cover_exactly_the_range(t_range):
    t = sample_timesteps(t_range, 1000, 4000, torch.Generator().manual_seed(0))
    lo, hi = t_range[0] * 1000, t_range[1] * 1000
    assert t.min() >= round(lo) and t.max() <= round(hi)
    assert t.max() >= round(hi) - 5 and t.min() <= round(lo) + 5  # the whole range is used


def test_weightings():
    ab = torch.tensor([0.25, 0.5])
    assert torch.allclose(sds_weight("one_minus_alpha_bar", ab), 1 - ab)
    assert torch.allclose(sds_weight("uniform", ab), torch.ones(2))
    assert torch.allclose(sds_weight("sqrt_one_minus_over_alpha_bar", ab), ((1 - ab) / ab).sqrt())


def _known_denoiser_case(weighting: str):
    """A 'denoiser' eps_hat(x_t, t) = 0.3 * x_t + 0.01 * t at given t and noise: the SDS gradient by hand."""
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 4, 4, generator=gen).requires_grad_(True)
    t, eps = torch.tensor([200, 500, 800]), torch.randn(3, 2, 4, 4, generator=gen)

    def predict(x_t, t):
        return 0.3 * x_t + 0.01 * t.view(-1, 1, 1, 1).float()

    out = score_distillation(x, predict, alphas_cumprod, t, eps, weighting)
    out.loss.backward()
    ab = alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x.detach() + (1 - ab).sqrt() * eps
    expected = sds_weight(weighting, ab) * (predict(x_t, t) - eps) / 3
    return x.grad, expected, out


@pytest.mark.parametrize("weighting", ["one_minus_alpha_bar", "uniform", "sqrt_one_minus_over_alpha_bar"])
def test_sds_gradient_equals_analytic(weighting):
    grad, expected, out = _known_denoiser_case(weighting)
    assert torch.allclose(grad, expected, atol=1e-6)
    assert out.timesteps.tolist() == [200, 500, 800]


def test_a_perfect_denoiser_gives_no_gradient():
    """With eps_hat the true noise, x is already what the model expects: the SDS gradient is exactly zero."""
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    eps = torch.randn(2, 3, 4, 4)
    ab = torch.linspace(0.99, 0.01, 1000)
    out = score_distillation(x, lambda x_t, t: eps, ab, torch.tensor([10, 990]), eps, "uniform")
    out.loss.backward()
    assert out.grad_norm == 0 and torch.equal(x.grad, torch.zeros_like(x))


def test_a_non_finite_gradient_is_an_error():
    ab, t, zeros = torch.linspace(0.99, 0.01, 1000), torch.tensor([100, 900]), torch.zeros(2, 3, 4, 4)
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    for bad in (float("nan"), float("inf")):  # never zeroed into a run that trains nothing
        with pytest.raises(FloatingPointError, match="not finite"):
            score_distillation(x, lambda x_t, t, bad=bad: torch.full_like(x_t, bad), ab, t, zeros, "uniform")


def _noised(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    alpha_bar = torch.tensor([0.9, 0.5, 0.02]).view(-1, 1, 1, 1)
    return x0, eps, alpha_bar, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def test_to_epsilon_recovers_the_noise_from_each_prediction_type():
    x0, eps, ab, x_t = _noised()
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0  # Salimans & Ho's velocity
    assert torch.allclose(to_epsilon(eps, x_t, ab, "epsilon"), eps)
    assert torch.allclose(to_epsilon(v, x_t, ab, "v_prediction"), eps, atol=1e-5)
    assert torch.allclose(to_epsilon(x0, x_t, ab, "sample"), eps, atol=1e-4)
    # Read as epsilon, a v output is badly wrong (the bug this conversion fixes), worst at high noise.
    assert (v - eps)[2].abs().mean() > 0.5
    with pytest.raises(ValueError, match="unsupported prediction_type"):
        to_epsilon(v, x_t, ab, "flow")


def test_to_epsilon_commutes_with_classifier_free_guidance():
    """The conversion is affine with one offset for both branches: CFG on v then convert = convert then CFG."""
    x0, eps, ab, x_t = _noised(1)
    v_u, v_c = torch.randn_like(x_t), torch.randn_like(x_t)
    after = to_epsilon(cfg_combine(v_u, v_c, 7.5), x_t, ab, "v_prediction")
    before = cfg_combine(to_epsilon(v_u, x_t, ab, "v_prediction"), to_epsilon(v_c, x_t, ab, "v_prediction"), 7.5)
    assert torch.allclose(after, before, atol=1e-4)


def test_perpendicular_component_by_hand():
    x, y = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0]])
    assert torch.allclose(perpendicular_component(x, y), torch.tensor([[0.0, 1.0]]))
    assert torch.allclose(perpendicular_component(y, y), torch.zeros(1, 2))  # parallel: nothing left


def test_perp_neg_combine_against_a_hand_computed_case():
    """eps_u = 0, d_pos = (1, 0), d_neg = (1, 1): only the negative's part perpendicular to the positive, (0, 1),
    is pushed away. With w = 2 and s = 10: 10 * ((1, 0) - 2 * (0, 1)) = (10, -20)."""
    eps_u = torch.zeros(1, 2)
    out = perp_neg_combine(eps_u, torch.tensor([[1.0, 0.0]]), [torch.tensor([[1.0, 1.0]])], [torch.tensor([2.0])], 10.0)
    assert torch.allclose(out, torch.tensor([[10.0, -20.0]]))
    # A weight of 0 turns a negative off: plain CFG. A negative parallel to the positive changes nothing either.
    pos = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(perp_neg_combine(eps_u, pos, [torch.tensor([[5.0, 5.0]])], [torch.tensor([0.0])], 10.0),
                          cfg_combine(eps_u, pos, 10.0))
    assert torch.allclose(perp_neg_combine(eps_u, pos, [3 * pos], [torch.tensor([2.0])], 10.0), 10 * pos)
    # With an unconditional offset the same holds on the differences from it.
    u = torch.tensor([[0.5, -0.5]])
    out = perp_neg_combine(u, u + pos, [u + torch.tensor([[1.0, 1.0]])], [torch.tensor([2.0])], 10.0)
    assert torch.allclose(out, u + torch.tensor([[10.0, -20.0]]))


def test_the_unet_batch_keeps_the_renders_memory_layout():
    """Renders arrive channels-last; building the [uncond; cond] batch must keep that layout (torch.cat does,
    repeat does not), or the UNet's results change in their last bits and runs stop matching earlier ones."""
    from types import SimpleNamespace

    from sds.guidance.sds import unet_noise

    seen = []

    def unet(x, t, encoder_hidden_states):
        seen.append(x.stride())
        return SimpleNamespace(sample=x.clone())

    unet.dtype = torch.float32
    x_t = torch.randn(2, 8, 8, 3).permute(0, 3, 1, 2)  # [B, C, H, W] view of a channels-last render
    eps = unet_noise(unet, x_t, torch.tensor([1, 2]), [torch.zeros(2, 4, 5)] * 2)
    assert seen == [torch.cat([x_t, x_t]).stride()] and seen[0] != torch.cat([x_t, x_t]).contiguous().stride()
    assert all(torch.equal(e, x_t) for e in eps)
