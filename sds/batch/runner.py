"""``sds batch``: the driver. Plans the runs, skips the finished ones, sends the rest to Ray as tasks (a few at a time:
``--workers``), prints a line per finished run, and keeps ``results.csv``, ``batch.json`` and ``gallery.html`` up to
date in ``<output_dir>/batch-<name>/<stamp>/``. Ctrl-C stops the runs at a step boundary and says how to continue.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sds.batch.cluster import Sizing, check_shared, ray_session, size_tasks
from sds.batch.plan import PlannedRun, batch_root, plan_runs, shared_config
from sds.batch.record import BatchRecord, new_batch_folder
from sds.batch.results import RunResult, is_finished, latest_run, result_from_folder
from sds.batch.spec import read_spec
from sds.errors import ConfigError, first_line, user_message
from sds.run import check_output_dir

log = logging.getLogger("sds")

STOP_GRACE_S = 60.0
"""After Ctrl-C, how long the driver waits for runs to checkpoint and stop before it leaves them."""


@dataclass(frozen=True)
class BatchOptions:
    """What ``sds batch`` was asked (the command line's flags)."""

    spec: Path
    seeds: int | None = None
    overrides: tuple[str, ...] = ()
    name: str | None = None
    address: str | None = None
    workers: int | None = None
    config: str | None = None
    recipe: str | None = None
    retries: int = 3
    show_progress: bool = True

    def check(self) -> None:
        """ConfigError naming the flag, before anything runs."""
        for flag, value in (("--seeds", self.seeds), ("--workers", self.workers)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag}: must be >= 1, got {value}")
        if self.retries < 0:
            raise ConfigError(f"--retries: must be >= 0, got {self.retries}")
        if self.address is not None and not self.address.strip():
            raise ConfigError("--address: empty; give auto or HOST:PORT, or leave it out to run on this machine")

    def command(self, name: str) -> str:
        """The command line that continues this batch (the same runs, found again by name)."""
        words = ["sds", "batch", str(self.spec), "--name", name]
        for flag, value in (("--seeds", self.seeds), ("--config", self.config), ("--recipe", self.recipe),
                            ("--address", self.address), ("--workers", self.workers)):
            if value is not None:
                words += [flag, str(value)]
        return shlex.join([*words, *self.overrides])


def run_batch(opts: BatchOptions) -> int:
    """Run the batch; 0 when every run ended ok, 1 when any failed, 130 when interrupted."""
    opts.check()
    spec = read_spec(opts.spec)
    base = shared_config(spec, opts.config, list(opts.overrides), opts.recipe)
    name = opts.name or opts.spec.stem
    root = batch_root(base.output_dir, name)
    check_output_dir(root)
    runs_dir = root / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    planned = plan_runs(spec, opts.config, list(opts.overrides), opts.recipe, opts.seeds, runs_dir)
    record = BatchRecord(new_batch_folder(root), [(p.prompt, p.seed) for p in planned],
                         {"name": name, "spec": str(opts.spec.resolve()), "command": opts.command(name),
                          "address": opts.address or "embedded"})
    log.info("batch %s: %d runs", record.folder, len(planned))
    todo = [(i, p) for i, p in enumerate(planned) if not _settled(i, p, record)]
    log.info("%d run(s) to compute", len(todo))
    interrupted = False
    if todo:
        with ray_session(opts.address) as ray:
            if opts.address is not None:
                log.warning("joined the Ray cluster at %s: runs are written to %s, which every node must read and "
                            "write at that path (shared storage); checking", opts.address, runs_dir)
                check_shared(ray, runs_dir)
            sizing = size_tasks(ray, opts.workers, {p.cfg.device for _, p in todo})
            record.header.update(workers=sizing.workers, cpus_per_task=sizing.cpus_per_task,
                                 gpus_per_task=sizing.gpus_per_task, nodes=sizing.nodes)
            log.info("%d at a time, each with %d CPU(s)%s", sizing.workers, sizing.cpus_per_task,
                     " and a GPU" if sizing.gpus_per_task else "")
            interrupted = _execute(ray, todo, sizing, record, opts)
    results = record.finish(interrupted)
    return _summary(record, results, interrupted, opts.command(name))


def _settled(index: int, run: PlannedRun, record: BatchRecord) -> bool:
    """Record a run that needs no task (its config is invalid, or an earlier invocation finished it)."""
    if run.cfg is None:
        record.set(index, RunResult(run.prompt, run.seed, "failed", message=run.error))
        return True
    previous = latest_run(run.group)
    if is_finished(previous):
        record.set(index, result_from_folder(run.prompt, run.seed, previous, done_earlier=True))
        return True
    return False


def _execute(ray, todo: list[tuple[int, PlannedRun]], sizing: Sizing, record: BatchRecord,
             opts: BatchOptions) -> bool:
    """Run the tasks, `sizing.workers` at a time. Returns whether the batch was interrupted (Ctrl-C)."""
    from sds.batch.task import run_task
    from sds.config import to_dict

    threads = str(sizing.cpus_per_task)  # torch and its BLAS use the CPUs the task asked for, no more
    remote = ray.remote(run_task).options(
        num_cpus=sizing.cpus_per_task, num_gpus=sizing.gpus_per_task, max_retries=opts.retries,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}})
    queue, running = deque(todo), {}
    bar = record.progress_bar(len(todo), enabled=opts.show_progress and sys.stderr.isatty())
    try:
        while queue or running:
            while queue and len(running) < sizing.workers:
                i, run = queue.popleft()
                ref = remote.remote(to_dict(run.cfg), run.recipe_reason, record.folder.name, sizing.cpus_per_task)
                running[ref] = (i, run)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                i, run = running.pop(ref)
                record.set(i, _collect(ray, ref, run, opts.retries))
                bar.update(1)
        return False
    except KeyboardInterrupt:
        _stop(ray, running, record, opts.retries)
        return True
    finally:
        bar.close()


