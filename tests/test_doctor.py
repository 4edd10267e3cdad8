"""`sds doctor`: one screen saying what a run would do and whether it can; non-zero exit when it cannot."""

from __future__ import annotations

import json
import shutil
import signal

import pytest

from sds.cli import main


def _doctor(capsys, *args):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    code = main(["doctor", *map(str, args)])
    for s, h in handlers.items():
        signal.signal(s, h)
    out = capsys.readouterr().out
    return code, {line[5:].split()[0]: line for line in out.splitlines()[:-1]}, out.splitlines()[-1]


def test_the_builtin_prior_on_this_machine_can_run(capsys, tmp_path):
    code, lines, verdict = _doctor(capsys, f"output_dir={tmp_path}")
    assert code == 0 and verdict == "a run can start with these settings"
    assert {"torch", "device", "nerfacc", "model", "prediction", "recipe", "memory", "disk"} <= set(lines)
    assert "pixel space" in lines["model"] and "epsilon" in lines["prediction"]
    assert "builtin (the model is the built-in prior)" in lines["recipe"]
    assert "an estimate, not a measurement" in lines["memory"] and "free" in lines["disk"]


def test_a_v_prediction_latent_model_and_its_recipe(capsys, tmp_path, tiny_latent_model):
    model = tmp_path / "model"
    shutil.copytree(tiny_latent_model, model)
    path = model / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "prediction_type": "v_prediction"}))
    code, lines, _ = _doctor(capsys, f"model={model}", f"output_dir={tmp_path}", "device=cpu")
    assert code == 0 and "latent" in lines["model"] and "v_prediction" in lines["prediction"]
    assert lines["recipe"].split()[1] == "dreamfusion"


@pytest.mark.parametrize("args,failing", [
    (["model=/no/such/model"], "model"),
    (["model=someone/some-model"], "model"),  # a hub id not in the cache: this machine has no network
    (["device=cuda"], "device"),
])
def test_what_cannot_work_fails_with_a_reason(capsys, tmp_path, args, failing):
    import torch

    if failing == "device" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code, lines, verdict = _doctor(capsys, *args, f"output_dir={tmp_path}")
    assert code == 1 and lines[failing].startswith("FAIL") and verdict == f"a run cannot work: {failing}"


def test_an_unsupported_prediction_type_fails(capsys, tmp_path, tiny_pixel_model):
    model = tmp_path / "model"
    shutil.copytree(tiny_pixel_model, model)
    path = model / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "prediction_type": "flow_prediction"}))
    code, lines, _ = _doctor(capsys, f"model={model}", f"output_dir={tmp_path}")
    assert code == 1 and lines["prediction"].startswith("FAIL")


def test_an_output_dir_that_is_a_file_fails(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    code, lines, _ = _doctor(capsys, f"output_dir={tmp_path / 'f' / 'runs'}")
    assert code == 1 and "is a file" in lines["disk"]


def test_an_sdxl_folder_is_named_as_such(capsys, tmp_path, tiny_sdxl_model):
    code, lines, _ = _doctor(capsys, f"model={tiny_sdxl_model}", f"output_dir={tmp_path}", "device=cpu")
    assert code == 0 and "SDXL" in lines["model"]


def test_only_the_weights_diffusers_would_load_are_counted(tmp_path):
    from sds.doctor import loaded_weight_bytes

    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 100)
    (unet / "diffusion_pytorch_model.bin").write_bytes(b"x" * 1000)  # the same weights twice: one is loaded
    (unet / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"x" * 50)  # a variant
    (tmp_path / "v1-5-pruned.safetensors").write_bytes(b"x" * 5000)  # a single-file copy beside the folder
    encoder = tmp_path / "text_encoder"
    encoder.mkdir()
    (encoder / "pytorch_model.bin").write_bytes(b"x" * 30)
    index = {"_class_name": "X", "unet": ["diffusers", "UNet2DConditionModel"],
             "text_encoder": ["transformers", "CLIPTextModel"]}
    assert loaded_weight_bytes(tmp_path, index) == 130


def test_the_memory_line_names_the_savers_on_and_those_to_try_when_the_estimate_does_not_fit():
    from sds.config import load_config
    from sds.doctor import memory_check

    plain = load_config(None, [], require_prompt=False)
    assert "saver" not in memory_check(plain, "cpu", 2**20).detail  # fits: nothing to suggest
    too_big = memory_check(plain, "cpu", 2**60)
    assert too_big.ok is False and "guidance.vae_checkpointing=true" in too_big.detail
    saving = load_config(None, ["guidance.vae_checkpointing=true", "guidance.channels_last=true"], require_prompt=False)
    detail = memory_check(saving, "cpu", 2**20).detail
    assert "savers on: vae_checkpointing (not counted" in detail and "channels_last" not in detail
