"""Diffusers folders shaped exactly like five published text-to-image models, with random weights.

The architecture configs below are transcribed from the models' published ``config.json`` files (the keys that
differ from the diffusers / transformers defaults, plus the ones that define the shape). Random weights cost the
same memory and time as trained ones, and nothing is downloaded. Each family also has a ``--tiny`` variant: the
same block types and wiring with small widths, so the loader and the benchmark can be tested in seconds.

    SD 1.5        runwayml/stable-diffusion-v1-5           UNet 860M, CLIP ViT-L text, epsilon, 512 px
    SD 2.1 base   stabilityai/stable-diffusion-2-1-base    UNet 866M, OpenCLIP ViT-H text, epsilon, 512 px
    SD 2.1 (v)    stabilityai/stable-diffusion-2-1         the same UNet at 96 x 96 latents, v-prediction, 768 px
    SDXL base     stabilityai/stable-diffusion-xl-base-1.0 UNet 2.6B, CLIP ViT-L + OpenCLIP bigG, 1024 px
    IF stage I    DeepFloyd/IF-I-XL-v1.0                   pixel UNet 4.3B (learned variance), T5-v1.1-XXL, 64 px

Every tokenizer is the built-in prior's word-level one (``sds.prior.tokenizer``) at 77 tokens, as in
``tests/conftest.py`` and ``benchmarks/real_size.py``: the text encoders keep their published vocabulary size and
run once per run, so the tokenizer changes nothing that is measured.
"""

from __future__ import annotations

import copy
import gc
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
               "steps_offset": 1}
SD_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
          "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "layers_per_block": 2, "norm_num_groups": 32, "act_fn": "silu", "sample_size": 512, "scaling_factor": 0.18215}
SD_UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "act_fn": "silu",
           "block_out_channels": [320, 640, 1280, 1280], "norm_num_groups": 32, "norm_eps": 1e-5,
           "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
           "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
           "cross_attention_dim": 768, "attention_head_dim": 8}
CLIP_L = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
          "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768}
