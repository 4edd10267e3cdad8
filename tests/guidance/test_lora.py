"""LoRA files (``sds.guidance.lora``): the UNet's layers and the text encoders', applied before the prompts are
encoded, at their weights; a file with nothing for this model is an error. The files are made here with peft on the
tiny models and saved with the pipelines' own ``save_lora_weights``, as diffusers' training scripts save them."""

from __future__ import annotations

import pytest
import torch

from sds.config import GuidanceConfig
from sds.errors import ModelLoadError
from sds.guidance.load import load_guidance

ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]
"""A CLIP text encoder's attention projections, where text-encoder LoRAs put their layers."""


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory, tiny_pixel_model):
    """A LoRA for the tiny pixel model's UNet, made with peft and saved as diffusers saves one."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_pretrained(tiny_pixel_model / "unet")
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder / "pytorch_lora_weights.safetensors"


def _noise_with(model, loras=()):
    guidance, _ = load_guidance(GuidanceConfig(model=str(model), loras=tuple(loras)), "a red cube", torch.device("cpu"))
    x_t = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return guidance.predict_noise(x_t, torch.tensor([300]), guidance.embeddings.for_views(["front"]), 5.0)


def test_a_lora_changes_the_unet_and_its_weight_scales_it(tiny_pixel_model, tiny_lora):
    base = _noise_with(tiny_pixel_model)
    assert not torch.allclose(_noise_with(tiny_pixel_model, [str(tiny_lora)]), base, atol=1e-4)
    assert torch.allclose(_noise_with(tiny_pixel_model, [f"{tiny_lora}:0"]), base, atol=1e-6)  # weight 0: the base


def test_lora_from_the_command_line_and_its_errors(tiny_pixel_model, tiny_lora, tmp_path):
    from sds.config import ConfigError, load_config, split_lora

    cfg = load_config(None, [f"lora={tiny_lora}:0.5", f"lora={tiny_lora}"], prompt="a red cube")
    assert cfg.guidance.loras == (f"{tiny_lora}:0.5", f"{tiny_lora}:1")  # repeatable; saved absolute
    assert split_lora(f"{tiny_lora}:0.5") == (str(tiny_lora), 0.5) and split_lora("a:b.safetensors") == ("a:b.safetensors", 1.0)
    with pytest.raises(ConfigError, match="no such LoRA file"):
        load_config(None, [f"lora={tmp_path / 'missing.safetensors'}"], prompt="a red cube")
    not_a_lora = tmp_path / "x.safetensors"
    from safetensors.torch import save_file

    save_file({"unet.nothing.lora_A.weight": torch.zeros(2, 2)}, not_a_lora)
    with pytest.raises(ModelLoadError, match="could not apply LoRA"):
        load_guidance(GuidanceConfig(model=str(tiny_pixel_model), loras=(str(not_a_lora),)), "a", torch.device("cpu"))


def test_lora_without_peft_says_how_to_get_it(tiny_pixel_model, tiny_lora, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install peft"):
        load_guidance(GuidanceConfig(model=str(tiny_pixel_model), loras=(str(tiny_lora),)), "a", torch.device("cpu"))


def _text_encoder_layers(folder, subfolder: str = "text_encoder", seed: int = 2) -> dict:
    """Random LoRA layers (rank 2) on a tiny model's text encoder, as a peft state dict. Made with peft's own
    inject_adapter_in_model: transformers' add_adapter wants peft >= 0.22, and the lock has 0.21."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict
    from transformers import AutoModel, CLIPTextModel, CLIPTextModelWithProjection

    cls = {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}.get(subfolder, AutoModel)
    encoder = cls.from_pretrained(folder / subfolder)
    torch.manual_seed(seed)
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=ATTENTION, init_lora_weights=False), encoder)
    return get_peft_model_state_dict(encoder)


@pytest.fixture(scope="module")
def tiny_text_lora(tmp_path_factory, tiny_pixel_model):
    """A LoRA for the tiny pixel model's text encoder only."""
    from diffusers import StableDiffusionPipeline

    folder = tmp_path_factory.mktemp("text_lora")
    StableDiffusionPipeline.save_lora_weights(folder, text_encoder_lora_layers=_text_encoder_layers(tiny_pixel_model))
    return folder / "pytorch_lora_weights.safetensors"


