"""Guidance over real diffusers models (tiny, built from config): the gradient reaches the render
through the SDS surrogate only, never through the UNet."""

from __future__ import annotations

import pytest
import torch

from sds.config import GuidanceConfig, StageConfig
from sds.guidance.load import ModelLoadError, load_guidance, resolve_model
from sds.guidance.sds import sample_timesteps, sds_weight

ONE_STAGE = (StageConfig(guidance_scale=7.5),)


def _plan(guidance_cfg: GuidanceConfig, step: int = 0, steps: int = 10, stages=ONE_STAGE):
    """The step plan of a `steps`-step run with this guidance config (one stage at guidance scale 7.5)."""
    from sds.config import RunConfig
    from sds.schedule import plan

    return plan(RunConfig(steps=steps, guidance=guidance_cfg, stages=stages), step)


def _expected_grad(guidance, images_bchw, labels, seed):
    """Replay the draws of score_distillation and pull w(t)(eps_hat - eps)/B back to the images."""
    x = guidance.encode(images_bchw)
    gen = torch.Generator().manual_seed(seed)
    t = sample_timesteps(_plan(guidance.cfg).t_range, guidance.num_train_timesteps, x.shape[0], gen)
    eps = torch.randn(x.shape, generator=gen)
    ab = guidance.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        x_t = ab.sqrt() * x + (1 - ab).sqrt() * eps
        eps_hat = guidance.predict_noise(x_t, t, guidance.embeddings.for_views(labels), _plan(guidance.cfg).guidance_scale,
                                         labels=labels)
    g = sds_weight(guidance.cfg.weighting, ab) * (eps_hat - eps) / x.shape[0]
    return torch.autograd.grad(x, images_bchw, grad_outputs=g)[0]


@pytest.mark.parametrize("fixture", ["tiny_pixel_model", "tiny_latent_model", "tiny_if_model", "tiny_sdxl_model"])
def test_render_gradient_is_the_sds_pullback(fixture, request):
    folder = request.getfixturevalue(fixture)
    cfg = GuidanceConfig(model=str(folder), t_end=(0.02, 0.98))
    guidance, warnings = load_guidance(cfg, "a red cube", torch.device("cpu"))
    assert warnings == []
    size = guidance.image_size
    rgb = torch.rand(2, size, size, 3, requires_grad=True)
    labels = ["front", "back"]
    out = guidance(rgb, labels, _plan(cfg), generator=torch.Generator().manual_seed(3))
    out.loss.backward()
    images = rgb.detach().permute(0, 3, 1, 2).clone().requires_grad_(True)
    expected = _expected_grad(guidance, images, labels, seed=3).permute(0, 2, 3, 1)
    assert torch.allclose(rgb.grad, expected, atol=1e-5, rtol=1e-4)
    assert rgb.grad.abs().sum() > 0
    # The UNet is frozen and outside the graph: no parameter gets a gradient.
    assert all(p.grad is None and not p.requires_grad for p in guidance.unet.parameters())


def test_each_stage_guides_at_its_own_scale(tiny_pixel_model):
    """In a two-stage run a step of the second stage gets the gradient of that stage's scale."""
    cfg = GuidanceConfig(model=str(tiny_pixel_model), t_end=(0.02, 0.98))
    guidance, _ = load_guidance(cfg, "a red cube", torch.device("cpu"))

    def grad(stages, step):
        rgb = torch.full((2, 16, 16, 3), 0.5, requires_grad=True)
        plan = _plan(cfg, step, 10, stages)
        guidance(rgb, [None, None], plan, torch.Generator().manual_seed(1)).loss.backward()
        return rgb.grad

    two = (StageConfig("a", until=0.5, guidance_scale=7.5), StageConfig("b", guidance_scale=2.0))
    assert torch.allclose(grad(two, 5), grad((StageConfig(guidance_scale=2.0),), 5), atol=1e-7)
    assert torch.allclose(grad(two, 4), grad((StageConfig(guidance_scale=7.5),), 4), atol=1e-7)
    assert not torch.allclose(grad(two, 5), grad((StageConfig(guidance_scale=7.5),), 5), atol=1e-5)


