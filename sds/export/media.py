"""Preview image (the exported mesh above the NeRF, same cameras) and turntable video (the mesh)."""

from __future__ import annotations

import logging
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from sds.export.interfaces import RenderFn
from sds.export.texture import to_uint8
from sds.export.views import preview_cameras, render_views

logger = logging.getLogger(__name__)

VIDEO_FPS = 12  # 36 frames = a 3 s loop


def image_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """[B, H, W, 3] float in [0, 1] -> one [rows*H, columns*W, 3] uint8 image, row-major, rows = B / columns."""
    b, h, w, c = images.shape
    rows = b // columns
    tiled = images[: rows * columns].reshape(rows, columns, h, w, c).permute(0, 2, 1, 3, 4)
    return to_uint8(tiled.reshape(rows * h, columns * w, c).numpy())


PREVIEW_VIEWS = 4  # front, side (+X), back, side (-X)


def write_preview(rows: dict[str, RenderFn], bound: float, path: Path, resolution: int) -> None:
    """A PNG with one labelled row per renderer (e.g. the exported mesh, then the NeRF), each row the same four
    views (front, side (+X), back, side (-X)) of resolution^2 pixels, so what the export lost shows up as a
    difference between rows. Size: len(rows) * (label_height(resolution) + resolution) x 4 * resolution."""
    cameras = preview_cameras(bound, PREVIEW_VIEWS)
    parts = []
    for label, render_fn in rows.items():
        rgb = render_views(render_fn, cameras, resolution)["rgb"]
        parts += [label_band(label, PREVIEW_VIEWS * resolution, label_height(resolution)), image_grid(rgb, PREVIEW_VIEWS)]
    Image.fromarray(np.concatenate(parts, 0)).save(path, format="PNG")


def preview_view(preview: np.ndarray, row: int, view: int) -> np.ndarray:
    """One view [R, R, 3] of a preview.png read as [H, W, 3] (row 0: the mesh, 1: the NeRF; view 0: the front)."""
    resolution = preview.shape[1] // PREVIEW_VIEWS
    top = row * (label_height(resolution) + resolution) + label_height(resolution)
    return preview[top : top + resolution, view * resolution : (view + 1) * resolution]


def label_height(resolution: int) -> int:
    """Pixels of the band above each preview row: readable at 16 px views, not wasteful at 1024."""
    return max(12, resolution // 10)


def label_band(text: str, width: int, height: int) -> np.ndarray:
    """[height, width, 3] uint8: dark text on light grey (apart from the white backgrounds below it)."""
    band = Image.new("RGB", (width, height), (225, 225, 225))
    try:  # Pillow >= 10.1 scales its built-in font (a fixed bitmap font where Pillow lacks FreeType)
        font = ImageFont.load_default(size=max(8, int(height * 0.7)))
    except TypeError:
        font = ImageFont.load_default()
    top = (height - ImageDraw.Draw(band).textbbox((0, 0), text, font=font)[3]) // 2
    ImageDraw.Draw(band).text((4, max(0, top)), text, fill=(20, 20, 20), font=font)
    return np.asarray(band)


def ffmpeg_available() -> bool:
    """Whether imageio-ffmpeg can find an ffmpeg binary (its wheel ships one; the pure-Python sdist does not)."""
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except (ImportError, RuntimeError, OSError):
        return False


def write_turntable(render_fn: RenderFn, bound: float, out_dir: Path, n_frames: int, resolution: int) -> Path:
    """A looping turntable of what render_fn draws (the exported mesh in an export): ``turntable.mp4`` (H.264),
    or ``turntable.gif`` without ffmpeg.

    Returns the path written. Frames are rendered one view at a time from azimuth 0 to 360 (exclusive).
    """
    rgb = render_views(render_fn, preview_cameras(bound, n_frames), resolution)["rgb"]
    frames = to_uint8(rgb.numpy())
    if ffmpeg_available():
        path = out_dir / "turntable.mp4"
        # yuv420p (what players accept) needs even sizes: pad by repeating the last row/column.
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        with imageio.get_writer(
            path,
            format="FFMPEG",
            mode="I",
            fps=VIDEO_FPS,
            codec="libx264",
            quality=8,
            pixelformat="yuv420p",
            macro_block_size=1,
            ffmpeg_log_level="error",
        ) as writer:
            for frame in frames:
                writer.append_data(frame)
        return path
    logger.warning("ffmpeg not available (imageio-ffmpeg); writing turntable.gif instead of turntable.mp4")
    path = out_dir / "turntable.gif"
    imageio.mimwrite(path, list(frames), format="GIF", duration=1000 / VIDEO_FPS, loop=0)
    return path
