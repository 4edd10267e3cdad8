"""The shipped built-in prior: loads offline, is text-conditioned, samples sensibly; its world is exact."""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # the shipped weights must never need the network


@pytest.fixture(scope="module")
def prior():
    from sds.config import GuidanceConfig
    from sds.guidance.load import load_components

    parts, source = load_components(GuidanceConfig(model="builtin"), torch.device("cpu"))
    assert source.is_local
    return parts


def _hidden(parts, prompts: list[str]) -> torch.Tensor:
    tok = parts["tokenizer"]
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    return parts["text_encoder"](ids)[0]


def test_builtin_loads_offline_and_samples(prior, monkeypatch):
    from diffusers import DDIMScheduler

    from sds.sampling import sample_from_components

    assert "vae" not in prior  # pixel space
    assert prior["unet"].config.sample_size == 32 and prior["unet"].config.in_channels == 3
    assert prior["scheduler"].config.clip_sample  # pixel model: x0 predictions are clipped to [-1, 1]
    seen = []
    step = DDIMScheduler.step

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("use_clipped_model_output", False))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(DDIMScheduler, "step", spy)
    images = sample_from_components(prior, ["a red cube"], 2, "ddim", steps=2, guidance_scale=3.0, seed=0)
    assert images.shape == (2, 32, 32, 3)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    # The fix that made DDIM work: epsilon re-derived from the clipped x0, not the raw one kept beside it.
    assert seen == [True, True]


def test_sampling_schedulers_cover_the_whole_chain(prior):
    from sds.sampling import make_scheduler

    config = prior["scheduler"].config
    ddim = make_scheduler(config, "ddim", 30)
    # The first DDIM step must be at t = T-1, where pure noise belongs (not t = 957 as with "leading").
    assert len(ddim.timesteps) == 30 and int(ddim.timesteps[0]) == config.num_train_timesteps - 1
    ddpm = make_scheduler(config, "ddpm", 30)
    assert len(ddpm.timesteps) == config.num_train_timesteps and int(ddpm.timesteps[0]) == 999
    with pytest.raises(ValueError):
        make_scheduler(config, "euler", 30)


@torch.no_grad()
def test_ddim_sample_is_a_red_object_on_a_light_background(prior):
    from sds.sampling import sample_from_components

    images = sample_from_components(prior, ["a red sphere"], 3, "ddim", steps=15, guidance_scale=3.0, seed=0)
    border = torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], dim=1)  # [n, 4W, 3]
    bg = border.median(dim=1).values  # [n, 3]
    assert (bg.amin(-1) > 0.6).all(), f"backgrounds {bg.tolist()}"  # few-step samples are faintly tinted
    foreground = (images - bg[:, None, None]).abs().amax(-1) > 0.2
    fraction = foreground.float().mean(dim=(1, 2))  # true renders: 0.1-0.4
    assert ((fraction > 0.05) & (fraction < 0.6)).all(), f"object area fractions {fraction.tolist()}"
    fg = images[foreground]
    assert (fg[:, 0] - fg[:, 2]).mean() > 0.25, "the object is not red"


@torch.no_grad()
def test_colour_conditioning_in_x0_prediction(prior):
    """At a fixed noisy input, CFG towards 'a red sphere' predicts a redder clean image than 'a blue sphere'."""
    sched, unet = prior["scheduler"], prior["unet"]
    t = 700
    ab = sched.alphas_cumprod[t]
    g = torch.Generator().manual_seed(0)
    x0 = torch.ones(4, 3, 32, 32)  # a white canvas, noised
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=g)
    hidden = _hidden(prior, ["", "a red sphere", "a blue sphere"])
    eps = unet(xt.repeat(3, 1, 1, 1), t, encoder_hidden_states=hidden.repeat_interleave(4, 0)).sample
    eps_u, eps_red, eps_blue = eps.chunk(3)

    def redness(eps_c):
        e = eps_u + 3.0 * (eps_c - eps_u)
        x0_pred = ((xt - (1 - ab).sqrt() * e) / ab.sqrt()).clamp(-1, 1)
        return float((x0_pred[:, 0] - x0_pred[:, 2]).mean())

    # Shipped model: mean R - B of the predicted image +0.13 towards red, -0.09 towards blue.
    assert redness(eps_red) > 0.05 and redness(eps_blue) < -0.03


@torch.no_grad()
def test_shape_conditioning_in_x0_prediction(prior):
    """Denoising a true render is more accurate with its own shape word than with any other."""
    from sds.prior.data import DataConfig, render_primitive
    from sds.prior.world import COLORS, SHAPES

    sched, unet = prior["scheduler"], prior["unet"]
    t, n = 900, 8
    ab = sched.alphas_cumprod[t]
    g = torch.Generator().manual_seed(0)
    for shape in ("sphere", "torus"):
        renders, _ = render_primitive(shape, torch.tensor(COLORS["green"]).expand(n, 3), DataConfig(), g, n)
        x0 = renders * 2 - 1
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=g)
        hidden = _hidden(prior, [f"a green {s}" for s in SHAPES])
        eps = unet(xt.repeat(len(SHAPES), 1, 1, 1), t, encoder_hidden_states=hidden.repeat_interleave(n, 0)).sample
        x0_pred = (xt.repeat(len(SHAPES), 1, 1, 1) - (1 - ab).sqrt() * eps) / ab.sqrt()
        err = (x0_pred.clamp(-1, 1) - x0.repeat(len(SHAPES), 1, 1, 1)).pow(2).view(len(SHAPES), -1).mean(-1)
        right = err[SHAPES.index(shape)]
        best_wrong = min(e for s, e in zip(SHAPES, err) if s != shape)
        # Shipped model: sphere 0.045 vs 0.085 (cube), torus 0.091 vs 0.178 (sphere).
        assert right < 0.75 * best_wrong, f"{shape}: errors {dict(zip(SHAPES, err.tolist()))}"