def test_pixel_gradient_is_twice_sds_grad_for_native_size(tiny_pixel_model):
    """For a pixel model at native size x = 2*rgb - 1, so dL/drgb = 2 * w(t)(eps_hat - eps) / B."""
    cfg = GuidanceConfig(model=str(tiny_pixel_model), t_end=(0.02, 0.98), weighting="one_minus_alpha_bar")
    guidance, _ = load_guidance(cfg, "a blue torus", torch.device("cpu"))
    rgb = torch.rand(3, 16, 16, 3, requires_grad=True)
    guidance(rgb, [None] * 3, _plan(cfg), torch.Generator().manual_seed(0)).loss.backward()
    gen = torch.Generator().manual_seed(0)
    t = sample_timesteps(_plan(cfg).t_range, 1000, 3, gen)
    eps = torch.randn(3, 3, 16, 16, generator=gen)
    x = rgb.detach().permute(0, 3, 1, 2) * 2 - 1
    ab = guidance.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        eps_hat = guidance.predict_noise(ab.sqrt() * x + (1 - ab).sqrt() * eps, t,
                                         guidance.embeddings.for_views([None] * 3), _plan(cfg).guidance_scale)
    expected = 2 * (1 - ab) * (eps_hat - eps) / 3
    assert torch.allclose(rgb.grad.permute(0, 3, 1, 2), expected, atol=1e-6)


def test_view_dependent_embeddings_differ(tiny_pixel_model):
    guidance, _ = load_guidance(GuidanceConfig(model=str(tiny_pixel_model)), "a red cube", torch.device("cpu"))
    e = guidance.embeddings
    assert set(e.by_view) == {"", "front", "side", "back", "overhead"}
    assert not torch.allclose(e.by_view["front"], e.by_view["back"])


def test_prompt_warnings(tiny_pixel_model):
    _, warnings = load_guidance(GuidanceConfig(model=str(tiny_pixel_model)), "a red dragon", torch.device("cpu"))
    assert any("'dragon'" in w and "model=" in w for w in warnings)
    long_prompt = "a red cube " * 10
    _, warnings = load_guidance(GuidanceConfig(model=str(tiny_pixel_model)), long_prompt, torch.device("cpu"))
    assert any("only the first" in w for w in warnings)


def test_missing_model_path_names_path(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelLoadError, match="does not exist.*no_such_model"):
        resolve_model(str(missing))
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        resolve_model(str(tmp_path))
    assert resolve_model("stabilityai/stable-diffusion-2-1-base").is_local is False


def _with_prediction_type(folder, tmp_path, kind: str):
    """A copy of a tiny model folder whose scheduler says the UNet predicts `kind`."""
    import json
    import shutil

    copy = tmp_path / f"model-{kind}"
    shutil.copytree(folder, copy)
    path = copy / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "prediction_type": kind}))
    return copy


@pytest.mark.parametrize("fixture", ["tiny_pixel_model", "tiny_latent_model"])
def test_a_v_prediction_model_output_is_converted_to_epsilon(fixture, request, tmp_path):
    from sds.guidance.sds import guided_noise

    folder = _with_prediction_type(request.getfixturevalue(fixture), tmp_path, "v_prediction")
    cfg = GuidanceConfig(model=str(folder))
    guidance, _ = load_guidance(cfg, "a red cube", torch.device("cpu"))
    assert guidance.prediction_type == "v_prediction"
    gen = torch.Generator().manual_seed(0)
    channels = guidance.unet.config.in_channels
    x_t = torch.randn(2, channels, guidance.unet.config.sample_size, guidance.unet.config.sample_size, generator=gen)
    t = torch.tensor([100, 900])
    cond = guidance.embeddings.for_views([None, None])
    with torch.no_grad():
        v = guided_noise(guidance.unet, x_t, t, guidance.embeddings.uncond.expand(2, -1, -1), cond, 7.5)
        eps = guidance.predict_noise(x_t, t, cond, 7.5)
    ab = guidance.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(eps, ab.sqrt() * v + (1 - ab).sqrt() * x_t, atol=1e-5)
    assert not torch.allclose(eps, v, atol=1e-2)  # used as epsilon, v would give another gradient


def test_an_unsupported_prediction_type_fails_before_any_compute(tiny_pixel_model, tmp_path):
    folder = _with_prediction_type(tiny_pixel_model, tmp_path, "flow_prediction")
    with pytest.raises(ModelLoadError, match="flow_prediction"):
        load_guidance(GuidanceConfig(model=str(folder)), "a red cube", torch.device("cpu"))


def test_deepfloyd_if_stage_one_uses_only_the_noise_half_of_its_output(tiny_if_model):
    """IF's UNet predicts [eps, variance] (6 channels); SDS must take the first 3 only, through a T5 encoder."""
    from sds.guidance.pixel import PixelGuidance

    guidance, _ = load_guidance(GuidanceConfig(model=str(tiny_if_model)), "a red cube", torch.device("cpu"))
    assert isinstance(guidance, PixelGuidance) and guidance.unet.config.out_channels == 6
    assert guidance.embeddings.uncond.shape[-1] == 16  # T5's width, projected inside the UNet
    x_t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([50, 700])
    cond = guidance.embeddings.for_views(["front", "back"])
    uncond = guidance.embeddings.uncond.expand(2, -1, -1)
    with torch.no_grad():
        eps = guidance.predict_noise(x_t, t, cond, 7.5)
        raw = guidance.unet(torch.cat([x_t, x_t]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond])).sample
    assert raw.shape[1] == 6 and eps.shape == x_t.shape
    u, c = raw[:, :3].chunk(2)
    assert torch.allclose(eps, u + 7.5 * (c - u), atol=1e-5)