def _embeddings(model, loras=()):
    guidance, _ = load_guidance(GuidanceConfig(model=str(model), loras=tuple(loras)), "a red cube", torch.device("cpu"))
    return guidance.embeddings


def _all(e) -> torch.Tensor:
    """The unconditional embedding and every view's, in one tensor."""
    return torch.cat([e.uncond, *(e.by_view[k] for k in sorted(e.by_view))])


def test_a_lora_s_text_encoder_layers_shape_the_prompt_embeddings_at_its_weight(tiny_pixel_model, tiny_text_lora):
    base = _all(_embeddings(tiny_pixel_model))
    full, half = (_all(_embeddings(tiny_pixel_model, [f"{tiny_text_lora}:{w}"])) for w in (1, 0.5))
    assert (full - base).abs().amax(dim=(1, 2)).min() > 1e-2  # every embedding, the negative prompt's included
    assert not torch.allclose(half, full, atol=1e-3) and not torch.allclose(half, base, atol=1e-3)
    assert torch.equal(_all(_embeddings(tiny_pixel_model, [f"{tiny_text_lora}:0"])), base)  # weight 0: the base
    assert torch.equal(_all(_embeddings(tiny_pixel_model)), base)  # loaded again without it: nothing stays


def test_a_text_encoder_lora_leaves_the_unet_alone(tiny_pixel_model, tiny_text_lora):
    guidance, _ = load_guidance(GuidanceConfig(model=str(tiny_pixel_model), loras=(str(tiny_text_lora),)), "a",
                                torch.device("cpu"))
    assert not getattr(guidance.unet, "peft_config", None)


def test_a_file_written_before_transformers_5_names_the_same_layers(tiny_pixel_model, tiny_text_lora, tmp_path):
    """transformers 5 dropped CLIPTextModel's text_model level, which LoRA files saved before it name."""
    from diffusers import StableDiffusionPipeline

    old = {f"text_model.{k}": v for k, v in _text_encoder_layers(tiny_pixel_model).items()}
    StableDiffusionPipeline.save_lora_weights(tmp_path, text_encoder_lora_layers=old)
    assert next(iter(old)).startswith("text_model.encoder.layers.0.")
    path = tmp_path / "pytorch_lora_weights.safetensors"
    assert torch.equal(_all(_embeddings(tiny_pixel_model, [str(path)])), _all(_embeddings(tiny_pixel_model, [str(tiny_text_lora)])))


def test_an_sdxl_lora_reaches_each_text_encoder_by_its_prefix(tiny_sdxl_model, tmp_path):
    """Layers for text_encoder_2 only: its half of the joined embedding and the pooled embedding (which it alone
    gives) change; text_encoder's half does not."""
    from diffusers import StableDiffusionXLPipeline

    StableDiffusionXLPipeline.save_lora_weights(
        tmp_path, text_encoder_2_lora_layers=_text_encoder_layers(tiny_sdxl_model, "text_encoder_2"))
    base, lora = _embeddings(tiny_sdxl_model), _embeddings(tiny_sdxl_model, [str(tmp_path / "pytorch_lora_weights.safetensors")])
    assert torch.equal(lora.uncond[..., :16], base.uncond[..., :16])  # text_encoder's 16 channels
    assert not torch.allclose(lora.uncond[..., 16:], base.uncond[..., 16:], atol=1e-3)  # text_encoder_2's
    assert not torch.allclose(lora.pooled_by_view["front"], base.pooled_by_view["front"], atol=1e-3)


