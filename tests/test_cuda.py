"""CUDA-only checks (run by scripts/gpu_check.sh on a GPU machine; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from sds.cameras import sample_orbit_cameras
from sds.config import DensityGeometry, FieldConfig, load_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_nerfacc_path_matches_torch_path():
    from sds.field.background import ConstantBackground
    from sds.field.nerf import GridField
    from sds.render.renderer import RenderSettings, VolumeRenderer

    torch.manual_seed(0)
    field = GridField(FieldConfig(geometry=DensityGeometry())).cuda()
    with torch.no_grad():
        field.geometry_grids[0].normal_(0, 0.5)
        field.albedo_grids[0].normal_(0, 0.5)
    cams = sample_orbit_cameras(2, (2.5, 2.5), (10, 30), (40, 40), torch.Generator().manual_seed(0)).to("cuda")
    reference = VolumeRenderer(field, ConstantBackground().cuda(), 256, sampler="torch")
    fast = VolumeRenderer(field, ConstantBackground().cuda(), 256, sampler="nerfacc")
    assert reference.path == "torch" and fast.path == "nerfacc"
    for step in range(0, 64, 16):
        fast.update(step)
    a = reference.render(cams, 32, 32, RenderSettings("albedo"))
    b = fast.render(cams, 32, 32, RenderSettings("albedo"))
    assert (a.opacity - b.opacity).abs().mean() < 0.02
    assert (a.rgb - b.rgb).abs().mean() < 0.02


def test_train_steps_on_cuda(tiny_pixel_model, tmp_path):
    from sds.guidance.load import load_guidance
    from sds.run import Run
    from sds.train import make_trainer, train

    cfg = load_config(None, [f"model={tiny_pixel_model}", f"output_dir={tmp_path}", "steps=6", "device=cuda",
                             "render.resolution=16", "camera.batch_size=2", "checkpoint_every=3", "preview_every=3"],
                      prompt="a red cube")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cuda"))
    trainer = make_trainer(cfg, torch.device("cuda"))
    assert trainer.renderer.path == "nerfacc"
    assert train(trainer, guidance, Run.create(cfg), show_progress=False) == "ok"
    assert all(torch.isfinite(p).all() for p in trainer.field.parameters())


def test_half_precision_guidance_gradient_is_finite(tiny_latent_model):
    from sds.config import GuidanceConfig, RunConfig
    from sds.guidance.load import load_guidance
    from sds.schedule import plan

    guidance, _ = load_guidance(GuidanceConfig(model=str(tiny_latent_model), half_precision=True), "a red cube",
                                torch.device("cuda"))
    assert guidance.dtype == torch.float16
    rgb = torch.rand(2, 16, 16, 3, device="cuda", requires_grad=True)
    p = plan(RunConfig(steps=10, guidance=guidance.cfg), 0)
    guidance(rgb, ["front", "side"], p, torch.Generator().manual_seed(0)).loss.backward()
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0


def test_nerfacc_sampling_is_seeded_by_the_run_generator():
    """The same generator state gives the same stratified samples (CUDA runs are seeded and resume exactly)."""
    from sds.field.nerf import GridField
    from sds.render.nerfacc_path import global_rng_seeded_from, make_estimator

    field = GridField(FieldConfig()).cuda()
    estimator = make_estimator(1.0, torch.device("cuda"))
    origins = torch.tensor([[0.0, 0.0, -3.0]] * 8, device="cuda")
    dirs = torch.tensor([[0.0, 0.0, 1.0]] * 8, device="cuda")

    def samples(seed):
        with global_rng_seeded_from(torch.Generator().manual_seed(seed), torch.device("cuda")):
            return estimator.sampling(origins, dirs, render_step_size=0.05, stratified=True)[1]

    assert len(field.geometry_grids) and torch.equal(samples(1), samples(1)) and not torch.equal(samples(1), samples(2))


def test_the_occupancy_grid_is_checkpointed_and_filled_for_a_fresh_renderer(tiny_pixel_model, tmp_path):
    """sds export / resume build a new renderer: its occupancy grid must come from the checkpoint (or be filled
    from the field), not start empty, which would render nothing."""
    from sds.guidance.load import load_guidance
    from sds.run import Run
    from sds.train import load_checkpoint, make_trainer, train

    cfg = load_config(None, [f"model={tiny_pixel_model}", f"output_dir={tmp_path}", "steps=20", "device=cuda",
                             "render.resolution=16", "camera.batch_size=2", "checkpoint_every=10"], prompt="a red cube")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cuda"))
    trainer, run = make_trainer(cfg, torch.device("cuda")), Run.create(cfg)
    assert train(trainer, guidance, run, show_progress=False) == "ok"
    reopened = make_trainer(cfg, torch.device("cuda"))
    assert not reopened.renderer.estimator.binaries.any()  # a new grid is empty
    load_checkpoint(reopened, run)
    assert torch.equal(reopened.renderer.estimator.binaries, trainer.renderer.estimator.binaries)
    reopened.renderer.load_state_dict({})  # an older checkpoint without the grid: filled from the field
    assert reopened.renderer.estimator.binaries.any()
