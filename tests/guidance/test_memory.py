"""Memory savers (guidance.attention_slicing, vae_checkpointing, channels_last) change how the frozen model runs,
never the gradient a step gives; and under half precision the VAE runs in the dtype its config asks for."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sds.config import GuidanceConfig, RunConfig, StageConfig
from sds.guidance.load import load_guidance
from sds.schedule import plan

SAVERS = {"attention_slicing": True, "vae_checkpointing": True, "channels_last": True}


def _load(folder, **keys):
    guidance, _ = load_guidance(GuidanceConfig(model=str(folder), t_end=(0.02, 0.98), **keys), "a red cube",
                                torch.device("cpu"))
    return guidance


def _step_gradient(guidance) -> torch.Tensor:
    """The render's gradient from one SDS step (fixed render, timesteps and noise)."""
    size = guidance.image_size
    rgb = torch.rand(2, size, size, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    p = plan(RunConfig(steps=10, guidance=guidance.cfg, stages=(StageConfig(guidance_scale=7.5),)), 0)
    guidance(rgb, ["front", "back"], p, torch.Generator().manual_seed(3)).loss.backward()
    return rgb.grad


@pytest.mark.parametrize("fixture", ["tiny_latent_model", "tiny_sdxl_model", "tiny_if_model"])
def test_the_savers_leave_the_sds_gradient_as_it_was(fixture, request):
    folder = request.getfixturevalue(fixture)
    plain, saved = _step_gradient(_load(folder)), _step_gradient(_load(folder, **SAVERS))
    # Sliced attention and the NHWC layout sum in another order: equal to float32 rounding (measured: at most
    # 3e-6 of the largest entry), where a wrong result would differ by its own size.
    assert plain.abs().max() > 0
    assert (saved - plain).abs().max() <= 1e-5 * plain.abs().max()


@pytest.mark.parametrize("fixture", ["tiny_latent_model", "tiny_if_model"])
def test_attention_slicing_puts_a_sliced_processor_in_every_attention_layer(fixture, request):
    from diffusers.models.attention_processor import SlicedAttnAddedKVProcessor, SlicedAttnProcessor

    sliced = (SlicedAttnProcessor, SlicedAttnAddedKVProcessor)  # IF's layers take added key/values
    folder = request.getfixturevalue(fixture)
    processors = _load(folder, attention_slicing=True).unet.attn_processors
    assert processors and all(isinstance(p, sliced) for p in processors.values())
    assert not any(isinstance(p, sliced) for p in _load(folder).unet.attn_processors.values())


def _encoder_block_runs(guidance) -> int:
    """How often the VAE encoder's first block starts in one step and its backward pass (counted as it starts: a
    recomputation stops once it has what the backward pass needs, before the block returns)."""
    runs = []
    hook = guidance.vae.encoder.down_blocks[0].register_forward_pre_hook(lambda *_: runs.append(1))
    _step_gradient(guidance)
    hook.remove()
    return len(runs)


def test_vae_checkpointing_recomputes_the_encoder_in_the_backward_pass(tiny_latent_model):
    saved = _load(tiny_latent_model, vae_checkpointing=True)
    assert saved.vae.encoder.gradient_checkpointing
    assert _encoder_block_runs(saved) == 2  # forward, then again in the backward pass: nothing kept in between
    plain = _load(tiny_latent_model)
    assert _encoder_block_runs(plain) == 1
    assert torch.equal(_step_gradient(saved), _step_gradient(plain))  # the same operations, run again


def test_vae_checkpointing_on_a_pixel_model_is_nothing_to_do(tiny_pixel_model, caplog):
    with caplog.at_level("INFO"):
        guidance = _load(tiny_pixel_model, vae_checkpointing=True)
    assert not hasattr(guidance, "vae") and "no VAE" in caplog.text


def test_channels_last_lays_out_the_unet_and_vae_convolutions_nhwc(tiny_latent_model):
    def layouts(guidance):
        convs = [m.weight for part in (guidance.unet, guidance.vae) for m in part.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
        return {w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs}

    assert layouts(_load(tiny_latent_model, channels_last=True)) == {True}
    assert layouts(_load(tiny_latent_model)) == {False}


def test_the_vae_dtype_follows_its_force_upcast():
    from sds.guidance.load import vae_dtype

    half = torch.float16
    assert vae_dtype({"force_upcast": True}, half) == torch.float32  # SDXL's VAE overflows in float16
    assert vae_dtype({"force_upcast": False}, half) == half  # e.g. a VAE fixed for float16
    assert vae_dtype({}, half) == torch.float32  # not said: diffusers' default, upcast
    assert vae_dtype({"force_upcast": False}, torch.float32) == torch.float32


def _with_force_upcast(folder, tmp_path, value: bool | None):
    """A copy of a model folder whose VAE config says force_upcast: value (None: says nothing of it)."""
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    path = copy / "vae" / "config.json"
    config = json.loads(path.read_text())
    config.pop("force_upcast", None)
    path.write_text(json.dumps(config if value is None else config | {"force_upcast": value}))
    return copy


@pytest.mark.parametrize("force_upcast,vae", [(False, torch.float16), (True, torch.float32), (None, torch.float32)])
def test_half_precision_loads_the_vae_in_the_dtype_its_config_asks_for(tiny_latent_model, tmp_path, force_upcast, vae):
    """Loaded as half_precision on CUDA loads (no CUDA needed to load in float16); None: the key is absent."""
    from sds.guidance.load import _components_from_pretrained, resolve_model

    folder = _with_force_upcast(tiny_latent_model, tmp_path, force_upcast)
    assert ("force_upcast" in json.loads((folder / "vae" / "config.json").read_text())) == (force_upcast is not None)
    parts = _components_from_pretrained(resolve_model(str(folder)), None, torch.float16)
    assert parts["unet"].dtype == torch.float16 and parts["vae"].dtype == vae


def test_half_precision_keeps_sdxl_s_vae_in_float32(tiny_sdxl_model):
    from sds.guidance.load import _components_from_pretrained, resolve_model

    parts = _components_from_pretrained(resolve_model(str(tiny_sdxl_model)), None, torch.float16)
    assert parts["unet"].dtype == torch.float16 and parts["vae"].dtype == torch.float32
