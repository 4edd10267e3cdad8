"""What a training run shows while it goes, so that it can be watched from anywhere.

On a terminal: a tqdm bar. Off one (a log file, CI, a cluster job): a plain line every N steps (N about 10 % of
the run) with the step, loss, opacity, steps/s and ETA; the same line always goes to run.log. Every step's scalars
go to TensorBoard event files under the run's ``tb/`` when the ``tensorboard`` package is installed (nothing
otherwise). The cadences live here: ``report_every`` (log line, metrics.csv, run.json's ``progress``) and
``preview_every`` (progress images).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

from sds.run import now_iso
from sds.run_log import to_run_log

log = logging.getLogger(__name__)


def report_every(steps: int) -> int:
    """Steps between progress lines and metrics.csv / run.json updates: about a tenth of the run, at least 1."""
    return max(1, math.ceil(steps / 10))


def preview_every(preview_steps: int, steps: int) -> int:
    """Steps between progress images: `preview_every`, or closer so that any run gets at least ten."""
    return min(preview_steps, report_every(steps))


def on_terminal() -> bool:
    """Whether stderr is a terminal: only there does a progress bar redraw in place instead of piling up."""
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


def duration(seconds: float) -> str:
    """4.2 -> "4s", 138 -> "2m18s", 7300 -> "2h01m"."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """The bar (on a terminal, when wanted) or a line every `every` steps, and TensorBoard scalars and images."""

    def __init__(self, total: int, start_step: int, bar: bool, every: int, tb_dir: Path | None = None):
        from tqdm.auto import tqdm

        self.total, self.start_step, self.every = total, start_step, every
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, initial=start_step, desc="sds", unit="step", dynamic_ncols=True) if bar else None
        # A resumed run redoes the steps after its checkpoint: events from those steps on are dropped.
        self.tb = open_tensorboard(tb_dir, purge_step=start_step + 1) if tb_dir is not None else None
        self.last: dict = {}

    def update(self, step: int, scalars: dict[str, float]) -> None:
        """After `step` (1-based): the bar, the scalars to TensorBoard, and every `every` steps a line."""
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{scalars['loss']:.3g}", opacity=f"{scalars['opacity']:.2f}")
        if self.tb is not None:
            for name, value in scalars.items():
                self.tb.add_scalar(name, value, step)
        if step % self.every == 0 or step == self.total:
            self.last = self.snapshot(step, scalars)
            self._line(self.last)

    def snapshot(self, step: int, scalars: dict[str, float]) -> dict:
        """run.json's `progress`: where the run is, how fast it goes, when it should end."""
        elapsed = time.perf_counter() - self.started
        rate = (step - self.start_step) / elapsed if elapsed > 0 and step > self.start_step else 0.0
        eta = (self.total - step) / rate if rate > 0 else None
        return {"step": step, "total": self.total, "loss": round(scalars["loss"], 6),
                "opacity": round(scalars["opacity"], 4), "steps_per_s": round(rate, 3),
                "eta_s": None if eta is None else round(eta, 1),
                "updated": now_iso()}

    def _line(self, p: dict) -> None:
        width = len(str(self.total))
        eta = "?" if p["eta_s"] is None else duration(p["eta_s"])
        message = (f"step {p['step']:>{width}}/{self.total} ({100 * p['step'] // self.total:3d}%)  loss "
                   f"{p['loss']:.4g}  opacity {p['opacity']:.3f}  {p['steps_per_s']:.2f} steps/s  ETA {eta}")
        if self.bar is None:
            log.info("%s", message)
        else:  # the console has the bar; the run log gets the line
            to_run_log(log, logging.INFO, "%s", message)

    def image(self, step: int, image) -> None:
        """A progress image (uint8 [H, W, 3]) to TensorBoard."""
        if self.tb is not None:
            self.tb.add_image("progress", image, step, dataformats="HWC")

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()  # so that a running job shows in TensorBoard at the same cadence as metrics.csv

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def open_tensorboard(folder: Path, purge_step: int):
    """A torch SummaryWriter on `folder`, or None (and one debug line) when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch's writer needs the tensorboard package, an optional extra
        log.debug("no TensorBoard event files (%s); pip install tensorboard to get them under tb/", e)
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)
