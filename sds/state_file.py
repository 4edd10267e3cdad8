"""Reading saved training state (``torch.save`` files) without ever running code from them.

``torch.load(weights_only=True)`` rebuilds tensors, numbers, text and containers only; a file that asks the
unpickler for any other object (the way a crafted pickle runs a command) is refused. Every failure becomes
one ``RunError`` line naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from sds.errors import RunError, first_line


def read_state(path: Path, device: torch.device | str = "cpu", what: str = "checkpoint") -> dict:
    """The mapping saved at `path`; RunError when it is not one, is corrupt, or holds anything but plain data."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            reason = "it holds objects other than tensors and numbers (refused: loading it could run code)"
        else:
            reason = f"corrupt ({first_line(e)})"
        raise RunError(f"{path} is not a usable {what}: {reason}") from None
    except (RuntimeError, EOFError, OSError, ValueError, UnicodeDecodeError, IndexError, KeyError) as e:
        raise RunError(f"{path} is not a usable {what} (truncated or corrupt: {first_line(e)})") from None
    if not isinstance(state, dict):
        raise RunError(f"{path} is not a usable {what} (it holds a {type(state).__name__}, not a mapping)")
    return state
