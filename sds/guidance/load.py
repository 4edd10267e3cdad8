"""Loading a frozen text-to-image model with diffusers ``from_pretrained``: the one place weights load.

``model`` may be "builtin" (the shipped prior), a local diffusers folder, a hub id, or a Stable Diffusion
single ``.safetensors`` file. The family is read from ``model_index.json``: a ``vae`` entry means a latent
model, none means a pixel-space model.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from sds.config import GuidanceConfig
from sds.errors import ModelLoadError, first_line
from sds.guidance.base import Guidance
from sds.guidance.lora import apply_loras
from sds.guidance.memory import apply_memory_savers
from sds.prompt import check_prompt, encode_prompts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    location: str  # local path or hub id
    is_local: bool
    is_single_file: bool


def resolve_model(model: str) -> ModelSource:
    """Decide whether `model` is a local folder/file or a hub id; a missing local path is an error."""
    from sds.guidance.hub import is_hub_id

    if model == "builtin":
        from sds.prior import builtin_prior_path

        path = builtin_prior_path()
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"the built-in prior's weights are missing from {path}; reinstall sds, or "
                                 "train them with: sds train-prior OUT_DIR")
        return ModelSource(str(path), True, False)
    path = Path(model).expanduser()
    if path.exists():
        if path.is_file() and path.suffix not in (".safetensors", ".ckpt"):
            raise ModelLoadError(f"model file {path} is not a .safetensors/.ckpt checkpoint")
        if path.is_dir() and not (path / "model_index.json").is_file():
            raise ModelLoadError(f"model folder {path} has no model_index.json; pass a diffusers folder "
                                 "(as written by save_pretrained) or a hub id")
        if path.is_dir():
            _check_model_index(path / "model_index.json")
        return ModelSource(str(path), True, path.is_file())
    if not is_hub_id(model):
        raise ModelLoadError(f"model path does not exist: {path}; pass model=/path/to/diffusers_folder "
                             "(with model_index.json), a .safetensors file, or a hub id such as "
                             "stabilityai/stable-diffusion-2-1-base")
    return ModelSource(model, False, False)


def _check_model_index(path: Path) -> None:
    import json

    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON ({type(e).__name__}); the model folder is damaged") from None
    if not isinstance(index, dict) or not isinstance(index.get("unet"), list):
        raise ModelLoadError(f"{path} does not describe a diffusers pipeline (expected a mapping with a 'unet' "
                             "entry); the model folder is damaged")


def _components_from_single_file(source: ModelSource, dtype: torch.dtype, model_config: str | None) -> dict:
    """A single .safetensors/.ckpt through diffusers' from_single_file. Offline, its component configs come from
    model_config (a local diffusers folder of the same family; SDXL when that folder is an SDXL pipeline)."""
    import json

    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    pipeline_cls = StableDiffusionPipeline
    kw: dict = {"torch_dtype": dtype}
    if model_config is not None:
        folder = Path(model_config).expanduser()
        if "XL" in json.loads((folder / "model_index.json").read_text()).get("_class_name", ""):
            pipeline_cls = StableDiffusionXLPipeline
        kw |= {"config": str(folder), "local_files_only": True}
    try:
        pipe = pipeline_cls.from_single_file(source.location, **kw)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SingleFileComponentError) as e:  # a user's file
        hint = ("" if model_config else "; offline, pass model_config=/path/to/diffusers_folder of the same "
                "family (its configs describe the checkpoint)")
        raise ModelLoadError(f"could not load the single-file checkpoint {source.location}: {first_line(e)}{hint}") from None
    if pipeline_cls is StableDiffusionPipeline and pipe.unet.config.addition_embed_type == "text_time":
        raise ModelLoadError(f"{source.location} is an SDXL checkpoint; pass model_config=/path/to/sdxl_diffusers_folder "
                             "so that it loads as one")
    parts = {name: getattr(pipe, name) for name in ("unet", "vae", "scheduler", "tokenizer", "text_encoder")}
    parts["vae"].to(vae_dtype(parts["vae"].config, dtype))  # one pipeline loads in one dtype: the VAE's is set after
    if pipeline_cls is StableDiffusionXLPipeline:
        parts |= {"tokenizer_2": pipe.tokenizer_2, "text_encoder_2": pipe.text_encoder_2}
    return parts


def _components_from_pretrained(source: ModelSource, revision: str | None, dtype: torch.dtype) -> dict:
    import transformers
    from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel

    from sds.guidance.hub import load_offline

    # A hub id is probed once first: offline, it loads from the cache or fails in a second, not after 30 s of retries.
    kw = {"revision": revision, "local_files_only": source.is_local or load_offline(source.location, revision)}
    model_kw = {"torch_dtype": dtype, "low_cpu_mem_usage": False}
    index = DiffusionPipeline.load_config(source.location, **kw)
    encoder_cls = getattr(transformers, index.get("text_encoder", [None, "CLIPTextModel"])[1])
    parts = {
        "unet": UNet2DConditionModel.from_pretrained(source.location, subfolder="unet", **model_kw, **kw),
        # Any diffusers noise scheduler config gives the training betas, hence alphas_cumprod.
        "scheduler": DDPMScheduler.from_pretrained(source.location, subfolder="scheduler", **kw),
        "tokenizer": transformers.AutoTokenizer.from_pretrained(source.location, subfolder="tokenizer", **kw),
        "text_encoder": encoder_cls.from_pretrained(source.location, subfolder="text_encoder", torch_dtype=dtype, **kw),
    }
    if index.get("vae"):  # loaded in its own dtype, so float32 weights are never rounded to float16 and back
        vae_config = AutoencoderKL.load_config(source.location, subfolder="vae", **kw)
        parts["vae"] = AutoencoderKL.from_pretrained(source.location, subfolder="vae", **kw,
                                                     **(model_kw | {"torch_dtype": vae_dtype(vae_config, dtype)}))
    if index.get("text_encoder_2"):  # SDXL: a second (projecting) text encoder gives the pooled embedding
        encoder_2_cls = getattr(transformers, index["text_encoder_2"][1])
        parts["tokenizer_2"] = transformers.AutoTokenizer.from_pretrained(source.location, subfolder="tokenizer_2", **kw)
        parts["text_encoder_2"] = encoder_2_cls.from_pretrained(source.location, subfolder="text_encoder_2",
                                                                torch_dtype=dtype, **kw)
    return parts


def vae_dtype(vae_config: dict, dtype: torch.dtype) -> torch.dtype:
    """The dtype a VAE runs in when the model runs in `dtype`: float32 when its config asks to be upcast
    (``force_upcast``: SDXL's VAE overflows in float16) or does not say (diffusers' default), else `dtype`.
    vae_config: the VAE's config (``AutoencoderKL.load_config`` or a loaded VAE's ``.config``)."""
    return torch.float32 if dict(vae_config).get("force_upcast", True) else dtype


def _quiet_loading() -> None:
    """Per-file progress bars of diffusers/transformers would drown our own progress output; and huggingface_hub's
    own stderr handler printed each of its records a second time beside ours (its records also reach the root
    logger), so it goes: its warnings show once, in our format, and reach run.log."""
    import diffusers
    import transformers

    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        hub_logger.removeHandler(handler)
    # diffusers passes an argument huggingface_hub has deprecated: a warning on every hub load, no use to a user.
    warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated")
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_components(cfg: GuidanceConfig, device: torch.device) -> tuple[dict, ModelSource]:
    _quiet_loading()
    source = resolve_model(cfg.model)
    dtype = torch.float16 if cfg.half_precision and device.type == "cuda" else torch.float32
    try:
        if source.is_single_file:
            parts = _components_from_single_file(source, dtype, cfg.model_config)
        else:
            parts = _components_from_pretrained(source, cfg.revision, dtype)
    except (OSError, ValueError) as e:
        where = "local folder" if source.is_local else "hub id (no network? set model= to a local folder)"
        raise ModelLoadError(f"could not load model {cfg.model!r} as a {where}: {first_line(e, limit=None)}") from None
    check_prediction_type(parts["scheduler"], cfg.model)
    if cfg.loras:
        apply_loras(parts, cfg.loras, sdxl="text_encoder_2" in parts)
    for name in ("unet", "text_encoder", "text_encoder_2", "vae"):
        if name in parts:
            parts[name].to(device)
    apply_memory_savers(parts, cfg)
    return parts, source


def model_family(components: dict) -> str:
    """"sdxl" (two text encoders, pooled embeddings and time ids), "latent" (a VAE: SD 1.x / 2.x) or "pixel".

    components: the loaded parts, or a model_index.json (where [null, null] marks an absent component)."""
    def has(name: str) -> bool:
        value = components.get(name)
        return value is not None and not (isinstance(value, list) and value[:1] == [None])

    if has("text_encoder_2"):
        return "sdxl"
    return "latent" if has("vae") else "pixel"


def check_prediction_type(scheduler, model: str) -> str:
    """The model's prediction type (epsilon, v_prediction or sample); ModelLoadError for any other."""
    from sds.guidance.sds import PREDICTION_TYPES

    kind = str(getattr(scheduler.config, "prediction_type", "epsilon"))
    if kind not in PREDICTION_TYPES:
        raise ModelLoadError(f"model {model!r} predicts {kind!r} (scheduler prediction_type); sds supports "
                             f"{', '.join(PREDICTION_TYPES)}")
    return kind


