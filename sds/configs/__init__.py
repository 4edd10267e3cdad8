"""Example configs shipped inside the package, so ``--config quick`` works wherever sds is installed.

A config file holds only what differs from the defaults (``sds/config.py``). ``--config`` takes a shipped name
(``sds/configs/NAME.yaml``) or the path of a file; the repository's ``configs/`` holds links to these files, so
``--config configs/quick.yaml`` works from a checkout too. Imports no torch.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from sds.errors import ConfigError

SHIPPED = Path(__file__).parent


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def resolve_config(name_or_path: str) -> str:
    """The path `--config` means: a file that exists, anything that looks like a path (ends in .yaml/.yml or holds
    a /) as given (load_config reports it missing), else a shipped config by name (ConfigError if none)."""
    path = Path(name_or_path).expanduser()
    looks_like_path = name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or "\\" in name_or_path
    if looks_like_path or path.is_file():
        return name_or_path
    shipped = SHIPPED / f"{name_or_path}.yaml"
    if shipped.is_file():
        return str(shipped)
    close = difflib.get_close_matches(name_or_path, shipped_names(), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"config: no file {name_or_path!r} and no shipped config of that name{hint} (shipped: "
                      f"{', '.join(shipped_names())}; or pass the path of a YAML file)")