def test_perp_neg_pushes_away_from_the_opposite_view_and_leaves_overhead_views_alone(tiny_pixel_model):
    from sds.guidance.sds import perp_neg_combine, unet_noise

    cfg = GuidanceConfig(model=str(tiny_pixel_model), perp_neg=True, perp_neg_weight=2.0)
    guidance, _ = load_guidance(cfg, "a red cube", torch.device("cpu"))
    labels = ["front", "side", "overhead"]
    x_t = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100, 400, 800])
    emb = guidance.embeddings
    cond = emb.for_views(labels)
    with torch.no_grad():
        eps = guidance.predict_noise_perp_neg(x_t, t, cond, labels, 7.5)
        u, pos, back, front = unet_noise(guidance.unet, x_t, t, [emb.uncond.expand(3, -1, -1), cond,
                                                               emb.for_views(["back"] * 3), emb.for_views(["front"] * 3)])
        plain = guidance.predict_noise(x_t, t, cond, 7.5)
    # front: the back view at the full weight; side: front and back at half each
    expected_front = perp_neg_combine(u[:1], pos[:1], [back[:1]], [torch.tensor([2.0])], 7.5)
    expected_side = perp_neg_combine(u[1:2], pos[1:2], [front[1:2], back[1:2]], [torch.tensor([1.0])] * 2, 7.5)
    assert torch.allclose(eps[:1], expected_front, atol=1e-5) and torch.allclose(eps[1:2], expected_side, atol=1e-5)
    assert torch.allclose(eps[2:], plain[2:], atol=1e-5)  # overhead: no negatives, plain CFG
    assert not torch.allclose(eps[:2], plain[:2], atol=1e-4)


def test_perp_neg_needs_view_dependent_prompts():
    from sds.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="view_dependent_prompts"):
        load_config(None, ["guidance.perp_neg=true", "guidance.view_dependent_prompts=false"], prompt="a red cube")


def test_sdxl_conditions_on_both_encoders_pooled_embeddings_and_time_ids(tiny_sdxl_model):
    from sds.guidance.sdxl import SDXLGuidance

    guidance, _ = load_guidance(GuidanceConfig(model=str(tiny_sdxl_model)), "a red cube", torch.device("cpu"))
    assert isinstance(guidance, SDXLGuidance) and guidance.family == "sdxl" and guidance.scaling_factor == 0.13025
    e = guidance.embeddings
    assert e.uncond.shape[-1] == 32 and e.pooled_uncond.shape == (1, 8)  # 16 + 16 hidden; the projection
    assert not torch.equal(e.pooled_by_view["front"], e.pooled_by_view["back"])
    assert guidance.time_ids(2).tolist() == [[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]] * 2  # 8 latents x 2
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100, 600])
    labels = ["front", "back"]
    with torch.no_grad():
        eps = guidance.predict_noise(x_t, t, e.for_views(labels), 5.0, labels=labels)
        other_pooled = guidance.predict_noise(x_t, t, e.for_views(labels), 5.0, labels=["back", "front"])
    assert eps.shape == x_t.shape and not torch.allclose(eps, other_pooled, atol=1e-6)  # the pooled view counts


