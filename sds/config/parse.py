"""Reading a run configuration: defaults <- recipe <- YAML file <- ``key=value`` overrides, checked against the
schema (``sds.config.schema``): unknown keys (with a did-you-mean) and wrong types raise :class:`ConfigError`
with a one-line message naming the key; ``sds.config.checks`` then checks ranges. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from sds.config.checks import check, split_lora, validate
from sds.config.schema import Ramp, RunConfig, constant
from sds.errors import ConfigError

ALIASES = {"model": "guidance.model", "lora": "guidance.loras"}
"""Plain names for common overrides."""

# ----------------------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _number(value: Any) -> Any:
    """PyYAML follows YAML 1.1, which reads 1e-6 (no dot) as text: take such text as the number it spells."""
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against type `tp`, converting YAML forms (list -> tuple, int -> float, number -> Ramp)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and all(dataclasses.is_dataclass(o) for o in typing.get_args(tp)):
        return _variant(value, typing.get_args(tp), key)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if tp is Ramp:
        value = _number(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return constant(_coerce(value, float, key))
        if isinstance(value, Ramp):
            return value
        return _build(Ramp, value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - schema bug


def _variant(value: Any, options: tuple[type, ...], key: str) -> Any:
    """One of several config classes, told apart by ``kind`` (the first is the default); text is a bare kind."""
    if isinstance(value, options):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping with a kind, got {value!r}")
    kinds = {o.kind: o for o in options}
    kind = value.get("kind", options[0].kind)
    if not isinstance(kind, str) or kind not in kinds:  # a list or mapping is not a kind (and cannot be looked up)
        raise ConfigError(f"{key}.kind: must be one of {', '.join(kinds)}; got {kind!r}")
    return _build(kinds[kind], value, key)


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{(prefix + '.') if prefix else ''}{close[0]}'?" if close else ""
            kind = f" of the {data.get('kind', getattr(cls, 'kind', ''))} kind" if "kind" in names else ""
            raise ConfigError(f"{path}: unknown key{kind}{hint}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field (Ramp.start/end) is missing
        raise ConfigError(f"{prefix}: {e}") from None


def _set_path(data: dict, dotted: str, value: Any) -> None:
    dotted = ALIASES.get(dotted, dotted)
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if isinstance(child, str):  # a variant named by its kind alone (field.encoding=hashgrid), now refined
            child = node[part] = {"kind": child}
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"{text}: overrides are key=value (e.g. steps=300)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"{text}: missing key before '='")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                prompt: str | None = None, require_prompt: bool = True, recipe: str | None = None) -> RunConfig:
    """Defaults <- recipe <- YAML file <- key=value overrides <- prompt. Validated; raises ConfigError.

    recipe: a shipped recipe's name or a recipe file's path (``sds.recipes``); None applies none (the defaults)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config: file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"config: {path} is not UTF-8 text") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config: {path} is not valid YAML ({e.__class__.__name__})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config: {path} must hold a mapping of keys")
        data = loaded or {}
    for text in overrides:
        key, value = parse_override(text)
        if key == "lora" and isinstance(value, str):  # repeatable: each lora=PATH[:WEIGHT] adds one
            section = data.get("guidance", {})
            earlier = section.get("loras") if isinstance(section, dict) else None
            value = [*(earlier if isinstance(earlier, list) else []), value]
        _set_path(data, key, value)
    if prompt is not None:
        data["prompt"] = prompt
    if recipe is not None:
        from sds.recipes import load_recipe

        chosen = layer = load_recipe(recipe)
        while layer is not None:  # the recipe's own settings over those of the recipe it extends
            data = _merged(layer.config, data)
            layer = layer.extends
        data["recipe"] = chosen.name
    cfg = _build(RunConfig, data)
    validate(cfg, require_prompt=require_prompt)
    return _with_absolute_model_files(cfg)


def _with_absolute_model_files(cfg: RunConfig) -> RunConfig:
    """LoRA files and model_config must exist when a run starts; they are saved as absolute paths, so a run folder
    reopened from elsewhere finds them (and export, which needs neither, never checks them)."""
    g = cfg.guidance
    loras = []
    for entry in g.loras:
        path, weight = split_lora(entry)
        full = Path(path).expanduser().resolve()
        check(full.is_file(), "guidance.loras", f"no such LoRA file: {path}")
        loras.append(f"{full}:{weight:g}")
    model_config = g.model_config
    if model_config is not None:
        full = Path(model_config).expanduser().resolve()
        check((full / "model_index.json").is_file(), "guidance.model_config",
               f"{model_config} is not a diffusers folder (no model_index.json)")
        model_config = str(full)
    return dataclasses.replace(cfg, guidance=dataclasses.replace(g, loras=tuple(loras), model_config=model_config))


def with_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...], allowed: tuple[str, ...]) -> RunConfig:
    """cfg with `key=value` overrides applied (the same parsing as load_config), each key one of `allowed` or
    under an allowed section ("export" allows "export.resolution"); validated. Used by resume and export."""
    data = to_dict(cfg)
    for text in overrides:
        key, value = parse_override(text)
        dotted = ALIASES.get(key, key)
        if not any(dotted == a or dotted.startswith(a + ".") for a in allowed):
            raise ConfigError(f"{key}: not changeable here (only {', '.join(allowed)}: changing other settings would "
                              "not continue the same run)")
        _set_path(data, dotted, value)
    return from_dict(data)


def _merged(base: dict, top: dict) -> dict:
    """base with top's keys laid over it, section by section."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        if isinstance(value, dict) and isinstance(below, (int, float)) and not isinstance(below, bool):
            below = {"start": below, "end": below}  # a constant ramp, so part of it can be overridden
        out[key] = _merged(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return out


def _requested(path: str | Path | None, overrides: list[str] | tuple[str, ...], dotted: str) -> str | None:
    """The text value a config file and overrides give `dotted` (the last one wins; None when neither does), read
    before the recipe is chosen; a broken file or override is left for load_config to report."""
    value = None
    if path is not None and Path(path).is_file():
        try:
            node = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            value = node if isinstance(node, str) and node else None
        except (UnicodeDecodeError, yaml.YAMLError):
            pass
    for text in overrides:
        key, _, raw = text.partition("=")
        if ALIASES.get(key.strip(), key.strip()) == dotted and raw.strip():
            value = raw.strip()
    return value


def requested_model(path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> str:
    """The model the config file and overrides ask for ("builtin" when neither does)."""
    return _requested(path, overrides, "guidance.model") or "builtin"


def requested_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> str | None:
    """The recipe a config file or an override names (a config printed by show-config names the one it used)."""
    return _requested(path, overrides, "recipe")


def to_dict(cfg: Any) -> dict:
    """Plain dict (lists, numbers, text) that `_build` turns back into an equal object."""
    def plain(value: Any) -> Any:
        if isinstance(value, Ramp) and value == constant(value.start):
            return value.start  # a constant is written as the number it is read from
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(data: dict) -> RunConfig:
    cfg = _build(RunConfig, data)
    validate(cfg, require_prompt=False)
    return cfg
