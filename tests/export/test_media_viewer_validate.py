"""Preview/turntable fallbacks and the validator's error path (the HTML viewer: test_viewer.py)."""

from __future__ import annotations

import logging

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import sds.export.media as media
from sds.export import export_result
from sds.export.validate import GltfValidatorUnavailable, validate_gltf


def test_preview_grid_puts_front_view_top_left():
    images = torch.stack([torch.full((4, 4, 3), float(i) / 3) for i in range(4)])
    grid = media.image_grid(images, columns=2)
    assert grid.shape == (8, 8, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 4, 0] == 85 and grid[4, 0, 0] == 170 and grid[4, 4, 0] == 255


def test_preview_has_one_labelled_row_per_renderer(tmp_path, fakes):
    green = lambda p: torch.tensor([0.0, 1.0, 0.0]).expand(len(p), 3)  # noqa: E731
    rows = {"exported mesh": fakes.sphere_render_fn(0.5), "NeRF": fakes.sphere_render_fn(0.3, albedo=green)}
    media.write_preview(rows, 1.0, tmp_path / "preview.png", resolution=40)
    image = iio.imread(tmp_path / "preview.png")
    band = media.label_height(40)
    assert image.shape == (2 * (band + 40), 4 * 40, 3)
    mesh_row, nerf_row = (image[band : band + 40].astype(int), image[2 * band + 40 :].astype(int))
    mesh_fg, nerf_fg = mesh_row.min(-1) < 200, nerf_row.min(-1) < 200
    assert mesh_fg.any() and (mesh_row[mesh_fg, 1] < 60).all()  # the first renderer (red and blue) on top
    assert (nerf_row[nerf_fg, 1] > nerf_row[nerf_fg, 0]).all() and 0 < nerf_fg.sum() < mesh_fg.sum()
    labels = image[:band], image[band + 40 : 2 * band + 40]
    assert all((label < 100).any() for label in labels)  # text drawn on both bands


def test_turntable_falls_back_to_gif_without_ffmpeg(tmp_path, fakes, monkeypatch, caplog):
    monkeypatch.setattr(media, "ffmpeg_available", lambda: False)
    # Red on the +X half: every frame differs (GIF writers merge identical frames).
    render_fn = fakes.sphere_render_fn(0.5, albedo=lambda p: (p[:, :1] > 0) * torch.tensor([1.0, 0.0, 0.0]))
    with caplog.at_level(logging.WARNING, logger="sds.export.media"):
        path = media.write_turntable(render_fn, 1.0, tmp_path, n_frames=4, resolution=24)
    assert path.name == "turntable.gif"
    assert "ffmpeg not available" in caplog.text
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (4, 24, 24)


def test_mp4_with_odd_frame_size(tmp_path, fakes):
    path = media.write_turntable(fakes.sphere_render_fn(0.5), 1.0, tmp_path, n_frames=3, resolution=25)
    frames = np.stack(list(iio.imiter(path, plugin="FFMPEG")))
    assert path.suffix == ".mp4" and frames.shape[:3] == (3, 26, 26)


@pytest.fixture(scope="module")
def small_glb(tmp_path_factory, fakes, make_config):
    out_dir = tmp_path_factory.mktemp("viewer") / "result"
    field = fakes.SdfField(fakes.sphere_sdf(0.5))
    cfg = make_config(texture_size=64, normalize=True)
    return export_result(field, 1.0, fakes.sphere_render_fn(0.5), out_dir, cfg, show_progress=False)


def test_validator_missing_gives_a_clear_error(small_glb, tmp_path, monkeypatch):
    monkeypatch.setenv("SDS_GLTF_VALIDATOR_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(GltfValidatorUnavailable, match="install_gltf_validator.sh"):
        validate_gltf(small_glb.files["glb"])