def test_perp_neg_with_sdxl_conditions_every_branch_and_gives_the_formula_s_gradient(tiny_sdxl_model):
    """One Perp-Neg step on SDXL: the UNet's batch is [uncond; views; two negative slots] x B cameras, and its
    pooled embeddings and time ids follow it row by row. The render's gradient is Perp-Neg's formula, written out
    here, over the four branches' outputs, each from a UNet call of its own, pulled back through the VAE."""
    from sds.guidance.sds import sample_timesteps, sds_weight

    cfg = GuidanceConfig(model=str(tiny_sdxl_model), perp_neg=True, perp_neg_weight=2.0, t_end=(0.02, 0.98))
    guidance, _ = load_guidance(cfg, "a red cube", torch.device("cpu"))
    e, unet, s = guidance.embeddings, guidance.unet, _plan(cfg).guidance_scale
    labels = ["front", "side", "overhead"]
    # each camera's negatives (PERP_NEG_NEGATIVES): front -> back at the full weight, side -> front and back at
    # half each, overhead -> none; an unused slot repeats the camera's own view at weight 0
    branches = [None, labels, ["back", "front", "overhead"], ["front", "back", "overhead"]]
    weights = [torch.tensor([2.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])]
    calls = []
    hook = unet.register_forward_pre_hook(lambda _, args, kw: calls.append((args, kw)), with_kwargs=True)
    rgb = torch.rand(3, 16, 16, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    guidance(rgb, labels, _plan(cfg), torch.Generator().manual_seed(3)).loss.backward()
    hook.remove()

    (args, kw), = calls  # one UNet call for all four branches
    texts = [e.uncond.expand(3, -1, -1) if b is None else e.for_views(b) for b in branches]
    pooled = [e.pooled_uncond.expand(3, -1) if b is None else e.pooled_for_views(b) for b in branches]
    assert args[0].shape[0] == 12 and torch.equal(kw["encoder_hidden_states"], torch.cat(texts))
    assert torch.equal(kw["added_cond_kwargs"]["text_embeds"], torch.cat(pooled))
    assert torch.equal(kw["added_cond_kwargs"]["time_ids"], guidance.time_ids(12))

    images = rgb.detach().permute(0, 3, 1, 2).clone().requires_grad_(True)
    x = guidance.encode(images)
    gen = torch.Generator().manual_seed(3)  # the step's draws, in its order
    t = sample_timesteps(_plan(cfg).t_range, guidance.num_train_timesteps, 3, gen)
    noise = torch.randn(x.shape, generator=gen)
    ab = guidance.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        x_t = ab.sqrt() * x + (1 - ab).sqrt() * noise
        u, pos, *negs = (unet(x_t, t, encoder_hidden_states=h, added_cond_kwargs={
            "text_embeds": p, "time_ids": guidance.time_ids(3)}).sample for h, p in zip(texts, pooled))
    d_pos = pos - u
    total = d_pos
    for neg, w in zip(negs, weights):
        d = neg - u
        along = (d * d_pos).sum((1, 2, 3), keepdim=True) / (d_pos * d_pos).sum((1, 2, 3), keepdim=True)
        total = total - w.view(-1, 1, 1, 1) * (d - along * d_pos)
    eps = u + s * total
    expected = torch.autograd.grad(x, images, grad_outputs=sds_weight(cfg.weighting, ab) * (eps - noise) / 3)[0]
    assert torch.allclose(rgb.grad, expected.permute(0, 2, 3, 1), atol=1e-5, rtol=1e-4)
    plain = GuidanceConfig(model=str(tiny_sdxl_model), t_end=(0.02, 0.98))
    rgb_plain = rgb.detach().clone().requires_grad_(True)
    load_guidance(plain, "a red cube", torch.device("cpu"))[0](rgb_plain, labels, _plan(plain),
                                                              torch.Generator().manual_seed(3)).loss.backward()
    assert not torch.allclose(rgb.grad[:2], rgb_plain.grad[:2], atol=1e-4)  # the negatives count
    assert torch.allclose(rgb.grad[2], rgb_plain.grad[2], atol=1e-5)  # overhead: none, plain CFG


def test_a_single_file_checkpoint_offline_says_to_pass_model_config(tmp_path, tiny_latent_model):
    """No weights of a real single-file checkpoint here: what is tested is the one-line failure and its advice."""
    from safetensors.torch import save_file

    from sds.config import ConfigError, load_config

    path = tmp_path / "model.safetensors"
    save_file({"not.a.stable.diffusion.key": torch.zeros(1)}, path)
    with pytest.raises(ModelLoadError, match="pass model_config="):
        load_guidance(GuidanceConfig(model=str(path)), "a red cube", torch.device("cpu"))
    with pytest.raises(ModelLoadError, match="single-file checkpoint") as e:
        load_guidance(GuidanceConfig(model=str(path), model_config=str(tiny_latent_model)), "a", torch.device("cpu"))
    assert "\n" not in str(e.value) and "pass model_config" not in str(e.value)
    with pytest.raises(ConfigError, match="not a diffusers folder"):
        load_config(None, [f"model={path}", f"guidance.model_config={tmp_path}"], prompt="a red cube")


def test_model_family_from_loaded_parts_or_a_model_index():
    from sds.guidance.load import model_family

    assert model_family({"unet": object(), "vae": object()}) == "latent"
    assert model_family({"unet": ["diffusers", "UNet2DConditionModel"], "vae": [None, None]}) == "pixel"
    assert model_family({"vae": ["diffusers", "AutoencoderKL"], "text_encoder_2": ["transformers", "X"]}) == "sdxl"