OPENCLIP_H = {"vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
              "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 512}
OPENCLIP_BIGG = {"vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                 "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 1280}
T5_XXL = {"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
          "relative_attention_num_buckets": 32, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu",
          "tie_word_embeddings": False}
"""google/t5-v1_1-xxl (IF's text encoder; only its encoder half is used): 4.76B parameters."""

TINY_CLIP = {"vocab_size": 27, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "projection_dim": 16}
TINY_VAE = {"block_out_channels": [16, 32, 32, 32], "norm_num_groups": 8, "layers_per_block": 1, "sample_size": 64}
TINY_UNET = {"sample_size": 8, "block_out_channels": [16, 32, 32, 32], "norm_num_groups": 8, "layers_per_block": 1,
             "cross_attention_dim": 32, "attention_head_dim": 2}


@dataclass(frozen=True)
class TextEncoder:
    """A text encoder's transformers class, config and folder (``text_encoder`` or ``text_encoder_2``)."""

    cls: str
    config: dict
    tiny: dict
    folder: str = "text_encoder"


@dataclass(frozen=True)
class Family:
    """One published model: its components' configs (full size and the --tiny overrides)."""

    name: str
    label: str
    pipeline: str
    unet: dict
    unet_tiny: dict
    scheduler: tuple[str, dict]
    text_encoders: tuple[TextEncoder, ...]
    vae: dict | None = None
    vae_tiny: dict = field(default_factory=dict)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd15", "SD 1.5", "StableDiffusionPipeline", SD_UNET, TINY_UNET,
           ("PNDMScheduler", {**SD_SCHEDULE, "set_alpha_to_one": False, "skip_prk_steps": True}),
           (TextEncoder("CLIPTextModel", CLIP_L, TINY_CLIP),), SD_VAE, TINY_VAE),
    Family("sd21-base", "SD 2.1 base", "StableDiffusionPipeline",
           {**SD_UNET, "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True},
           TINY_UNET,
           ("PNDMScheduler", {**SD_SCHEDULE, "set_alpha_to_one": False, "skip_prk_steps": True,
                              "prediction_type": "epsilon"}),
           (TextEncoder("CLIPTextModel", OPENCLIP_H, TINY_CLIP),), SD_VAE, TINY_VAE),
    Family("sd21-v", "SD 2.1 768 (v-prediction)", "StableDiffusionPipeline",
           {**SD_UNET, "sample_size": 96, "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20],
            "use_linear_projection": True, "upcast_attention": True},
           TINY_UNET,
           ("DDIMScheduler", {**SD_SCHEDULE, "clip_sample": False, "set_alpha_to_one": False,
                              "prediction_type": "v_prediction"}),
           (TextEncoder("CLIPTextModel", OPENCLIP_H, TINY_CLIP),), {**SD_VAE, "sample_size": 768}, TINY_VAE),
    Family("sdxl", "SDXL base", "StableDiffusionXLPipeline",
           {**SD_UNET, "sample_size": 128, "block_out_channels": [320, 640, 1280],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "transformer_layers_per_block": [1, 2, 10], "attention_head_dim": [5, 10, 20],
            "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816},
           {**TINY_UNET, "block_out_channels": [16, 32, 32], "transformer_layers_per_block": [1, 1, 2],
            "attention_head_dim": [2, 2, 2], "cross_attention_dim": 64, "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 16 + 6 * 8},
           ("EulerDiscreteScheduler", {**SD_SCHEDULE, "prediction_type": "epsilon", "timestep_spacing": "leading",
                                       "interpolation_type": "linear", "use_karras_sigmas": False}),
           (TextEncoder("CLIPTextModel", CLIP_L, TINY_CLIP),
            TextEncoder("CLIPTextModelWithProjection", OPENCLIP_BIGG, TINY_CLIP, "text_encoder_2")),
           {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}, TINY_VAE),
    Family("if-i", "DeepFloyd IF stage I (XL)", "IFPipeline",
           {"sample_size": 64, "in_channels": 3, "out_channels": 6, "layers_per_block": 3, "act_fn": "gelu",
            "block_out_channels": [704, 1408, 2112, 2816], "norm_num_groups": 32,
            "down_block_types": ["ResnetDownsampleBlock2D"] + ["SimpleCrossAttnDownBlock2D"] * 3,
            "up_block_types": ["SimpleCrossAttnUpBlock2D"] * 3 + ["ResnetUpsampleBlock2D"],
            "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "cross_attention_dim": 2816,
            "cross_attention_norm": "group_norm", "attention_head_dim": 64, "encoder_hid_dim": 4096,
            "encoder_hid_dim_type": "text_proj", "addition_embed_type": "text", "addition_embed_type_num_heads": 64,
            "resnet_time_scale_shift": "scale_shift", "upcast_attention": False},
           {"sample_size": 16, "block_out_channels": [16, 32, 48, 64], "norm_num_groups": 8, "layers_per_block": 1,
            "cross_attention_dim": 64, "attention_head_dim": 8, "encoder_hid_dim": 32,
            "addition_embed_type_num_heads": 2},
           ("DDPMScheduler", {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                              "variance_type": "learned_range", "prediction_type": "epsilon", "thresholding": True,
                              "dynamic_thresholding_ratio": 0.95, "sample_max_value": 1.5}),
           (TextEncoder("T5EncoderModel", T5_XXL, {"vocab_size": 27, "d_model": 32, "d_kv": 8, "d_ff": 64,
                                                   "num_layers": 1, "num_heads": 2}),)),
)}
FAMILY_NAMES = tuple(FAMILIES)


def unet_config(family: Family, tiny: bool) -> dict:
    return {**family.unet, **(family.unet_tiny if tiny else {})}


def vae_config(family: Family, tiny: bool) -> dict | None:
    return None if family.vae is None else {**family.vae, **(family.vae_tiny if tiny else {})}


def text_config(encoder: TextEncoder, tiny: bool, t5_layers: int | None = None) -> dict:
    """The encoder's config; t5_layers keeps T5's width but builds only that many of its layers."""
    from sds.prior.tokenizer import build_tokenizer

    tok = build_tokenizer(77)
    cfg = {**encoder.config, **(encoder.tiny if tiny else {})}
    if t5_layers is not None and encoder.cls == "T5EncoderModel":
        cfg["num_layers"] = t5_layers
    ids = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
    if encoder.cls.startswith("CLIP"):
        ids["bos_token_id"] = tok.bos_token_id
    else:
        ids["decoder_start_token_id"] = tok.pad_token_id
    return cfg | ids


def make_unet(family: Family, tiny: bool):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**copy.deepcopy(unet_config(family, tiny)))