def test_unknown_word_is_reported(prior):
    from sds.prompt import check_prompt

    warnings = check_prompt(prior["tokenizer"], "a red dragon")
    assert len(warnings) == 1 and "dragon" in warnings[0]
    assert check_prompt(prior["tokenizer"], "a red cube, side view") == []


def test_every_vocabulary_word_is_one_token(prior):
    from sds.prior.tokenizer import SPECIAL_TOKENS, build_tokenizer, vocabulary

    for tok in (prior["tokenizer"], build_tokenizer()):
        vocab = tok.get_vocab()
        for word in vocabulary():
            if word in SPECIAL_TOKENS:
                continue
            assert tok(word, add_special_tokens=False).input_ids == [vocab[word]], word
        ids = tok("A Red Cube, side view", add_special_tokens=False).input_ids
        assert tok.convert_ids_to_tokens(ids) == ["a", "red", "cube", ",", "side", "view"]


def test_world_sdfs_at_analytic_points():
    from sds.prior.world import sdf

    def d(shape, *p):
        return float(sdf(shape, torch.tensor([p], dtype=torch.float32))[0])

    assert d("sphere", 0.5, 0, 0) == pytest.approx(0, abs=1e-6)
    assert d("sphere", 0, 0, 0) == pytest.approx(-0.5, abs=1e-6)
    assert d("cube", 0.4, 0.4, 0.4) == pytest.approx(0, abs=1e-6)  # a corner
    assert d("cube", 0.5, 0.5, 0.5) == pytest.approx(0.1 * math.sqrt(3), abs=1e-6)
    assert d("cube", 0, 0, 0) == pytest.approx(-0.4, abs=1e-6)
    assert d("cylinder", 0.4, 0, 0) == pytest.approx(0, abs=1e-6)
    assert d("cylinder", 0, 0.4, 0) == pytest.approx(0, abs=1e-6)
    assert d("torus", 0.4, 0, 0) == pytest.approx(-0.15, abs=1e-6)  # tube centre
    assert d("torus", 0, 0.4, -0.4) > 0 and d("torus", 0, 0, 0) == pytest.approx(0.25, abs=1e-6)
    assert d("cone", 0, 0.5, 0) == pytest.approx(0, abs=1e-6)  # apex
    assert d("cone", 0, 0.6, 0) == pytest.approx(0.1, abs=1e-6)
    assert d("cone", 0, -0.4, 0) == pytest.approx(0, abs=1e-6)  # base centre
    assert d("cone", 0.25, 0.05, 0) == pytest.approx(0, abs=1e-6)  # slant at mid-height
    assert d("cone", 0, 0, 0) < 0


def test_train_prior_at_another_resolution_exports_a_model_the_guidance_renders_for(tmp_path):
    """`sds train-prior --resolution 16`: the data is rendered at 16 px and the exported UNet says 16, which is the
    size the guidance resizes renders to (a sharper prior loads as it is; `render.resolution` sets what it is shown)."""
    import json

    from sds.cli import main
    from sds.config import GuidanceConfig
    from sds.guidance.load import load_guidance
    from sds.state_file import read_state

    out = tmp_path / "prior"
    assert main(["train-prior", str(out), "--steps", "1", "--images-per-caption", "1", "--batch-size", "4",
                 "--resolution", "16"]) == 0
    assert read_state(out / "data.pt", what="data")["images"].shape[-2:] == (16, 16)
    assert json.loads((out / "model" / "unet" / "config.json").read_text())["sample_size"] == 16
    guidance, _ = load_guidance(GuidanceConfig(model=str(out / "model")), "a red cube", torch.device("cpu"))
    assert guidance.image_size == 16 and guidance.encode(torch.rand(1, 3, 32, 32)).shape[-2:] == (16, 16)


def test_a_checkpoint_does_not_resume_at_another_resolution(tmp_path, capsys):
    from sds.cli import main

    out = tmp_path / "prior"
    args = ["train-prior", str(out), "--steps", "1", "--images-per-caption", "1", "--batch-size", "4"]
    assert main([*args, "--resolution", "16"]) == 0
    kept = {name: (out / name).read_bytes() for name in ("ckpt.pt", "data.pt")}
    capsys.readouterr()
    assert main([*args, "--resolution", "24"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resolution" in err and "new folder" in err, err
    assert {name: (out / name).read_bytes() for name in kept} == kept  # nothing rendered or written again
