"""Which exceptions are the user's to fix, and the one line the CLI prints for them.

Every expected failure is a ``UserError`` (config, model, run folder, empty scene, full disk); the CLI prints
its message in one line and exits non-zero. File-system errors (permissions, a file where a folder should be,
a full disk) are the user's too and get one line naming the path. Anything else is a bug and keeps its
traceback. This module imports nothing heavy: ``sds.config`` builds on it.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; its message is one line saying what to do."""


class ConfigError(UserError, ValueError):
    """A bad configuration value or argument; the message names the key (the CLI exits 2)."""


class RunError(UserError, RuntimeError):
    """A run folder problem the user can fix (missing or corrupt checkpoint, not a run folder, ...)."""


class ModelLoadError(UserError, RuntimeError):
    """The guidance model could not be found or loaded; the message says what to do."""


MISSING_PACKAGES = {
    "torch": "PyTorch is not installed; install the build you want first: pip install torch --index-url "
             "https://download.pytorch.org/whl/cpu (CPU), or pip install 'sds3d[cuda]' (CUDA; README: Install)",
    "nerfacc": "nerfacc is not installed: pip install 'sds3d[cuda]', or render.sampler=torch",
}
"""Optional packages the package does not pull in itself (README: Install), and how to get them."""


OUT_OF_GPU_MEMORY = ("out of GPU memory ({detail}); lower render.resolution or camera.batch_size, or set "
                     "guidance.half_precision=true or guidance.vae_checkpointing=true (sds doctor estimates a run's "
                     "peak) for a new run; this run keeps its last checkpoint: sds resume RUN_DIR guidance.vae_checkpointing=true "
                     "continues it with less memory")
"""torch.OutOfMemoryError (CUDA), told by name: this module imports nothing heavy."""


def user_message(error: BaseException) -> str | None:
    """One-line message for an expected failure, or None for a bug (which should show its traceback)."""
    if isinstance(error, UserError):
        return _one_line(str(error))
    if type(error).__name__ == "OutOfMemoryError" and type(error).__module__.startswith("torch"):
        return OUT_OF_GPU_MEMORY.format(detail=first_line(error, limit=120))
    if isinstance(error, ModuleNotFoundError) and error.name in MISSING_PACKAGES:
        return MISSING_PACKAGES[error.name]
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return _one_line(f"{error.strerror}{where}")
    return None


def first_line(error: BaseException, limit: int | None = 200) -> str:
    """The first line of an exception's message (at most `limit` characters), or its type's name when empty: how a
    third-party error is quoted inside one of our one-line messages."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"
