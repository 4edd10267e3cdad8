"""Preview/turntable fallbacks, the offline HTML viewer, and the validator's error path."""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import sds.export.media as media
from sds.export import export_result
from sds.export.validate import GltfValidatorUnavailable, validate_gltf
from sds.export.viewer import write_viewer_html


def test_preview_grid_puts_front_view_top_left():
    images = torch.stack([torch.full((4, 4, 3), float(i) / 3) for i in range(4)])
    grid = media.image_grid(images, columns=2)
    assert grid.shape == (8, 8, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 4, 0] == 85 and grid[4, 0, 0] == 170 and grid[4, 4, 0] == 255


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


def test_viewer_page_is_self_contained(small_glb, tmp_path):
    html_path = write_viewer_html(small_glb.files["glb"], tmp_path / "model.html", title="a <red> sphere")
    page = html_path.read_text()
    embedded = re.search(r'<script id="glb"[^>]*>([^<]*)</script>', page).group(1)
    assert base64.b64decode(embedded) == small_glb.files["glb"].read_bytes()
    assert not re.search(r"(src|href)\s*=|https?://|import\s", page)  # nothing fetched at view time
    assert "a &lt;red&gt; sphere" in page and "__" not in page.replace("__TITLE__", "")
    assert not (tmp_path / "model.html.tmp").exists()


_NODE_PARSE = r"""
const fs = require("fs");
const page = fs.readFileSync(process.argv[1], "utf8");
const data = page.match(/<script id="glb"[^>]*>([^<]*)<\/script>/)[1];
const code = page.match(/<script>\n([\s\S]*)<\/script>/)[1];
const module = { exports: {} };
new Function("module", code)(module);
const mesh = module.exports.parseGlb(new Uint8Array(Buffer.from(data, "base64")));
console.log(JSON.stringify({
  positions: mesh.positions.length, normals: mesh.normals.length, uvs: mesh.uvs.length,
  indices: mesh.indices.length, maxIndex: Math.max(...mesh.indices), mime: mesh.image.mimeType,
  png: Array.from(mesh.image.bytes.slice(1, 4)), min: mesh.min, max: mesh.max,
  // Camera on +Z (yaw 0, pitch 0) at distance 3 looking at the origin: where do points land?
  ndc: [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]].map((p) => {
    const m = module.exports.viewProjectionMatrix(1.0, 0, 0, 3, [0, 0, 0]);
    const clip = [0, 1, 2, 3].map((r) => m[r] * p[0] + m[4 + r] * p[1] + m[8 + r] * p[2] + m[12 + r]);
    return clip.slice(0, 3).map((c) => c / clip[3]);
  }),
}));
"""


def test_viewer_script_parses_the_embedded_glb(small_glb, tmp_path, node_or_skip):
    html_path = write_viewer_html(small_glb.files["glb"], tmp_path / "model.html")
    run = subprocess.run([node_or_skip, "-e", _NODE_PARSE, str(html_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    parsed = json.loads(run.stdout)
    n = small_glb.num_vertices
    assert (parsed["positions"], parsed["normals"], parsed["uvs"]) == (3 * n, 3 * n, 2 * n)
    assert parsed["indices"] == 3 * small_glb.faces_after_cleanup and parsed["maxIndex"] == n - 1
    assert parsed["mime"] == "image/png" and bytes(parsed["png"]) == b"PNG"
    np.testing.assert_allclose(np.subtract(parsed["max"], parsed["min"]).max(), 1.0, atol=1e-6)
    origin, right, up, near = np.array(parsed["ndc"])
    np.testing.assert_allclose(origin[:2], 0.0, atol=1e-6)  # the orbit centre is mid-screen
    assert right[0] > 0.1 and up[1] > 0.1  # +X to the right, +Y up: no mirror, no axis swap
    assert near[2] < origin[2] and -1 < near[2] < 1  # +Z is towards the camera, inside the depth range


def test_validator_missing_gives_a_clear_error(small_glb, tmp_path, monkeypatch):
    monkeypatch.setenv("SDS_GLTF_VALIDATOR_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(GltfValidatorUnavailable, match="install_gltf_validator.sh"):
        validate_gltf(small_glb.files["glb"])