def test_a_lora_with_nothing_for_this_model_is_an_error_not_a_run_without_it(tiny_pixel_model, tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other_family.safetensors"  # a transformer's layers (Flux, SD3): nothing here takes them
    save_file({"transformer.blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 16),
               "transformer.blocks.0.attn.to_q.lora_B.weight": torch.zeros(16, 2)}, other)
    with pytest.raises(ModelLoadError, match="no layers for this model's UNet or text encoders"):
        load_guidance(GuidanceConfig(model=str(tiny_pixel_model), loras=(str(other),)), "a", torch.device("cpu"))
    wrong = tmp_path / "wrong_layers.safetensors"  # a text encoder's layers for modules this one does not have
    save_file({"text_encoder.encoder.layers.7.self_attn.q_proj.lora_A.weight": torch.zeros(2, 16),
               "text_encoder.encoder.layers.7.self_attn.q_proj.lora_B.weight": torch.zeros(16, 2)}, wrong)
    with pytest.raises(ModelLoadError, match="could not apply LoRA") as e:
        load_guidance(GuidanceConfig(model=str(tiny_pixel_model), loras=(str(wrong),)), "a", torch.device("cpu"))
    assert "\n" not in str(e.value)


def _kohya(diffusers_file, alpha: float) -> dict:
    """A diffusers-layout LoRA file's layers renamed as kohya's sd-scripts (and A1111, Civitai) save them:
    lora_unet_<module with _>.lora_down/.lora_up, lora_te_text_model_<module>.…, and an alpha per module (scale
    alpha / rank, where diffusers' files hold the scale in the adapter config)."""
    from safetensors.torch import load_file

    out = {}
    for key, value in load_file(diffusers_file).items():
        part, rest = key.split(".", 1)
        module, kind = rest.rsplit(".lora_", 1)
        if part == "text_encoder" and not module.startswith("text_model."):
            module = f"text_model.{module}"  # transformers 5 flattened CLIP; the files name the old path
        name = {"unet": "lora_unet_", "text_encoder": "lora_te_"}[part] + module.replace(".", "_")
        out[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(alpha)
    return out


def test_a_kohya_lora_equals_the_same_layers_in_diffusers_layout(tiny_pixel_model, tiny_lora, tiny_text_lora,
                                                                  tmp_path):
    """Most downloaded LoRAs are in kohya's layout: diffusers' loader converts them (sds.guidance.lora reads files
    through it), and a file's alpha of 1 at rank 2 is the diffusers file at weight 0.5."""
    from safetensors.torch import save_file

    unet_file, text_file = tmp_path / "unet_kohya.safetensors", tmp_path / "text_kohya.safetensors"
    save_file(_kohya(tiny_lora, 1.0), unet_file)
    save_file(_kohya(tiny_text_lora, 2.0), text_file)
    assert all(k.startswith("lora_unet_") and "_transformer_blocks_0_attn" in k for k in _kohya(tiny_lora, 1.0))
    kohya = _noise_with(tiny_pixel_model, [str(unet_file)])
    assert torch.allclose(kohya, _noise_with(tiny_pixel_model, [f"{tiny_lora}:0.5"]), atol=1e-6)
    assert not torch.allclose(kohya, _noise_with(tiny_pixel_model), atol=1e-4)
    assert torch.allclose(_all(_embeddings(tiny_pixel_model, [str(text_file)])),
                          _all(_embeddings(tiny_pixel_model, [str(tiny_text_lora)])), atol=1e-6)


def test_a_t5_text_encoder_lora_reaches_deepfloyd_if_s_prompt_embeddings(tiny_if_model, tmp_path):
    """DeepFloyd IF's text encoder is T5 (attention projections q, k, v, o): its LoRA layers go through the same peft
    path as CLIP's, at their weight, and leave nothing behind."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict
    from transformers import T5EncoderModel

    encoder = T5EncoderModel.from_pretrained(tiny_if_model / "text_encoder")
    torch.manual_seed(3)
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=["q", "k", "v", "o"],
                                       init_lora_weights=False), encoder)
    layers = get_peft_model_state_dict(encoder)
    assert any(".SelfAttention.q." in k for k in layers)
    StableDiffusionPipeline.save_lora_weights(tmp_path, text_encoder_lora_layers=layers)
    path = tmp_path / "pytorch_lora_weights.safetensors"
    base = _all(_embeddings(tiny_if_model))
    full, half = (_all(_embeddings(tiny_if_model, [f"{path}:{w}"])) for w in (1, 0.5))
    assert (full - base).abs().max() > 1e-2 and not torch.allclose(half, full, atol=1e-4)
    assert torch.allclose(_all(_embeddings(tiny_if_model, [f"{path}:0"])), base, atol=1e-6)
    assert torch.equal(_all(_embeddings(tiny_if_model)), base)
