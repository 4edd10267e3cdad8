"""``gallery.html``: one self-contained page per batch that opens offline (no server, no network).

A card per prompt shows its chosen seed (the best score) large, with the score, a link to its ``model.glb`` and its
turntable, and the other seeds as thumbnails. Preview images are inlined as base64 data URIs, so the page works
wherever it is copied; the meshes and videos are relative links into the run folders beside it.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from urllib.parse import quote

from sds.batch.results import RunResult
from sds.run import write_atomic

PREVIEW_PX = 384
THUMB_PX = 128

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #f4f4f4; color: #222; }
h1 { font-size: 1.3em; } .summary { color: #555; margin-bottom: 1em; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.card { background: #fff; border-radius: 8px; padding: 0.8em; width: 420px; box-shadow: 0 1px 3px #0002; }
.card h2 { font-size: 1.05em; margin: 0 0 0.4em; } .main img, .main video { width: 384px; image-rendering: auto; }
.meta { font-size: 0.9em; color: #444; margin: 0.3em 0; } .meta a { margin-right: 0.8em; }
.seeds { display: flex; flex-wrap: wrap; gap: 0.4em; margin-top: 0.5em; }
.seed { font-size: 0.75em; text-align: center; width: 128px; } .seed img { width: 128px; }
.best { outline: 3px solid #2a7; } .failed { color: #b22; } .noimg { width: 128px; height: 64px; background: #ddd; }
"""


def write_gallery(folder: Path, results: list[RunResult], title: str = "sds batch") -> Path:
    """Write ``folder/gallery.html`` for rows whose run_dir is relative to `folder`; returns its path."""
    path = folder / "gallery.html"
    write_atomic(path, render_gallery(folder, results, title))
    return path


def render_gallery(folder: Path, results: list[RunResult], title: str) -> str:
    """The page's HTML (one card per prompt, in the order the prompts first appear)."""
    by_prompt: dict[str, list[RunResult]] = {}
    for r in results:
        by_prompt.setdefault(r.prompt, []).append(r)
    ok = sum(r.status == "ok" for r in results)
    cards = "\n".join(_card(folder, rows) for rows in by_prompt.values())
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"<div class=\"summary\">{len(by_prompt)} prompts, {len(results)} runs, {ok} ok. The chosen seed of "
            "each prompt has the highest score: how much the prompt lowers the guidance model's denoising error "
            f"on renders of the result.</div>\n<div class=\"grid\">\n{cards}\n</div></body></html>\n")


def _card(folder: Path, rows: list[RunResult]) -> str:
    chosen = next((r for r in rows if r.best), None) or next((r for r in rows if r.status == "ok"), rows[0])
    main = _main_view(folder, chosen)
    thumbs = "".join(_thumb(folder, r) for r in rows if r is not chosen)
    return (f"<div class=\"card\"><h2>{html.escape(chosen.prompt)}</h2>{main}"
            f"<div class=\"meta\">{_describe(chosen)}</div>{_links(folder, chosen)}"
            f"<div class=\"seeds\">{thumbs}</div></div>")


def _main_view(folder: Path, r: RunResult) -> str:
    """The chosen run's preview (inline) and, when it has one, its turntable video (a relative link)."""
    image = _img(_image_uri(folder, r, PREVIEW_PX), f"seed {r.seed}")
    video = _result_file(folder, r, "turntable.mp4")
    if video is not None:
        image += f"<video src=\"{video}\" autoplay loop muted playsinline></video>"
    return f"<div class=\"main\">{image}</div>"


def _thumb(folder: Path, r: RunResult) -> str:
    image = _img(_image_uri(folder, r, THUMB_PX), f"seed {r.seed}")
    glb = _result_file(folder, r, "model.glb")
    if glb is not None:
        image = f"<a href=\"{glb}\">{image}</a>"
    return f"<div class=\"seed{' best' if r.best else ''}\">{image}<br>{_describe(r)}</div>"


def _describe(r: RunResult) -> str:
    text = f"seed {r.seed}"
    if r.score is not None:
        text += f" &middot; score {r.score:.4g}"
    if r.best:
        text += " &middot; <b>best</b>"
    if r.status != "ok":
        text += f" &middot; <span class=\"failed\" title=\"{html.escape(r.message)}\">{html.escape(r.status)}</span>"
    return text


def _links(folder: Path, r: RunResult) -> str:
    links = []
    for name, label in (("model.glb", "model.glb"), ("turntable.mp4", "turntable"), ("turntable.gif", "turntable")):
        href = _result_file(folder, r, name)
        if href is not None:
            links.append(f"<a href=\"{href}\">{label}</a>")
    if r.run_dir:
        links.append(f"<a href=\"{quote(Path(r.run_dir).as_posix())}/\">run folder</a>")
    return f"<div class=\"meta\">{''.join(links)}</div>"


def _result_file(folder: Path, r: RunResult, name: str) -> str | None:
    """A relative, URL-quoted link to a file of the run's result/ folder, or None when there is none."""
    if not r.run_dir or not (folder / r.run_dir / "result" / name).is_file():
        return None
    return quote((Path(r.run_dir) / "result" / name).as_posix())


def _img(uri: str | None, alt: str) -> str:
    if uri is None:
        return "<div class=\"noimg\"></div>"
    return f"<img src=\"{uri}\" alt=\"{html.escape(alt)}\">"


def _image_uri(folder: Path, r: RunResult, max_px: int) -> str | None:
    """The run's preview.png, shrunk to at most max_px a side, as a data URI (None without a preview)."""
    from PIL import Image, UnidentifiedImageError

    if not r.run_dir:
        return None
    path = folder / r.run_dir / "result" / "preview.png"
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((max_px, max_px))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except (OSError, UnidentifiedImageError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
