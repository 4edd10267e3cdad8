"""A batch invocation's folder ``<output_dir>/batch-<name>/<stamp>/`` and what it shows: a line per finished run,
``results.csv`` and ``batch.json`` rewritten as runs finish (a crash leaves what was done), ``gallery.html`` at
the end."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

from sds.batch.results import RunResult, mark_best, relative_to, write_results

log = logging.getLogger("sds")


def new_batch_folder(root: Path) -> Path:
    """``root/<YYYYmmdd-HHMMSS>`` (``-1``, ``-2``, ... when taken), made atomically."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        path = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def result_line(r: RunResult) -> str:
    """One line for a finished run: status, prompt, seed, time, score (and why, when not ok)."""
    score = "" if r.score is None else f"  score {r.score:.4g}"
    when = "done earlier" if r.done_earlier else f"{r.seconds:.1f} s"
    tail = f"  ({r.message})" if r.message and r.status != "ok" else ""
    retried = f", {r.attempts} attempts, resumed at step {r.resumed_from_step}" if r.attempts > 1 else ""
    return f"{r.status:<11} {r.prompt!r} seed {r.seed}  {when}{retried}{score}{tail}"


class BatchRecord:
    """The rows of one invocation in plan order ("pending" until set), saved on every change."""

    def __init__(self, folder: Path, runs: list[tuple[str, int]], header: dict):
        self.folder = folder
        self.header = {**header, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.rows = [RunResult(prompt, seed, "pending", message="not started") for prompt, seed in runs]
        self._bar = None

    def set(self, index: int, result: RunResult) -> None:
        """Record a finished run: print its line and rewrite the files."""
        self.rows[index] = result
        self._say(result_line(result))
        self.save()

    def save(self) -> list[RunResult]:
        rows = relative_to(mark_best(self.rows), self.folder)
        write_results(self.folder, rows, self.header)
        return rows

    def finish(self, interrupted: bool) -> list[RunResult]:
        """Final files: the best seed of each prompt marked, and the gallery."""
        from sds.batch.gallery import write_gallery

        self.header.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"), interrupted=interrupted)
        rows = self.save()
        write_gallery(self.folder, rows, title=f"sds batch {self.header.get('name', '')}")
        return rows

    def progress_bar(self, total: int, enabled: bool):
        """One bar over the tasks (on a terminal); the run lines print above it."""
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc="batch", unit="run", disable=not enabled, dynamic_ncols=True)
        return self._bar

    def _say(self, line: str) -> None:
        from tqdm.auto import tqdm

        if self._bar is not None and not self._bar.disable:
            tqdm.write(line)
        else:
            print(line, flush=True)
