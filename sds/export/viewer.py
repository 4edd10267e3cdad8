"""A self-contained HTML page that shows an exported .glb offline (no network at view time).

The page embeds the .glb as base64 and a small WebGL viewer of our own (``viewer/viewer.js``), so it
can be opened from disk or mailed as one file.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "viewer"


def render_viewer_html(glb_bytes: bytes, title: str) -> str:
    """The HTML page (a str) for a .glb given as bytes."""
    template = (ASSETS / "viewer.html").read_text(encoding="utf-8")
    script = (ASSETS / "viewer.js").read_text(encoding="utf-8")
    # Substitute the script and the data last: neither may be scanned again for placeholders.
    page = template.replace("__TITLE__", html.escape(title))
    head, tail = page.split("__VIEWER_JS__")
    page = head + script + tail
    head, tail = page.split("__GLB_BASE64__")
    return head + base64.b64encode(glb_bytes).decode("ascii") + tail


def write_viewer_html(glb_path: Path | str, html_path: Path | str, title: str | None = None) -> Path:
    """Write a page at html_path that displays the .glb at glb_path; returns html_path.

    Written to ``<html_path>.tmp`` first and renamed, so a reader never sees half a page.
    """
    glb_path, html_path = Path(glb_path), Path(html_path)
    page = render_viewer_html(glb_path.read_bytes(), title or glb_path.stem)
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html_path)
    return html_path
