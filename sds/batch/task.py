"""One (prompt, seed) of a batch, as a Ray task runs it on a worker: find the run's folder, then skip it, resume it
from its last checkpoint, or start it; score the result. Never raises for the run's own failures: they come back
as a ``RunResult`` with their one-line message, so the other runs go on.

A task killed mid-run (a worker or node lost) is retried by Ray; the retry finds the run's checkpoint in the same
folder (its path depends only on the resolved config: ``sds.batch.plan.run_group``) and resumes from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from sds.batch.plan import run_group
from sds.batch.results import TASK_FILE, RunResult, is_finished, latest_run, read_status, result_from_folder
from sds.errors import first_line, user_message
from sds.run import write_atomic

log = logging.getLogger("sds")


def run_task(cfg_data: dict, recipe_reason: str, batch_id: str, cpus: int) -> dict:
    """Run (or resume, or skip) one run of the batch; returns ``asdict(RunResult)``.

    cfg_data: the run's resolved config (``sds.config.to_dict``); batch_id: the invocation, so attempts are counted
    per invocation; cpus: the CPUs Ray gave the task (torch uses that many threads)."""
    import torch

    from sds.config import from_dict
    from sds.interrupts import STOP

    started = time.perf_counter()
    torch.set_num_threads(max(1, cpus))
    STOP.clear()  # a worker process runs many tasks; a stop meant for an earlier one is not for this one
    cfg = from_dict(cfg_data)
    group = run_group(cfg)
    group.mkdir(parents=True, exist_ok=True)
    attempt = _record_attempt(group, batch_id)
    with _log_to(group / "batch.log"):
        log.info("task: %r seed %d, attempt %d, pid %d on %s, %d CPU threads", cfg.prompt, cfg.seed, attempt,
                 os.getpid(), socket.gethostname(), cpus)
        resumed_from, message, status = None, "", None
        try:
            resumed_from = _train(cfg, latest_run(group), recipe_reason)
            message = _score(latest_run(group))
        except KeyboardInterrupt:  # a cancelled batch (Ctrl-C at the driver): the run has recorded where it stopped
            status, message = "interrupted", "stopped with the batch; run sds batch again to continue"
        except Exception as e:  # noqa: BLE001 - one run's failure must not stop the batch
            status, message = "failed", user_message(e) or f"{type(e).__name__}: {first_line(e)}"
            log.error("task failed: %s\n%s", message, traceback.format_exc())
    run_dir = latest_run(group)
    extra = dict(seconds=round(time.perf_counter() - started, 3), attempts=attempt, resumed_from_step=resumed_from,
                 host=socket.gethostname())
    result = result_from_folder(cfg.prompt, cfg.seed, run_dir, **extra)
    if status is not None and (run_dir is None or result.status in ("ok", "running")):
        result.status = status  # the run folder does not say (none was made, or it failed after "ok")
    if message and (status is not None or result.status == "ok"):
        result.message = message
    if result.status == "interrupted":  # the run says "sds resume ...": in a batch, the batch continues it
        result.message = f"stopped at step {result.steps_done}; run the same sds batch again to continue"
    return _as_dict(result)


def _train(cfg, previous: Path | None, recipe_reason: str) -> int | None:
    """Bring the run to its end: nothing if it is done, resume from a checkpoint, else start it. Returns the step it
    resumed from (None: started from step 0 or did nothing)."""
    from sds import commands
    from sds.train import read_checkpoint

    if previous is not None and (is_finished(previous) or read_status(previous) == "ok"):
        return None  # done (an ok run without a score only needs the score)
    if previous is not None and (previous / "ckpt" / "last.pt").is_file():
        step = read_checkpoint(previous / "ckpt" / "last.pt")["step"]
        log.info("task: resuming %s from its checkpoint at step %d", previous, step)
        commands.resume(previous, [], show_progress=False)
        return step
    commands.generate(cfg, show_progress=False, recipe_reason=recipe_reason)
    return None


def _score(run_dir: Path | None) -> str:
    """Score an ok run that has no score yet. Returns a message if scoring failed ("" otherwise): the run stays ok."""
    from sds.batch.results import read_score
    from sds.batch.score import score_run

    if run_dir is None or read_status(run_dir) != "ok" or read_score(run_dir) is not None:
        return ""
    try:
        log.info("task: score %.6g", score_run(run_dir))
        return ""
    except Exception as e:  # noqa: BLE001 - a result without a score is still a result
        log.error("score failed: %s\n%s", first_line(e), traceback.format_exc())
        return f"score failed: {user_message(e) or first_line(e)}"


def _record_attempt(group: Path, batch_id: str) -> int:
    """Write TASK_FILE (host, pid, attempt) into the group; returns this attempt's number in this invocation."""
    path = group / TASK_FILE
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    attempt = int(previous.get("attempt", 0)) + 1 if previous.get("batch") == batch_id else 1
    record = {"batch": batch_id, "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_atomic(path, json.dumps(record, indent=2))
    return attempt


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """The sds log (training, export, score) of this task appended to `path`: a worker's own output stays on its
    node, the run's log travels with the run."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("sds")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _as_dict(result: RunResult) -> dict:
    from dataclasses import asdict

    return asdict(result)


def probe_storage(path: str, token: str) -> tuple[str, str]:
    """(host, "" or what is wrong): whether this node reads the driver's probe file at `path` and can write beside
    it. Run once per node at the start of a batch on a cluster."""
    host = socket.gethostname()
    probe = Path(path)
    try:
        if probe.read_text(encoding="utf-8") != token:
            return host, f"{probe} holds something else"
        mine = probe.with_name(f"{probe.name}-{host}-{os.getpid()}")
        mine.write_text(token, encoding="utf-8")
        mine.unlink()
    except OSError as e:
        return host, user_message(e) or first_line(e)
    return host, ""