def load_guidance(cfg: GuidanceConfig, prompt: str, device: torch.device) -> tuple[Guidance, list[str]]:
    """Load the model, encode the prompts once (then free the text encoder). Returns guidance + warnings."""
    from sds.guidance.latent import LatentGuidance
    from sds.guidance.pixel import PixelGuidance
    from sds.guidance.sdxl import SDXLGuidance

    parts, source = load_components(cfg, device)
    family = model_family(parts)
    log.info("model %s: %s, predicts %s", cfg.model, family, parts["scheduler"].config.prediction_type)
    if family == "sdxl" and "vae" not in parts:
        raise ModelLoadError(f"model {cfg.model!r} has a second text encoder (SDXL) but no vae; the folder is incomplete")
    warnings = check_prompt(parts["tokenizer"], prompt)
    encoders = [(parts["tokenizer"], parts.pop("text_encoder"))]
    if family == "sdxl":
        encoders.append((parts.pop("tokenizer_2"), parts.pop("text_encoder_2")))
    # Encoded once; the text encoders are freed when this function returns.
    embeddings = encode_prompts(encoders, prompt, cfg.negative_prompt, cfg.view_dependent_prompts, device)
    if family == "sdxl":
        guidance = SDXLGuidance(parts["unet"], parts["vae"], parts["scheduler"], embeddings, cfg, source.location)
    elif "vae" in parts:
        guidance = LatentGuidance(parts["unet"], parts["vae"], parts["scheduler"], embeddings, cfg, source.location)
    else:
        guidance = PixelGuidance(parts["unet"], parts["scheduler"], embeddings, cfg, source.location)
    return guidance, warnings
