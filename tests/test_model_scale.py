"""benchmarks/model_scale.py cannot rot silently: every family's folder, built from its published config (tiny
widths), loads through sds's own loader and takes a guidance step; the full-size shapes still have the published
parameter counts; the FLOP counter still counts a step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from model_scale import measure, parse_args, run_config  # noqa: E402
from model_shapes import FAMILY_NAMES, build_folder, folder_name, parameter_counts  # noqa: E402
from scale_flops import count_flops, meta_guidance  # noqa: E402

EXPECTED = {  # family: (image size, prediction type, sds family)
    "sd15": (64, "epsilon", "latent"),
    "sd21-base": (64, "epsilon", "latent"),
    "sd21-v": (64, "v_prediction", "latent"),
    "sdxl": (64, "epsilon", "sdxl"),
    "if-i": (16, "epsilon", "pixel"),
}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tiny_folder_loads_and_steps(family, tmp_path):
    args = parse_args(["--tiny", "--families", family, "--cache", str(tmp_path), "--steps", "1"])
    # SD 1.5 is saved as the full-size folders are: float16 weights in several shards (the loader upcasts)
    saved = {"dtype": torch.float16, "shard": "500KB"} if family == "sd15" else {}
    folder = build_folder(family, tmp_path / folder_name(family, True), tiny=True, **saved)
    if saved:
        assert len(list((folder / "unet").glob("*.safetensors"))) > 1
    result = measure(args, family)
    assert (result["image_size"], result["prediction_type"], result["sds_family"]) == EXPECTED[family]
    (step,) = result["steps"]
    assert step["unet"] > 0 and step["backward"] > 0 and step["grad_norm"] > 0
    assert result["peak_gib"] >= result["step_peak_gib"] > 0


def test_full_size_shapes_have_the_published_parameter_counts():
    """Counted on the meta device. Published: SD 1.5 UNet 860M, SD 2.x UNet 866M, SDXL UNet 2.6B, IF-I-XL 4.3B,
    T5-v1.1-XXL encoder 4.8B, CLIP ViT-L text 123M, OpenCLIP ViT-H text (23 of 24 layers) 340M, bigG 695M."""
    millions = {name: {k: round(v / 1e6, 2) for k, v in parameter_counts(name).items()} for name in FAMILY_NAMES}
    assert millions["sd15"] == {"unet": 859.52, "vae": 83.65, "text_encoder": 123.06}
    assert millions["sd21-base"] == millions["sd21-v"] == {"unet": 865.91, "vae": 83.65, "text_encoder": 340.39}
    assert millions["sdxl"] == {"unet": 2567.46, "vae": 83.65, "text_encoder": 123.06, "text_encoder_2": 694.66}
    assert millions["if-i"] == {"unet": 4304.7, "text_encoder": 4762.31}
    assert parameter_counts("if-i", t5_layers=1)["text_encoder"] < 0.4e9


def test_flops_of_a_full_size_step_are_counted_through_sds_guidance():
    guidance_cfg = run_config(Path("unused"), False).guidance
    sd21 = count_flops(meta_guidance("sd21-base", False, guidance_cfg), 128)
    assert sd21["unet"] == pytest.approx(1.609e12, rel=0.01)
    assert sd21["encode"] == pytest.approx(1.117e12, rel=0.01) and sd21["backward"] > sd21["encode"]
    with_checkpointing = count_flops(meta_guidance("sd21-base", False, guidance_cfg, ("vae-checkpointing",)), 128)
    recomputed = with_checkpointing["backward"] - sd21["backward"]  # the encoder's blocks run again
    assert 0.9 * sd21["encode"] < recomputed < sd21["encode"]
    pixel = count_flops(meta_guidance("if-i", False, guidance_cfg), 128)
    assert pixel["encode"] == pixel["backward"] == 0 and pixel["unet"] > 5e12


def test_the_benchmark_s_memory_savers_are_sds_s_own_keys():
    """--attention-slicing, --vae-checkpointing and --channels-last are run with sds's guidance keys, applied by sds's
    own code (so a figure with a saver is what a run with the key gets); --vae-tiling is the benchmark's alone."""
    savers = ("attention-slicing", "vae-checkpointing", "vae-tiling")
    cfg = run_config(Path("unused"), False, savers).guidance
    assert cfg.attention_slicing and cfg.vae_checkpointing and not cfg.channels_last
    guidance = meta_guidance("sd21-base", True, run_config(Path("unused"), False).guidance, savers)
    assert guidance.cfg.vae_checkpointing and guidance.vae.encoder.gradient_checkpointing and guidance.vae.use_tiling
    assert {type(p).__name__ for p in guidance.unet.attn_processors.values()} == {"SlicedAttnProcessor"}


def test_t5_is_cut_to_one_layer_on_the_cpu_only():
    assert parse_args(["--families", "if-i"]).t5_layers == 1
    assert parse_args(["--families", "if-i", "--device", "cuda", "--dtype", "fp16"]).t5_layers == 24
    with pytest.raises(SystemExit):
        parse_args(["--dtype", "fp16"])  # float16 is CUDA-only in sds
