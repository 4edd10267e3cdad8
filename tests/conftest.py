"""Shared fixtures: tiny diffusers models built from config and saved like real ones (no network)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def _tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    from sds.prior.tokenizer import build_tokenizer, vocabulary

    tok = build_tokenizer()
    cfg = CLIPTextConfig(vocab_size=len(vocabulary()), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=tok.model_max_length,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return CLIPTextModel(cfg), tok


def _tiny_unet(in_channels: int, sample_size: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
                                block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=16, attention_head_dim=4)


def _save_common(folder, unet, text_encoder, tokenizer, extra: dict):
    import json

    from diffusers import DDPMScheduler

    unet.save_pretrained(folder / "unet")
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    index = {"_class_name": "Tiny", "unet": ["diffusers", "UNet2DConditionModel"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
             "scheduler": ["diffusers", "DDPMScheduler"], **extra}
    (folder / "model_index.json").write_text(json.dumps(index))


@pytest.fixture(scope="session")
def tiny_pixel_model(tmp_path_factory):
    """A pixel-space text-to-image model folder (16x16 RGB), like the built-in prior or DeepFloyd IF."""
    folder = tmp_path_factory.mktemp("tiny_pixel")
    text_encoder, tok = _tiny_text_encoder()
    _save_common(folder, _tiny_unet(3, 16), text_encoder, tok, {})
    return folder


@pytest.fixture(scope="session")
def tiny_latent_model(tmp_path_factory):
    """A Stable-Diffusion-shaped folder: UNet on 4-channel latents + AutoencoderKL (downsampling x2)."""
    from diffusers import AutoencoderKL

    folder = tmp_path_factory.mktemp("tiny_latent")
    text_encoder, tok = _tiny_text_encoder()
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, layers_per_block=1)
    vae.save_pretrained(folder / "vae")
    _save_common(folder, _tiny_unet(4, 8), text_encoder, tok, {"vae": ["diffusers", "AutoencoderKL"]})
    return folder


@pytest.fixture(scope="session")
def tiny_if_model(tmp_path_factory):
    """A DeepFloyd-IF-stage-I-shaped folder: a T5 encoder, a pixel UNet (16x16 RGB) that predicts [eps, variance]
    (6 channels: learned variance), text projected into the UNet (encoder_hid_dim) and added to its time embedding,
    a cosine ("squaredcos_cap_v2") schedule with learned-range variance."""
    import json

    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    from sds.prior.tokenizer import build_tokenizer, vocabulary

    folder = tmp_path_factory.mktemp("tiny_if")
    tok = build_tokenizer()
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(vocabulary()), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            decoder_start_token_id=0)).save_pretrained(folder / "text_encoder")
    UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=6, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=8, down_block_types=("DownBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "UpBlock2D"), mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        cross_attention_dim=16, attention_head_dim=4, encoder_hid_dim=16, encoder_hid_dim_type="text_proj",
        addition_embed_type="text", addition_embed_type_num_heads=2, resnet_time_scale_shift="scale_shift",
    ).save_pretrained(folder / "unet")
    tok.save_pretrained(folder / "tokenizer")
    DDPMScheduler(num_train_timesteps=1000, variance_type="learned_range",
                  beta_schedule="squaredcos_cap_v2").save_pretrained(folder / "scheduler")
    index = {"_class_name": "IFPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
             "scheduler": ["diffusers", "DDPMScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="session")
def tiny_sdxl_model(tmp_path_factory):
    """An SDXL-shaped folder: two CLIP text encoders (the second projecting: pooled embeddings), a UNet on
    4-channel latents with "text_time" added conditioning, and an AutoencoderKL that asks for float32."""
    import json

    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sds.prior.tokenizer import build_tokenizer, vocabulary

    folder = tmp_path_factory.mktemp("tiny_sdxl")
    tok = build_tokenizer()

    def text_config():
        return CLIPTextConfig(vocab_size=len(vocabulary()), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=tok.model_max_length,
                              pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id, projection_dim=8)

    torch.manual_seed(0)
    CLIPTextModel(text_config()).save_pretrained(folder / "text_encoder")
    CLIPTextModelWithProjection(text_config()).save_pretrained(folder / "text_encoder_2")
    for sub in ("tokenizer", "tokenizer_2"):
        tok.save_pretrained(folder / sub)
    UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
        addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=8 + 6 * 4,
    ).save_pretrained(folder / "unet")
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=8, layers_per_block=1, scaling_factor=0.13025,
                  force_upcast=True).save_pretrained(folder / "vae")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear").save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder
