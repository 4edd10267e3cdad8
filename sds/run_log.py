"""``run.log``: what the console showed during a command on a run folder, kept in the folder.

A ``RunLogHandler`` on the root logger sees every record the console handler sees (the ``sds`` loggers, a library's
warnings, Python warnings through ``logging.captureWarnings``). Records from before the run folder exists (model
loading, prompt warnings) are held and written first once it does. The file is appended to, so a resumed run or a
re-export adds to the log of the run it continues. Progress bars are not log records and never reach it; the
trainer writes a plain progress line every N steps instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"
MAX_HELD_LINES = 10_000
"""Lines kept from before the run folder exists (a bound, in case a folder never comes)."""

_OPEN: list[RunLogHandler] = []
"""The run logs this process is writing now (one per command in progress; a test may nest commands)."""


class RunLogHandler(logging.Handler):
    """Formats records into lines: held in memory until ``open`` names the file, then appended to it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        self.held: list[str] = []
        self.started = logging.LogRecord("sds", logging.INFO, "(run log)", 0, "command: %s", None, None)
        self.stream = None
        self.path: Path | None = None

    def open(self, path: Path) -> None:
        """Start writing to `path` (appended to): a line naming the command (timed at its start), then the lines
        held so far."""
        import shlex

        from sds.run import command_line

        self.acquire()
        try:
            self.path = path
            self.stream = open(path, "a", encoding="utf-8")
            self.started.args = (shlex.join(command_line()),)
            self.stream.write(self.format(self.started) + "\n")  # where each command on the run begins, and when
            for line in self.held:
                self.stream.write(line + "\n")
            self.held.clear()
            self.stream.flush()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).replace("\r", "")  # a carriage return would make the file a progress bar
            if self.stream is None:
                if len(self.held) < MAX_HELD_LINES:
                    self.held.append(line)
                return
            self.stream.write(line + "\n")
            self.stream.flush()  # a running job is watched with tail -f
        except Exception:  # logging must never stop a run; the standard handlers do the same
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
        finally:
            self.release()
        super().close()


@contextlib.contextmanager
def capture() -> Iterator[RunLogHandler]:
    """While a command runs: collect its log, Python warnings included; ``handler.open(path)`` once the run folder
    is known. The ``sds`` loggers record at INFO at least meanwhile, so the file holds the run's story even where
    the caller (a batch worker, a test) configured no logging."""
    handler = RunLogHandler()
    root, ours = logging.getLogger(), logging.getLogger("sds")
    level = ours.level
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    warnings_were_captured = _warnings_captured()
    logging.captureWarnings(True)
    root.addHandler(handler)
    _OPEN.append(handler)
    try:
        yield handler
    finally:
        _OPEN.remove(handler)
        root.removeHandler(handler)
        handler.close()
        ours.setLevel(level)
        if not warnings_were_captured:
            logging.captureWarnings(False)


def _warnings_captured() -> bool:
    import warnings

    return getattr(warnings.showwarning, "__module__", "") == "logging"


def to_run_log(logger: logging.Logger, level: int, message: str, *args) -> None:
    """A record for the open run logs only, not the console: a progress line while the console shows the bar, or
    the failure the CLI prints itself in one line."""
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, "(run log)", 0, message, args, None)
    for handler in _OPEN:
        handler.handle(record)
