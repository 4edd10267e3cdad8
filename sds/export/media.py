"""Preview image and turntable video of the NeRF, rendered with its own volume renderer."""

from __future__ import annotations

import logging
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

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


def write_preview(render_fn: RenderFn, bound: float, path: Path, resolution: int) -> None:
    """A 2x2 PNG of four NeRF views: front, side (+X), back, side (-X), each resolution^2 pixels."""
    rgb = render_views(render_fn, preview_cameras(bound, 4), resolution)["rgb"]
    Image.fromarray(image_grid(rgb, columns=2)).save(path, format="PNG")


def ffmpeg_available() -> bool:
    """Whether imageio-ffmpeg can find an ffmpeg binary (its wheel ships one; the pure-Python sdist does not)."""
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except (ImportError, RuntimeError, OSError):
        return False


def write_turntable(render_fn: RenderFn, bound: float, out_dir: Path, n_frames: int, resolution: int) -> Path:
    """A looping turntable of the NeRF: ``turntable.mp4`` (H.264), or ``turntable.gif`` without ffmpeg.

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
