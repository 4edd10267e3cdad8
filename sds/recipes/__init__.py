"""Recipes: the method as data. A recipe is a YAML file shipped in this folder (or any path a user passes) with a
one-line ``description``, ``for`` (which models it is chosen for) and ``config``: the settings it layers over the
defaults, under the user's ``--config`` file and ``key=value`` overrides.

``choose_recipe`` picks one from the model when none is asked for: the built-in prior gets its tuned recipe,
any other model (Stable Diffusion, DeepFloyd IF, ...) the DreamFusion-style one. Imports no torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from sds.errors import ConfigError

SHIPPED = Path(__file__).parent


class RecipeError(ConfigError):
    """A recipe that cannot be found or read; the message names it."""


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    chosen_for: str
    config: dict


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def load_recipe(name_or_path: str) -> Recipe:
    """A shipped recipe by name, or a recipe file by path (anything ending in .yaml/.yml or containing a /)."""
    looks_like_path = name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path
    path = Path(name_or_path).expanduser() if looks_like_path else SHIPPED / f"{name_or_path}.yaml"
    if not path.is_file():
        if looks_like_path:
            raise RecipeError(f"recipe: file not found: {path}")
        close = difflib.get_close_matches(name_or_path, shipped_names(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise RecipeError(f"recipe: unknown recipe {name_or_path!r}{hint} (shipped: {', '.join(shipped_names())}; "
                          "or pass the path of a recipe file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise RecipeError(f"recipe: {path} is not valid YAML text ({type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
        raise RecipeError(f"recipe: {path} must be a mapping with description, for and config (a mapping of keys)")
    unknown = set(data) - {"description", "for", "config"}
    if unknown:
        raise RecipeError(f"recipe: {path} has unknown entries {sorted(unknown)}; a recipe holds description, "
                          "for and config")
    # A shipped recipe is recorded by name; a user's file by its absolute path, so a saved config finds it again.
    name = str(path.resolve()) if looks_like_path else path.stem
    return Recipe(name, str(data.get("description", "")), str(data.get("for", "")), data.get("config") or {})


def choose_recipe(model: str, requested: str | None) -> tuple[str, str]:
    """(recipe name or path, why it was chosen)."""
    if requested:
        return requested, "asked for with --recipe"
    if model == "builtin":
        return "builtin", "the model is the built-in prior"
    return "dreamfusion", (f"the model {model!r} is not the built-in prior, whose tuned recipe would not fit it; "
                           "--recipe builtin to use it anyway")
