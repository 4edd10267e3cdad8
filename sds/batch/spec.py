"""What a batch runs: a prompts file (``prompts.txt``, one prompt a line) or a batch file (``batch.yaml``), read into
rows of (prompt, seeds, overrides). Bad input raises ``ConfigError`` with one line naming the file and the row.

A batch file::

    recipe: builtin                 # optional; --recipe wins over it
    overrides: [steps=300]          # optional, for every row: a list of key=value or a mapping of keys
    prompts:
      - a red cube                  # a row that is only a prompt
      - prompt: a blue torus
        seeds: [0, 5]               # a list of seeds, or a count (3: the first three)
        overrides: {render.resolution: 48}

Imports no torch: a bad file is reported at once.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from sds.errors import ConfigError

FILE_KEYS = ("prompts", "overrides", "recipe")
ROW_KEYS = ("prompt", "seeds", "overrides")
MAX_SEEDS = 1000
"""The most seeds one prompt may ask for (a typo such as seeds: 40000 is refused before anything runs)."""


@dataclass(frozen=True)
class BatchRow:
    """One line of a prompts file or one entry of a batch file's ``prompts``."""

    prompt: str
    seeds: tuple[int, ...] | int | None = None
    """Explicit seeds, a count of seeds (from the base seed on), or None: ``--seeds`` decides."""
    overrides: tuple[str, ...] = ()
    """This row's key=value overrides (over the file's shared ones)."""
    where: str = ""
    """Where the row is, for messages: "prompts.txt:3" or "batch.yaml: prompts[2]"."""


@dataclass(frozen=True)
class BatchSpec:
    """A whole batch file: its rows, the overrides every row shares and the recipe it names (None: none)."""

    rows: tuple[BatchRow, ...]
    overrides: tuple[str, ...] = ()
    recipe: str | None = None


def read_spec(path: Path) -> BatchSpec:
    """Read ``.yaml``/``.yml`` as a batch file and anything else as a prompts file."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (give a prompts.txt, one prompt a line, or a batch.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    spec = _batch_file(text, path) if path.suffix.lower() in (".yaml", ".yml") else _prompts_file(text, path)
    if not spec.rows:
        raise ConfigError(f"{path}: no prompts (one a line in a prompts file, a 'prompts' list in a batch file; "
                          "lines starting with # are comments)")
    return spec


def _prompts_file(text: str, path: Path) -> BatchSpec:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            rows.append(BatchRow(prompt, where=f"{path.name}:{number}"))
    return BatchSpec(tuple(rows))


def _batch_file(text: str, path: Path) -> BatchSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a batch file is a mapping with 'prompts' (a list), and optionally 'overrides' "
                          "and 'recipe'")
    _check_keys(data, FILE_KEYS, f"{path.name}")
    prompts = data.get("prompts")
    if not isinstance(prompts, list):
        raise ConfigError(f"{path.name}: 'prompts' must be a list of prompts or of rows with prompt, seeds, overrides")
    recipe = data.get("recipe")
    if recipe is not None and (not isinstance(recipe, str) or not recipe.strip()):
        raise ConfigError(f"{path.name}: 'recipe' must be a recipe name or file path")
    rows = tuple(_row(entry, f"{path.name}: prompts[{i}]") for i, entry in enumerate(prompts))
    return BatchSpec(rows, _overrides(data.get("overrides"), f"{path.name}: overrides"), recipe)


def _row(entry, where: str) -> BatchRow:
    if isinstance(entry, str):
        entry = {"prompt": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: a row is a prompt or a mapping with prompt, seeds and overrides")
    _check_keys(entry, ROW_KEYS, where)
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"{where}: 'prompt' is missing or empty")
    return BatchRow(prompt.strip(), _seeds(entry.get("seeds"), where), _overrides(entry.get("overrides"),
                                                                                 f"{where}: overrides"), where)


def _seeds(value, where: str) -> tuple[int, ...] | int | None:
    """None, a count (int >= 1) or a list of distinct seeds >= 0."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise ConfigError(f"{where}: seeds: a count must be in [1, {MAX_SEEDS}], got {value}")
        return value
    ok = (isinstance(value, list) and value
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value))
    if not ok:
        raise ConfigError(f"{where}: seeds: give a count (3) or a list of seeds >= 0 ([0, 5]), got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: seeds: {value} repeats a seed")
    return tuple(value)


def _overrides(value, where: str) -> tuple[str, ...]:
    """A list of "key=value" strings or a mapping {key: value}, as key=value strings (values as YAML text)."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(f"{key}={_yaml_text(v)}" for key, v in value.items())
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: give a list of key=value ([steps=300]) or a mapping ({{steps: 300}})")


def _yaml_text(value) -> str:
    """A value as the override text that parses back to it (``[glb, obj]``, ``true``, ``0.5``)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _check_keys(data: dict, known: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def row_seeds(row: BatchRow, seeds: int | None, base_seed: int) -> tuple[int, ...]:
    """The seeds a row runs: its own list; or a count (its own, else ``--seeds``, else 1) from base_seed on."""
    if isinstance(row.seeds, tuple):
        return row.seeds
    count = row.seeds if isinstance(row.seeds, int) else (seeds or 1)
    return tuple(range(base_seed, base_seed + count))