def make_vae(family: Family, tiny: bool):
    from diffusers import AutoencoderKL

    cfg = vae_config(family, tiny)
    return None if cfg is None else AutoencoderKL(**copy.deepcopy(cfg))


def make_text_encoder(encoder: TextEncoder, tiny: bool, t5_layers: int | None = None):
    import transformers

    config_cls = transformers.T5Config if encoder.cls == "T5EncoderModel" else transformers.CLIPTextConfig
    return getattr(transformers, encoder.cls)(config_cls(**text_config(encoder, tiny, t5_layers)))


def make_scheduler(family: Family):
    import diffusers

    name, cfg = family.scheduler
    return getattr(diffusers, name)(**cfg)


def folder_name(family: str, tiny: bool, t5_layers: int | None = None) -> str:
    layers = f"-t5x{t5_layers}" if t5_layers is not None and FAMILIES[family].name == "if-i" else ""
    return f"{family}{'-tiny' if tiny else ''}{layers}"


@contextmanager
def made_as(dtype: torch.dtype, device: str):
    """Modules built inside are initialised directly in `dtype` on `device` (no float32 copy first)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(before)


def build_folder(name: str, folder: Path, tiny: bool = False, dtype: torch.dtype = torch.float32,
                 t5_layers: int | None = None, device: str = "cpu", shard: str = "2GB") -> Path:
    """Write a diffusers folder for family `name` (random weights, made and saved in `dtype`, in shards of at most
    `shard`). Components are made one at a time (on `device`: "cuda" initialises billions of weights in a moment) and
    freed before the next, so building needs the largest component's memory, not the model's. ``built.json`` is
    written last: a folder without it is incomplete."""
    from sds.prior.tokenizer import build_tokenizer

    family = FAMILIES[name]
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    def save(module, sub: str) -> None:
        module.save_pretrained(folder / sub, max_shard_size=shard)

    with made_as(dtype, device):
        save(make_unet(family, tiny), "unet")
        gc.collect()
        if family.vae is not None:
            save(make_vae(family, tiny), "vae")
        for encoder in family.text_encoders:
            save(make_text_encoder(encoder, tiny, t5_layers), encoder.folder)
            gc.collect()
    make_scheduler(family).save_pretrained(folder / "scheduler")
    index = {"_class_name": family.pipeline, "unet": ["diffusers", "UNet2DConditionModel"],
             "scheduler": ["diffusers", family.scheduler[0]]}
    for encoder in family.text_encoders:
        suffix = encoder.folder.removeprefix("text_encoder")
        build_tokenizer(77).save_pretrained(folder / f"tokenizer{suffix}")
        index[encoder.folder] = ["transformers", encoder.cls]
        index[f"tokenizer{suffix}"] = ["transformers", "PreTrainedTokenizerFast"]
    if family.vae is not None:
        index["vae"] = ["diffusers", "AutoencoderKL"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    (folder / "built.json").write_text(json.dumps({"family": name, "tiny": tiny, "dtype": str(dtype),
                                                   "t5_layers": t5_layers}))
    return folder


def parameter_counts(name: str, tiny: bool = False, t5_layers: int | None = None) -> dict[str, int]:
    """Parameters of each component, counted on the meta device (no memory, no time)."""
    family = FAMILIES[name]
    with torch.device("meta"):
        parts = {"unet": make_unet(family, tiny), "vae": make_vae(family, tiny)}
        parts |= {e.folder: make_text_encoder(e, tiny, t5_layers) for e in family.text_encoders}
    return {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items() if m is not None}
