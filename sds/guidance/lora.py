"""LoRA files applied to a loaded model: the UNet's layers through diffusers' own loader, the text encoders'
through peft, before the prompts are encoded (``sds.guidance.load.load_components`` calls ``apply_loras``)."""

from __future__ import annotations

import logging
from pathlib import Path

from sds.errors import ModelLoadError, first_line

log = logging.getLogger(__name__)


LORA_TARGETS = ("unet", "text_encoder", "text_encoder_2")
"""The parts a LoRA file may hold layers for, by their prefix in the file (diffusers' layout)."""


def apply_loras(parts: dict, loras: tuple[str, ...], sdxl: bool = False) -> None:
    """Load each "PATH[:WEIGHT]" LoRA into the UNet (diffusers' own loader, peft backend) and the text encoders
    (peft: ``_load_text_encoder_lora``) and set the weights. The file is read by the pipeline's ``lora_state_dict``,
    which also converts the kohya / A1111 layouts most downloaded LoRAs use. Called before the prompts are encoded,
    so the text encoders' layers shape the cached embeddings. A file with layers for none of the parts is an
    error, never a run without the LoRA."""
    import importlib.util

    from sds.config import split_lora

    if importlib.util.find_spec("peft") is None:
        raise ModelLoadError("LoRA needs peft: pip install peft (or pip install 'sds3d[lora]')")
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    reader = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    targets = {name: parts[name] for name in LORA_TARGETS if name in parts}
    adapters: dict[str, list[tuple[str, float]]] = {name: [] for name in targets}
    reached = []
    for i, entry in enumerate(loras):
        path, weight = split_lora(entry)
        adapter = f"lora{i}"
        try:
            state, alphas = reader.lora_state_dict(str(Path(path).expanduser()))
            targets["unet"].load_lora_adapter(state, network_alphas=alphas, adapter_name=adapter, prefix="unet")
            got = ["unet"] if adapter in (getattr(targets["unet"], "peft_config", None) or {}) else []
            got += [name for name in targets if name != "unet"
                    and _load_text_encoder_lora(targets[name], state, alphas, name, adapter)]
        except (OSError, ValueError, KeyError, RuntimeError, IndexError, TypeError) as e:  # a user's file
            raise ModelLoadError(f"could not apply LoRA {path} to this model: {first_line(e)}") from None
        if not got:
            raise ModelLoadError(f"LoRA {path} holds no layers for this model's UNet or text encoders (a LoRA for "
                                 "another model family?)")
        for name in got:
            adapters[name].append((adapter, weight))
        reached.append(f"{Path(path).name} x {weight:g} ({', '.join(got)})")
    _set_lora_weights(targets, adapters)
    log.info("LoRA: %s", "; ".join(reached))


def _load_text_encoder_lora(text_encoder, state: dict, alphas: dict | None, prefix: str, adapter: str) -> bool:
    """Inject a LoRA file's layers for one text encoder (its keys under "`prefix`.") with peft, as diffusers'
    ``load_lora_into_text_encoder`` does, but without transformers' adapter API, which refuses the peft this
    project locks (transformers 5 wants peft >= 0.22). Returns whether the file had layers for it; a layer that
    matches none of the encoder's modules is an error."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, get_peft_kwargs
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    layers = {k.removeprefix(f"{prefix}."): v for k, v in state.items() if k.startswith(f"{prefix}.")}
    if not layers:
        return False
    if not any(".lora_A." in k or ".lora_B." in k for k in layers):  # an older layout: convert it to peft's
        # (diffusers' converters know only CLIP's layer names, so peft-layout files, T5's included, go as they are)
        layers = convert_state_dict_to_peft(convert_state_dict_to_diffusers(layers))
    if not hasattr(text_encoder, "text_model"):  # transformers 5 flattened CLIP; older files name text_model.
        layers = {k.removeprefix("text_model."): v for k, v in layers.items()}
    ranks = {k: v.shape[1] for k, v in layers.items() if k.endswith("lora_B.weight")}
    alphas = {k.removeprefix(f"{prefix}."): v for k, v in (alphas or {}).items() if k.startswith(f"{prefix}.")}
    config = LoraConfig(**get_peft_kwargs(ranks, alphas, layers, is_unet=False))
    inject_adapter_in_model(config, text_encoder, adapter)
    unexpected = set_peft_model_state_dict(text_encoder, layers, adapter).unexpected_keys
    if unexpected:
        raise KeyError(f"{len(unexpected)} of its {prefix} layers match nothing in the model, e.g. {unexpected[0]}")
    return True


def _set_lora_weights(targets: dict, adapters: dict[str, list[tuple[str, float]]]) -> None:
    """Activate each part's adapters at their weights (a part no LoRA reached is left as it is)."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    for name, pairs in adapters.items():
        if not pairs:
            continue
        names, weights = [a for a, _ in pairs], [w for _, w in pairs]
        if name == "unet":
            targets[name].set_adapters(names, weights=weights)
        else:
            set_weights_and_activate_adapters(targets[name], names, weights)
