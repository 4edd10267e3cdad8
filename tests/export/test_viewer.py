"""`sds view`'s page: one offline HTML file (vendored <model-viewer> + the glb as a data URI), titled with the
prompt, and drawn for real by headless Chromium (the screenshot must show the model in its colour)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from sds import commands
from sds.export.viewer import MODEL_VIEWER_JS, MODEL_VIEWER_VERSION, render_viewer_html, write_viewer_html

BACKGROUND = (245, 245, 245)  # #f5f5f5, the page's background
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def red_box_glb(path: Path) -> Path:
    """A unit box, textured plain red (an sds export is textured too), as a .glb."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    texture = Image.new("RGB", (16, 16), (230, 20, 20))
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=0.7
    )
    uv = np.random.default_rng(0).random((len(box.vertices), 2))  # every texel is red: any UVs will do
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    path.write_bytes(box.export(file_type="glb"))
    return path


def _outside_script(page: str) -> str:
    return re.sub(r"<script\b[^>]*>.*?</script>", "<script></script>", page, flags=re.S)


def test_page_is_one_offline_file_titled_with_the_escaped_prompt(tmp_path):
    glb = red_box_glb(tmp_path / "model.glb")
    title = 'a <red> "box" & co'
    page = write_viewer_html(glb, tmp_path / "viewer.html", title=title).read_text(encoding="utf-8")
    assert not (tmp_path / "viewer.html.tmp").exists()
    assert "<title>a &lt;red&gt; &quot;box&quot; &amp; co</title>" in page and title not in page
    js = MODEL_VIEWER_JS.read_text(encoding="utf-8")
    assert js in page and page.count("<script") == 1  # the component inlined, nothing else loaded
    markup = _outside_script(page)
    assert not re.search(r"https?://|//[a-z]", markup, re.I), "the page must not reach the network"
    refs = re.findall(r"\b(?:src|href)\s*=\s*\"([^\"]*)\"", markup)
    assert len(refs) == 1 and refs[0].startswith("data:model/gltf-binary;base64,")
    assert base64.b64decode(refs[0].split(",", 1)[1]) == glb.read_bytes()
    for attribute in ("camera-controls", "auto-rotate", 'environment-image="neutral"'):
        assert attribute in markup
    assert not re.search(r"__[A-Z0-9_]+__", markup)  # every placeholder filled


def test_a_prompt_that_looks_like_a_placeholder_stays_text():
    page = render_viewer_html(b"glb", "__GLB_BASE64__ __MODEL_VIEWER_JS__")
    assert "<title>__GLB_BASE64__ __MODEL_VIEWER_JS__</title>" in page and page.count("<script") == 1


def test_vendored_model_viewer_is_the_recorded_release():
    note = (MODEL_VIEWER_JS.parent / "README.md").read_text(encoding="utf-8")
    js = MODEL_VIEWER_JS.read_bytes()
    assert f"version {MODEL_VIEWER_VERSION}" in note and hashlib.sha256(js).hexdigest() in note
    assert (MODEL_VIEWER_JS.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert b"</script" not in js.lower()  # inlined in a <script> element, which that would end early


def test_view_command_titles_the_page_with_the_prompt_and_prints_its_path(tmp_path, capsys):
    red_box_glb((tmp_path / "result").mkdir() or tmp_path / "result" / "model.glb")
    (tmp_path / "run.json").write_text(json.dumps({"prompt": "a red cube"}))
    assert commands.view(tmp_path, open_browser=False) == 0
    page = tmp_path / "result" / "viewer.html"
    assert "<title>a red cube</title>" in page.read_text(encoding="utf-8")
    assert capsys.readouterr().out == f"{page.resolve()}\n"


def find_chromium() -> str | None:
    named = os.environ.get("SDS_CHROMIUM")
    return named if named else next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def screenshot(chromium: str, page: Path, png: Path, profile: Path, size=(800, 600)) -> None:
    """Headless Chromium, WebGL on SwiftShader (no GPU), the page's virtual clock run 15 s ahead so the model
    loads and renders before the shot. (Virtual time does not wait for image decoding on other threads, so a
    glb with a texture of several MB can come out blank here though it shows in a browser.) 800 x 600 is headless
    Chromium's own window size: at other sizes the first frames can be drawn for the old size, off centre."""
    command = [
        chromium, "--headless", "--disable-gpu", "--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--force-device-scale-factor=1", "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=15000", f"--screenshot={png}", page.as_uri(),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and png.is_file(), f"chromium failed ({run.returncode}): {run.stderr[-2000:]}"


def test_headless_chromium_draws_the_model(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "no Chromium found (looked for SDS_CHROMIUM, " + ", ".join(CHROMIUM_NAMES) + "); "
            "scripts/setup.sh installs Debian's: apt-get install chromium"
        )
    page = write_viewer_html(red_box_glb(tmp_path / "model.glb"), tmp_path / "viewer.html", title="a red box")
    screenshot(chromium, page, tmp_path / "shot.png", tmp_path / "profile")
    rgb = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = (r > 140) & (r - g > 80) & (r - b > 80)
    background = np.abs(rgb - BACKGROUND).max(axis=-1) <= 8
    assert red.mean() > 0.05, f"the model is not drawn: {red.mean():.1%} red pixels (tmp: {tmp_path})"
    assert background.mean() > 0.3, f"the page's background is not around the model: {background.mean():.1%}"
    rows, cols = np.nonzero(red)  # the whole box in view, about mid-screen (seen from a little above)
    height, width = red.shape
    assert 0 < rows.min() and rows.max() < height - 1 and 0 < cols.min() and cols.max() < width - 1
    assert abs(cols.mean() / width - 0.5) < 0.1 and 0.25 < rows.mean() / height < 0.6, (
        rows.mean(),
        cols.mean(),
    )
