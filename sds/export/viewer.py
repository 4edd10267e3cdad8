"""A self-contained HTML page that shows an exported .glb offline (no network at view time).

The page inlines Google's ``<model-viewer>`` web component (a pinned build vendored in ``viewer/``, see its
README.md) and the .glb as a base64 data URI, so it opens from disk (a page opened from file:// may not fetch a
sibling file) or mailed as one file. model-viewer draws the glTF with its PBR materials and node transforms,
lit by its built-in ``neutral`` environment, with orbit/zoom camera controls and auto-rotation.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from sds.run import write_atomic

ASSETS = Path(__file__).resolve().parent / "viewer"
MODEL_VIEWER_VERSION = "4.4.0"
"""The vendored ``@google/model-viewer`` release (``viewer/model-viewer.min.js``)."""
MODEL_VIEWER_JS = ASSETS / "model-viewer.min.js"


def render_viewer_html(glb_bytes: bytes, title: str) -> str:
    """The HTML page (a str) for a .glb given as bytes, titled `title` (HTML-escaped here)."""
    from sds import __version__

    values = {
        "TITLE": html.escape(title),
        "SDS_VERSION": __version__,
        "MODEL_VIEWER_VERSION": MODEL_VIEWER_VERSION,
        "MODEL_VIEWER_JS": MODEL_VIEWER_JS.read_text(encoding="utf-8"),
        "GLB_BASE64": base64.b64encode(glb_bytes).decode("ascii"),
    }
    template = (ASSETS / "viewer.html").read_text(encoding="utf-8")
    # One pass: a substituted value (the script, a prompt that reads "__TITLE__") is never scanned again.
    return re.sub(r"__([A-Z0-9_]+)__", lambda m: values[m.group(1)], template)


def write_viewer_html(glb_path: Path | str, html_path: Path | str, title: str | None = None) -> Path:
    """Write a page at html_path that displays the .glb at glb_path (atomically); returns html_path."""
    glb_path, html_path = Path(glb_path), Path(html_path)
    write_atomic(html_path, render_viewer_html(glb_path.read_bytes(), title or glb_path.stem))
    return html_path