def _collect(ray, ref, run: PlannedRun, retries: int) -> RunResult:
    """A finished task's row; a task Ray gave up on gets its row from the run folder, with the reason."""
    try:
        return RunResult(**ray.get(ref))
    except ray.exceptions.TaskCancelledError:
        return _from_folder(run, "interrupted", "stopped with the batch; run the same sds batch again to continue")
    except ray.exceptions.RayTaskError as e:  # a bug in the task itself (the run's own failures come back as rows)
        cause = getattr(e, "cause", None) or e
        return _from_folder(run, "failed", user_message(cause) or f"{type(cause).__name__}: {first_line(cause)}")
    except ray.exceptions.RayError as e:  # the worker or its node died more often than --retries allows
        return _from_folder(run, "failed", f"its worker died {retries + 1} times ({type(e).__name__}: "
                                           f"{first_line(e, 160)}); run the same sds batch again to resume it")


def _from_folder(run: PlannedRun, status: str, message: str) -> RunResult:
    result = result_from_folder(run.prompt, run.seed, latest_run(run.group))
    if result.status != "ok":  # a run that finished as the task was lost keeps its ok
        result.status, result.message = status, message
    return result


def _stop(ray, running: dict, record: BatchRecord, retries: int) -> None:
    """Ctrl-C: ask the running tasks to stop (they checkpoint at a step boundary), wait a little, record them."""
    log.warning("stopping: %d run(s) in progress checkpoint and stop (Ctrl-C again to leave them at once)",
                len(running))
    for ref in running:
        ray.cancel(ref)
    ready = []
    try:
        ready, _ = ray.wait(list(running), num_returns=len(running), timeout=STOP_GRACE_S)
    except KeyboardInterrupt:
        pass
    for ref, (i, run) in running.items():
        if ref in ready:
            record.set(i, _collect(ray, ref, run, retries))
        else:
            record.set(i, _from_folder(run, "interrupted", "stopped with the batch; run the same sds batch again "
                                                           "to continue"))


def _summary(record: BatchRecord, results: list[RunResult], interrupted: bool, command: str) -> int:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    earlier = sum(r.done_earlier for r in results)
    text = ", ".join(f"{n} {status}" for status, n in counts.items())
    log.info("batch %s: %s%s", "interrupted" if interrupted else "done", text,
             f" ({earlier} done earlier)" if earlier else "")
    log.info("results: %s; gallery: %s", record.folder / "results.csv", record.folder / "gallery.html")
    if interrupted or counts.get("pending") or counts.get("interrupted"):
        log.warning("continue with: %s", command)
        return 130 if interrupted else 1
    return 0 if counts.get("ok", 0) == len(results) else 1
