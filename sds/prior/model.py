"""Architecture of the built-in prior: diffusers/transformers classes built from config.

The prior is an ordinary diffusers text-to-image model in pixel space, so it loads through the same
``from_pretrained`` code as Stable Diffusion or DeepFloyd IF (``sds.guidance.load``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from sds.prior.tokenizer import MAX_LENGTH, build_tokenizer, vocabulary

PIPELINE_CLASS_NAME = "SDSPixelPrior"  # written to model_index.json; marks a pixel-space model


@dataclass(frozen=True)
class PriorArchitecture:
    """Sizes of the prior's networks."""

    resolution: int = 32
    block_out_channels: tuple[int, ...] = (48, 96, 96)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 2
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"


def _group_count(channels: tuple[int, ...]) -> int:
    """Largest GroupNorm group count <= 32 that divides every block's channels."""
    g = math.gcd(*channels)
    return max(d for d in range(1, 33) if g % d == 0)


def build_unet(arch: PriorArchitecture):
    from diffusers import UNet2DConditionModel

    n = len(arch.block_out_channels)
    return UNet2DConditionModel(
        sample_size=arch.resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=arch.block_out_channels,
        layers_per_block=arch.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=arch.text_hidden_size,
        attention_head_dim=arch.attention_head_dim,
        norm_num_groups=_group_count(arch.block_out_channels),
        # Pooled text also drives the time embedding: global attributes (colour, shape) then reach every
        # resolution, not only the attention layers.
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
    )


def build_text_encoder(arch: PriorArchitecture):
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tokenizer()
    config = CLIPTextConfig(
        vocab_size=len(vocabulary()),
        hidden_size=arch.text_hidden_size,
        intermediate_size=arch.text_hidden_size * 4,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=arch.text_heads,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModel(config), tokenizer


def build_scheduler(arch: PriorArchitecture):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=arch.num_train_timesteps,
        beta_schedule=arch.beta_schedule,
        prediction_type="epsilon",
        clip_sample=True,
    )


def save_prior(folder: Path, unet, text_encoder, tokenizer, scheduler, arch: PriorArchitecture) -> None:
    """Write a diffusers-format folder: model_index.json + unet/ text_encoder/ tokenizer/ scheduler/."""
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    index = {
        "_class_name": PIPELINE_CLASS_NAME,
        "_diffusers_version": __import__("diffusers").__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "scheduler": ["diffusers", type(scheduler).__name__],
        "sds_architecture": asdict(arch),
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
