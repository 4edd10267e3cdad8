"""Recipes: the method as data. A recipe is a YAML file shipped in this folder (or any path a user passes) with a
one-line ``description``, ``for`` (which models it is chosen for) and ``config``: the settings it layers over the
defaults, under the user's ``--config`` file and ``key=value`` overrides. ``extends: NAME`` (a recipe's name or
path) lays its config over that recipe's, so a variant states only what differs.

``choose_recipe`` picks one from the model when none is asked for: the built-in prior gets its tuned recipe,
DeepFloyd IF stage I its own (``dreamfusion-if``), any other model (Stable Diffusion, SDXL, ...) the
DreamFusion-style one. Imports no torch.
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
    """Its own settings; ``extends``' lie under them."""
    extends: Recipe | None = None


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def load_recipe(name_or_path: str, seen: tuple[Path, ...] = ()) -> Recipe:
    """A shipped recipe by name, or a recipe file by path (anything ending in .yaml/.yml or containing a /), with
    the recipe it extends. seen: the files already read on the way here (a recipe may not extend itself)."""
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
    unknown = set(data) - {"description", "for", "config", "extends"}
    if unknown:
        raise RecipeError(f"recipe: {path} has unknown entries {sorted(unknown)}; a recipe holds description, "
                          "for, config and extends")
    if path.resolve() in seen:
        raise RecipeError(f"recipe: {path} extends itself (through {', '.join(p.name for p in seen)})")
    base = data.get("extends")
    if base is not None and not isinstance(base, str):
        raise RecipeError(f"recipe: {path}: extends must be a recipe's name or path, got {base!r}")
    if base is not None and (base.endswith((".yaml", ".yml")) or "/" in base):
        base = str(path.parent / Path(base).expanduser())  # a path is read from the recipe's own folder
    extends = None if base is None else load_recipe(base, (*seen, path.resolve()))
    # A shipped recipe is recorded by name; a user's file by its absolute path, so a saved config finds it again.
    name = str(path.resolve()) if looks_like_path else path.stem
    return Recipe(name, str(data.get("description", "")), str(data.get("for", "")), data.get("config") or {}, extends)


def choose_recipe(model: str, requested: str | None) -> tuple[str, str]:
    """(recipe name or path, why it was chosen)."""
    if requested:
        return requested, "asked for with --recipe"
    if model == "builtin":
        return "builtin", "the model is the built-in prior"
    if is_deepfloyd_if(model):
        return "dreamfusion-if", (f"the model {model!r} is DeepFloyd IF stage I (a 64-px pixel model, guided at a "
                                  "lower scale than latent models)")
    return "dreamfusion", (f"the model {model!r} is not the built-in prior, whose tuned recipe would not fit it; "
                           "--recipe builtin to use it anyway")


def is_deepfloyd_if(model: str) -> bool:
    """Whether `model` is DeepFloyd IF stage I: its model_index.json (a local folder's, or a hub id's copy in the
    local cache) names diffusers' IFPipeline; a hub id not in the cache is judged by its name (DeepFloyd/IF-I-...).
    Reads no weights, imports no torch and uses no network."""
    import json

    from sds.guidance.hub import cached_index, is_hub_id

    try:
        index = Path(model).expanduser() / "model_index.json"
        if not index.is_file() and is_hub_id(model):
            index = cached_index(model) or index
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name") == "IFPipeline"
    except (OSError, ValueError, AttributeError, RuntimeError):  # no index (a single file, an uncached hub id), a
        return model.startswith("DeepFloyd/IF-I-")  # bad one, or a path that cannot be read (loading says why)
