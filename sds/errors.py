"""Which exceptions are the user's to fix, and the one line the CLI prints for them."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run folder problem the user can fix (missing checkpoint, not a run folder, ...)."""


def user_message(error: BaseException) -> str | None:
    """One-line message for an expected failure, or None for a bug (which should show its traceback)."""
    from sds.export import EmptySceneError
    from sds.guidance.load import ModelLoadError
    from sds.run import DiskFullError

    if isinstance(error, (ModelLoadError, RunError, DiskFullError, FileNotFoundError, EmptySceneError)):
        return str(error)
    if isinstance(error, ValueError) and str(error).startswith(("device:", "render.", "field.")):
        return str(error)
    return None
