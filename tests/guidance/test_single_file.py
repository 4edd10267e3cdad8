"""The success path of a single-file Stable Diffusion checkpoint, offline: the tiny latent model's weights written in
the original (CompVis/LDM) key layout, loaded through ``model=file.safetensors guidance.model_config=folder``."""

from __future__ import annotations

import json

import torch

from sds.config import GuidanceConfig
from sds.guidance.load import load_guidance

# ResNet layers: diffusers name -> LDM name. The UNet's ResBlock and the VAE's ResnetBlock name them differently.
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_modules(config: dict) -> dict[str, tuple[str, dict]]:
    """diffusers module -> (LDM module, renames of its layers), for a UNet2DConditionModel config. LDM numbers its
    input blocks 0 (conv_in), then per down block its layers and then its downsampler; its output blocks per up block
    (layers_per_block + 1 each, the last of each carrying the upsampler after its resnet, and attention if any)."""
    layers = config["layers_per_block"]
    assert isinstance(layers, int), "one layers_per_block for every block"
    down, up = config["down_block_types"], config["up_block_types"]
    modules = {"time_embedding.linear_1": ("time_embed.0", {}), "time_embedding.linear_2": ("time_embed.2", {}),
               "conv_in": ("input_blocks.0.0", {}), "conv_norm_out": ("out.0", {}), "conv_out": ("out.2", {}),
               "mid_block.resnets.0": ("middle_block.0", _UNET_RESNET),
               "mid_block.attentions.0": ("middle_block.1", {}),
               "mid_block.resnets.1": ("middle_block.2", _UNET_RESNET)}
    index = 1
    for b in range(len(down)):
        for j in range(layers):
            modules[f"down_blocks.{b}.resnets.{j}"] = (f"input_blocks.{index}.0", _UNET_RESNET)
            modules[f"down_blocks.{b}.attentions.{j}"] = (f"input_blocks.{index}.1", {})
            index += 1
        if b < len(down) - 1:
            modules[f"down_blocks.{b}.downsamplers.0.conv"] = (f"input_blocks.{index}.0.op", {})
            index += 1
    index = 0
    for b, kind in enumerate(up):
        for j in range(layers + 1):
            modules[f"up_blocks.{b}.resnets.{j}"] = (f"output_blocks.{index}.0", _UNET_RESNET)
            modules[f"up_blocks.{b}.attentions.{j}"] = (f"output_blocks.{index}.1", {})
            if j == layers and b < len(up) - 1:
                modules[f"up_blocks.{b}.upsamplers.0.conv"] = (f"output_blocks.{index}.{2 if 'Attn' in kind else 1}.conv", {})
            index += 1
    return modules


