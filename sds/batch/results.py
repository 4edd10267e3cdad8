"""A batch's record: one ``RunResult`` per (prompt, seed), read from its run folder, and the files that list them
(``results.csv``, ``batch.json``). Imports no torch."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from sds.run import write_atomic

SCORE_FILE = "score.json"
"""Written into a run folder by ``sds.batch.score.score_run``; a finished run with it needs no more work."""
SCORE_VERSION = 3
"""Written into score.json (``sds.batch.score``): a score of another version (an older formula) is computed again,
never compared with this one's."""

TASK_FILE = "task.json"
"""Written into a run's group folder by the task running it: host, pid, attempt (how a test finds the worker)."""

FINAL_FAILURES = ("cut_by_box", "nan", "empty")
"""Run statuses that end a run for its own reason, which running it again would repeat: a second ``sds batch`` does
not run it again (a "failed" run, e.g. a model that could not load, is tried again)."""


@dataclass
class RunResult:
    """One row of results.csv and batch.json."""

    prompt: str
    seed: int
    status: str
    """The run's status (ok, nan, empty, failed, interrupted), or "pending" for a run the batch never started."""
    score: float | None = None
    """The guidance model's score of the result (``sds.batch.score``; higher is better); None unless ok."""
    best: bool = False
    """The highest-scoring ok run of its prompt."""
    seconds: float = 0.0
    """Wall time of the last task that worked on the run (0: nothing was computed in this invocation)."""
    train_s: float = 0.0
    export_s: float = 0.0
    steps_done: int = 0
    steps_total: int = 0
    attempts: int = 0
    """Tasks started for the run in this invocation (more than 1: a worker died and the task was retried)."""
    resumed_from_step: int | None = None
    """The checkpoint step the last task resumed from (None: it started from step 0, or computed nothing)."""
    done_earlier: bool = False
    """Finished by an earlier invocation; nothing was computed."""
    run_dir: str = ""
    """The run folder, relative to the batch folder holding results.csv ("" when the run never started)."""
    host: str = ""
    message: str = ""
    """The one-line reason for any status but ok (or a warning for an ok run, such as a score that failed)."""


COLUMNS = tuple(f.name for f in fields(RunResult))


def latest_run(group: Path) -> Path | None:
    """The run folder of a group (``<slug>-<hash>/``) that a batch continues: a finished one, else the newest with a
    checkpoint, else the newest. None when there is none."""
    folders = [p for p in group.glob("*") if (p / "run.json").is_file()] if group.is_dir() else []
    if not folders:
        return None
    return max(folders, key=lambda p: (read_status(p) == "ok", (p / "ckpt" / "last.pt").is_file(), _stamp_key(p)))


def _stamp_key(path: Path) -> tuple[str, int]:
    """"20261205-101500-3" sorts after "20261205-101500-2" and after "20261205-101500" (Run.create's names)."""
    match = re.fullmatch(r"(\d{8}-\d{6})(?:-(\d+))?", path.name)
    return (path.name, 0) if match is None else (match.group(1), int(match.group(2) or 0))


def read_info(run_dir: Path) -> dict:
    """run.json as a dict ({} when it is missing or unreadable)."""
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def read_status(run_dir: Path) -> str:
    return str(read_info(run_dir).get("status", ""))


def read_score(run_dir: Path) -> float | None:
    """The run's score, or None when it has none or one of another formula (an older sds: scored again)."""
    try:
        record = json.loads((run_dir / SCORE_FILE).read_text(encoding="utf-8"))
        return float(record["score"]) if record.get("version") == SCORE_VERSION else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def is_finished(run_dir: Path | None) -> bool:
    """Nothing left to do: ok and scored, or ended for its own reason (cut by the scene box, nan, empty)."""
    if run_dir is None:
        return False
    status = read_status(run_dir)
    return (status == "ok" and read_score(run_dir) is not None) or status in FINAL_FAILURES


def result_from_folder(prompt: str, seed: int, run_dir: Path | None, **extra) -> RunResult:
    """A row from what a run folder records (run.json, score.json); `extra` sets or overrides fields."""
    if run_dir is None:
        return RunResult(prompt, seed, **{"status": "pending", **extra})
    info = read_info(run_dir)
    timings = info.get("timings_s") if isinstance(info.get("timings_s"), dict) else {}
    status = str(info.get("status", "failed"))
    values = dict(status=status, score=read_score(run_dir) if status == "ok" else None,
                  train_s=float(timings.get("train", 0.0)), export_s=float(timings.get("export", 0.0)),
                  steps_done=int(info.get("steps_done", 0)), steps_total=int(info.get("steps_total", 0)),
                  run_dir=str(run_dir), message=str(info.get("message", "")))
    return RunResult(prompt, seed, **{**values, **extra})


def mark_best(results: list[RunResult]) -> list[RunResult]:
    """The same rows with ``best`` set on the highest-scoring ok run of each prompt (the first on a tie)."""
    best: dict[str, RunResult] = {}
    for r in results:
        if r.status == "ok" and r.score is not None and (r.prompt not in best or r.score > best[r.prompt].score):
            best[r.prompt] = r
    chosen = {id(r) for r in best.values()}
    return [replace(r, best=id(r) in chosen) for r in results]


def relative_to(results: list[RunResult], folder: Path) -> list[RunResult]:
    """Rows whose run_dir is relative to `folder` (the batch folder), so the batch can be moved or shared."""
    import os

    return [replace(r, run_dir=os.path.relpath(r.run_dir, folder)) if r.run_dir and Path(r.run_dir).is_absolute()
            else r for r in results]


def write_results(folder: Path, results: list[RunResult], header: dict) -> None:
    """``results.csv`` (one row per run) and ``batch.json`` (`header` plus the same rows), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = asdict(r)
        row["score"] = "" if r.score is None else f"{r.score:.6g}"
        row["resumed_from_step"] = "" if r.resumed_from_step is None else r.resumed_from_step
        writer.writerow(row)
    write_atomic(folder / "results.csv", buffer.getvalue())
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    record = {**header, "counts": counts, "runs": [asdict(r) for r in results]}
    write_atomic(folder / "batch.json", json.dumps(record, indent=2))


def read_results(folder: Path) -> list[RunResult]:
    """The rows of a batch folder's batch.json."""
    data = json.loads((folder / "batch.json").read_text(encoding="utf-8"))
    return [RunResult(**row) for row in data["runs"]]
