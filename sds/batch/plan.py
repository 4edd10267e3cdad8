"""From a batch file to the runs it asks for: one resolved, validated config per (prompt, seed).

A run's identity is its resolved config (prompt and seed included), so its folder group
``<batch>/runs/<slug>-<config hash>/`` is the same in every invocation and on every node: a retried task and a
second ``sds batch`` find the run's checkpoint there. Imports no torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sds.batch.spec import BatchRow, BatchSpec, row_seeds
from sds.config import RunConfig, load_config, parse_override, requested_model, requested_recipe
from sds.errors import ConfigError
from sds.recipes import choose_recipe
from sds.run import config_hash, slugify

log = logging.getLogger("sds")

RESERVED_KEYS = {"prompt": "the prompt comes from the batch file", "output_dir": "set output_dir for the whole "
                 "batch (a key=value on the command line or the file's shared overrides)"}
"""Keys a row may not override, and why."""


@dataclass(frozen=True)
class PlannedRun:
    """One (prompt, seed) of the batch: its config, or the one-line reason it cannot run."""

    prompt: str
    seed: int
    cfg: RunConfig | None
    recipe_reason: str = ""
    error: str = ""
    """Why the run cannot start (a bad override, an unknown recipe); "" when cfg is set."""

    @property
    def group(self) -> Path | None:
        """The folder that holds this run's folder(s): ``Run.create`` makes ``<group>/<stamp>/`` in it."""
        return None if self.cfg is None else run_group(self.cfg)


def run_group(cfg: RunConfig) -> Path:
    """``<output_dir>/<slug>-<config hash>``: where ``sds.run.Run.create`` puts the folders of this config."""
    return Path(cfg.output_dir).expanduser().resolve() / f"{slugify(cfg.prompt)}-{config_hash(cfg)}"


def batch_root(output_dir: str, name: str) -> Path:
    """``<output_dir>/batch-<name>``: the runs (``runs/``) and one folder per invocation (``<stamp>/``)."""
    return Path(output_dir).expanduser().resolve() / f"batch-{slugify(name)}"


def shared_config(spec: BatchSpec, config_path: str | None, overrides: list[str], recipe: str | None) -> RunConfig:
    """The config every row starts from (no prompt yet): a bad shared override stops the batch before it starts."""
    for text in [*spec.overrides, *overrides]:
        _check_not_reserved(text, allow_output_dir=True)
    chosen, _ = choose_row_recipe(config_path, [*spec.overrides, *overrides], recipe, spec.recipe)
    return load_config(config_path, [*spec.overrides, *overrides], require_prompt=False, recipe=chosen)


def plan_runs(spec: BatchSpec, config_path: str | None, overrides: list[str], recipe: str | None,
              seeds: int | None, runs_dir: Path) -> list[PlannedRun]:
    """Every (prompt, seed) of the batch in file order, each with its config (output_dir: runs_dir) or its error.
    The same run asked for twice is planned once."""
    planned: list[PlannedRun] = []
    seen: set[Path] = set()
    for row in spec.rows:
        for run in _plan_row(row, spec, config_path, overrides, recipe, seeds, runs_dir):
            if run.group is not None and run.group in seen:
                log.warning("%s: prompt %r seed %d is already in the batch with the same config; run once",
                            row.where, run.prompt, run.seed)
                continue
            if run.group is not None:
                seen.add(run.group)
            planned.append(run)
    return planned


def _plan_row(row: BatchRow, spec: BatchSpec, config_path: str | None, overrides: list[str], recipe: str | None,
              seeds: int | None, runs_dir: Path) -> list[PlannedRun]:
    # The file's shared overrides, then the row's, then the command line's (key=value overrides go last).
    texts = [*spec.overrides, *row.overrides, *overrides]
    try:
        for text in row.overrides:
            _check_not_reserved(text, allow_output_dir=False)
        chosen, reason = choose_row_recipe(config_path, texts, recipe, spec.recipe)
        base = load_config(config_path, texts, prompt=row.prompt, recipe=chosen)
    except ConfigError as e:
        return [PlannedRun(row.prompt, s, None, error=f"{row.where}: {e}")
                for s in row_seeds(row, seeds, base_seed=0)]
    out = []
    for seed in row_seeds(row, seeds, base_seed=base.seed):
        try:
            cfg = load_config(config_path, [*texts, f"seed={seed}", f"output_dir={runs_dir}"], prompt=row.prompt,
                              recipe=chosen)
            out.append(PlannedRun(row.prompt, seed, cfg, reason))
        except ConfigError as e:
            out.append(PlannedRun(row.prompt, seed, None, error=f"{row.where}: {e}"))
    return out


def choose_row_recipe(config_path: str | None, overrides: list[str], cli_recipe: str | None,
                      file_recipe: str | None) -> tuple[str, str]:
    """(recipe, why): --recipe; else one the config or an override names; else the batch file's; else chosen from
    the model (``sds.recipes.choose_recipe``), as ``sds generate`` chooses."""
    if cli_recipe is not None:
        return choose_recipe(requested_model(config_path, overrides), cli_recipe)
    named = requested_recipe(config_path, overrides)
    if named is not None:
        return named, "named in the config"
    if file_recipe is not None:
        return file_recipe, "named in the batch file"
    return choose_recipe(requested_model(config_path, overrides), None)


def _check_not_reserved(text: str, allow_output_dir: bool) -> None:
    key, _ = parse_override(text)
    if key in RESERVED_KEYS and not (allow_output_dir and key == "output_dir"):
        raise ConfigError(f"{text}: {key} cannot be overridden per run here; {RESERVED_KEYS[key]}")