def _vae_modules(config: dict) -> dict[str, tuple[str, dict]]:
    """diffusers module -> (LDM module, renames), for an AutoencoderKL config. LDM's decoder numbers its up blocks
    from the lowest resolution up: diffusers' up_blocks.i is LDM's up.{n - 1 - i}."""
    n = len(config["block_out_channels"])
    modules = {name: (name, {}) for name in ("quant_conv", "post_quant_conv")}
    for part in ("encoder", "decoder"):
        modules |= {f"{part}.conv_in": (f"{part}.conv_in", {}), f"{part}.conv_out": (f"{part}.conv_out", {}),
                    f"{part}.conv_norm_out": (f"{part}.norm_out", {}),
                    f"{part}.mid_block.attentions.0": (f"{part}.mid.attn_1", _VAE_ATTENTION)}
        for k in range(2):
            modules[f"{part}.mid_block.resnets.{k}"] = (f"{part}.mid.block_{k + 1}", _VAE_RESNET)
    for i in range(n):
        modules[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = (f"encoder.down.{i}.downsample.conv", {})
        modules[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = (f"decoder.up.{n - 1 - i}.upsample.conv", {})
        for j in range(config["layers_per_block"] + 1):  # the decoder has one more per block; unused names are harmless
            modules[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", _VAE_RESNET)
            modules[f"decoder.up_blocks.{i}.resnets.{j}"] = (f"decoder.up.{n - 1 - i}.block.{j}", _VAE_RESNET)
    return modules


def _to_ldm(state: dict, modules: dict[str, tuple[str, dict]], prefix: str) -> dict:
    """Rename every key of a diffusers state dict by the module it belongs to (the longest matching module name)."""
    out = {}
    for key, tensor in state.items():
        module = max((m for m in modules if key.startswith(m + ".")), key=len, default=None)
        assert module is not None, f"no LDM name for {key}"
        ldm, renames = modules[module]
        rest = key[len(module) + 1:]
        layer = max((r for r in renames if rest.startswith(r + ".")), key=len, default=None)
        if layer is not None:
            rest = renames[layer] + rest[len(layer):]
        if renames is _VAE_ATTENTION and tensor.ndim == 2:  # LDM's VAE attention uses 1x1 convolutions
            tensor = tensor[:, :, None, None]
        out[f"{prefix}{ldm}.{rest}"] = tensor.contiguous()
    return out


def _components(folder):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    return (UNet2DConditionModel.from_pretrained(folder, subfolder="unet"),
            AutoencoderKL.from_pretrained(folder, subfolder="vae"),
            CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"))


def write_ldm_checkpoint(folder, path, change=None) -> dict:
    """The folder's UNet, VAE and CLIP text encoder as one original-layout .safetensors file at `path`; `change`
    (a function of the checkpoint dict) edits it before it is written. Returns the checkpoint."""
    from safetensors.torch import save_file

    unet, vae, text_encoder = _components(folder)
    checkpoint = _to_ldm(unet.state_dict(), _unet_modules(json.loads((folder / "unet" / "config.json").read_text())),
                         "model.diffusion_model.")
    checkpoint |= _to_ldm(vae.state_dict(), _vae_modules(json.loads((folder / "vae" / "config.json").read_text())),
                          "first_stage_model.")
    # SD 1.x keeps transformers' CLIPTextModel whole, text_model. included (diffusers recognises a CLIP text encoder by
    # cond_stage_model.transformer.text_model.embeddings.position_embedding.weight); newer transformers drop it.
    checkpoint |= {"cond_stage_model.transformer." + ("" if k.startswith("text_model.") else "text_model.") + k: v
                   for k, v in text_encoder.state_dict().items()}
    if change is not None:
        change(checkpoint)
    save_file(checkpoint, path)
    return checkpoint


def _noise(guidance):
    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # the UNet's sample_size is 8
    with torch.no_grad():
        return guidance.predict_noise(x_t, torch.tensor([300]), guidance.embeddings.for_views(["front"]), 5.0)


def _load(model, model_config=None):
    return load_guidance(GuidanceConfig(model=str(model), model_config=model_config and str(model_config)),
                         "a red cube", torch.device("cpu"))[0]


def _assert_same_weights(loaded, reference, name):
    got, want = loaded.state_dict(), reference.state_dict()
    assert got.keys() == want.keys(), f"{name}: {sorted(got.keys() ^ want.keys())[:5]}"
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), f"{name}: {key} differs"


def test_a_single_file_ldm_checkpoint_loads_offline_with_model_config(tiny_latent_model, tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    assert json.loads((tiny_latent_model / "unet" / "config.json").read_text())["sample_size"] == 8
    path = tmp_path / "model.safetensors"
    checkpoint = write_ldm_checkpoint(tiny_latent_model, path)
    assert "model.diffusion_model.input_blocks.2.0.op.weight" in checkpoint  # the LDM layout, not diffusers'
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in checkpoint

    # The text encoder is freed once the prompts are encoded: the pipeline diffusers built is kept to compare it.
    pipes = []
    real = StableDiffusionPipeline.from_single_file.__func__
    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file",
                        classmethod(lambda cls, *a, **kw: pipes.append(real(cls, *a, **kw)) or pipes[-1]))
    single = _load(path, tiny_latent_model)
    assert len(pipes) == 1 and single.unet is pipes[0].unet and single.vae is pipes[0].vae
    unet, vae, text_encoder = _components(tiny_latent_model)
    for loaded, reference, name in ((single.unet, unet, "unet"), (single.vae, vae, "vae"),
                                    (pipes[0].text_encoder, text_encoder, "text_encoder")):
        _assert_same_weights(loaded, reference, name)

    folder = _load(tiny_latent_model)
    assert torch.equal(single.embeddings.for_views(["front"]), folder.embeddings.for_views(["front"]))
    assert torch.allclose(_noise(single), _noise(folder), atol=1e-6)

    # A silent fallback (to the folder's own weights, or to fresh ones) would hide this change of one UNet tensor.
    def change(ckpt):
        key = "model.diffusion_model.out.2.weight"
        ckpt[key] = ckpt[key] + 0.1

    changed = tmp_path / "changed.safetensors"
    write_ldm_checkpoint(tiny_latent_model, changed, change)
    assert not torch.allclose(_noise(_load(changed, tiny_latent_model)), _noise(folder), atol=1e-4)
