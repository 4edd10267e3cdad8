"""Soak test of the CLI: many short runs back to back, two at a time, and killed at random then resumed.

    python benchmarks/soak.py [--runs 20] [--kills 20] [--steps 40] [--out outputs/soak] [--seed 0]

Every run is a real ``sds generate`` subprocess (OMP_NUM_THREADS=1, built-in prior, the short settings in
OVERRIDES) in its own output folder under OUT/<stamp>/. Each (prompt, seed) gets one uninterrupted reference
run (phase "ref"); every other run of it must exit 0 with run.json status "ok" and end with the reference's
ckpt/last.pt (every tensor, torch.equal), result/model.glb (bytes: the export is deterministic on CPU) and
progress/metrics.csv (bytes). Phases:
- back: RUNS runs one after the other;
- pair: RUNS/2 pairs started together;
- kill: KILLS runs killed after uniform(1 s, the reference's duration) by SIGKILL, SIGTERM, SIGINT in turn,
  then ``sds resume`` until status "ok". A SIGTERM/SIGINT must stop the run (exit 0 after one is a mismatch)
  with run.json saying "interrupted". A run killed before it had a checkpoint cannot be resumed: counted
  per signal, nothing is started.
Prints one line per run and a summary per phase; exits 1 on any mismatch or failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sds.errors import RunError
from sds.train import read_checkpoint

PROMPTS = ("a red cube", "a blue sphere", "a yellow torus", "a green cone", "a purple cylinder")
SEEDS = 2  # run i: PROMPTS[i % 5], seed i // 5 % SEEDS; 10 (prompt, seed) pairs, so 10 references at most
OVERRIDES = ("checkpoint_every=10", "preview_every=1000", "render.resolution=32", "export.resolution=48",
             "export.video=false", "export.texture_size=128")
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
TIMEOUT_S = 900  # a run that takes longer is stopped and counted as a failure (a hang)
RESUMES = 3  # resume attempts after a kill before giving up
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
COMPARED = ("ckpt/last.pt", "result/model.glb", "progress/metrics.csv")


@dataclass
class Row:
    phase: str
    prompt: str
    seed: int
    sig: str = "-"
    codes: list = field(default_factory=list)  # exit code of each process (generate, then any resumes)
    statuses: list = field(default_factory=list)  # run.json status after each process
    equal: bool | None = None
    seconds: float = 0.0
    failure: str = ""
    mismatch: str = ""
    unresumable: bool = False
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.codes[-1:] == [0] and self.statuses[-1:] == ["ok"]

    def line(self) -> str:
        equal = {True: "yes", False: "no", None: "-"}[self.equal]
        extra = "; ".join(x for x in (self.failure and f"FAILURE {self.failure}",
                                      self.mismatch and f"MISMATCH {self.mismatch}",
                                      self.unresumable and "killed before first checkpoint", self.note) if x)
        codes, statuses = ">".join(map(str, self.codes)), ">".join(self.statuses)
        return (f"{self.phase:5} {self.prompt:18} {self.seed:4} {self.sig:8} {codes:10} {statuses:24} "
                f"{equal:5} {self.seconds:6.1f}  {extra}")


def job(i: int) -> tuple[str, int]:
    return PROMPTS[i % len(PROMPTS)], i // len(PROMPTS) % SEEDS


def launch(args: list[str], out: Path) -> subprocess.Popen:
    """`python -m sds.cli ARGS`, its stdout and stderr appended to OUT/log.txt."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "sds.cli", *args], stdout=log,
                                stderr=subprocess.STDOUT, env=ENV)


def generate(prompt: str, seed: int, out: Path, steps: int) -> subprocess.Popen:
    return launch(["generate", prompt, f"seed={seed}", f"output_dir={out}", f"steps={steps}", *OVERRIDES,
                   "--no-progress"], out)


def wait(proc: subprocess.Popen) -> int | None:
    """The exit code, or None after a hang (the process is then killed)."""
    try:
        return proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def run_folder(out: Path) -> Path | None:
    found = [p for p in out.glob("*/*") if p.is_dir()]
    return found[0] if len(found) == 1 else None


def run_status(run: Path | None) -> str:
    try:
        return json.loads((run / "run.json").read_text())["status"]
    except (TypeError, OSError, ValueError, KeyError):
        return "none"


def differ(a, b, where: str = "") -> str | None:
    """The first place where two nested states differ (tensors compared exactly), or None."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return None if same else where
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where} (keys)"
        return next((d for k in a if (d := differ(a[k], b[k], f"{where}/{k}"))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where} (length)"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := differ(x, y, f"{where}/{i}"))), None)
    return None if type(a) is type(b) and a == b else where


def compare(run: Path, ref: Path) -> str:
    """'' when the run ended exactly as its reference, else what differs."""
    for name in COMPARED:
        if name.endswith(".pt"):
            try:
                where = differ(read_checkpoint(run / name), read_checkpoint(ref / name))
            except RunError as e:
                return str(e)
            if where is not None:
                return f"{name} differs at {where or '/'}"
        elif (run / name).read_bytes() != (ref / name).read_bytes():
            return f"{name} differs"
    return ""


def check(row: Row, out: Path, code: int | None, ref: Path | None) -> Row:
    """Fill in the row of a run that should now be finished: exit 0, status ok, equal to the reference."""
    run = run_folder(out)
    row.codes.append(code)
    row.statuses.append(run_status(run))
    if "Traceback" in (out / "log.txt").read_text(errors="replace"):
        row.note = "; ".join(n for n in (row.note, f"traceback in {out / 'log.txt'}") if n)
    missing = [name for name in COMPARED if run is None or not (run / name).is_file()]
    if not row.ok:
        row.failure = "hung" if code is None else f"exit {code}, status {run_status(run)}"
    elif missing:
        row.failure = f"status ok but no {', '.join(missing)}"
    elif row.phase == "ref":
        pass
    elif ref is None:
        row.failure = "its reference failed"
    else:
        diff = compare(run, ref)
        row.equal = not diff
        row.mismatch = "; ".join(m for m in (row.mismatch, diff) if m)
    return row


def resume(row: Row, run: Path, out: Path, code: int) -> int | None:
    """`sds resume RUN` until it ends with status ok (RESUMES tries at most); the last exit code."""
    for _ in range(RESUMES):
        row.codes.append(code)
        row.statuses.append(run_status(run))
        code = wait(launch(["resume", str(run), "--no-progress"], out))
        if code is None or (code == 0 and run_status(run) == "ok"):
            break
    return code


def signal_at(proc: subprocess.Popen, sig: signal.Signals, delay: float, row: Row) -> tuple[int | None, bool]:
    """Send `sig` after `delay` s unless the process has ended; its exit code and whether it was sent."""
    try:
        code = proc.wait(timeout=delay)
        row.note = f"finished before the signal at {delay:.1f} s"
        return code, False
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    code = wait(proc)
    row.note = f"signal at {delay:.1f} s"
    if code == 0:  # a polite stop must stop the run, not be lost
        row.mismatch = f"exit 0 after {sig.name}: the signal did not stop the run"
    return code, True


class Soak:
    def __init__(self, root: Path, steps: int):
        self.root, self.steps = root, steps
        self.refs: dict[tuple[str, int], tuple[Path | None, float]] = {}
        self.rows: list[Row] = []

    def record(self, row: Row) -> None:
        self.rows.append(row)
        print(row.line(), flush=True)

    def reference(self, prompt: str, seed: int) -> tuple[Path | None, float]:
        """The (cached) uninterrupted run of (prompt, seed): its folder (None if it failed), its seconds."""
        if (prompt, seed) not in self.refs:
            out = self.root / "ref" / f"{prompt.replace(' ', '-')}-s{seed}"
            started = time.perf_counter()
            code = wait(generate(prompt, seed, out, self.steps))
            row = check(Row("ref", prompt, seed, seconds=time.perf_counter() - started), out, code, None)
            self.record(row)
            self.refs[prompt, seed] = (None if row.failure else run_folder(out), row.seconds)
        return self.refs[prompt, seed]

    def together(self, phase: str, jobs: list[int]) -> None:
        """Start the runs `jobs` at once (one: back to back; two: a pair), then check each."""
        keys = [job(i) for i in jobs]
        refs = [self.reference(*key)[0] for key in keys]
        outs = [self.root / phase / f"{i:03d}" for i in jobs]
        started = time.perf_counter()
        procs = [generate(prompt, seed, out, self.steps) for (prompt, seed), out in zip(keys, outs)]
        for (prompt, seed), proc, out, ref in zip(keys, procs, outs, refs):
            code = wait(proc)
            row = Row(phase, prompt, seed, seconds=time.perf_counter() - started)
            self.record(check(row, out, code, ref))

    def kill(self, k: int, rng: random.Random) -> None:
        """Start a run, send it a signal at a random moment, resume it until it is done, check it."""
        prompt, seed = job(k)
        ref, ref_seconds = self.reference(prompt, seed)
        sig = SIGNALS[k % len(SIGNALS)]
        row = Row("kill", prompt, seed, sig=sig.name)
        out, delay = self.root / "kill" / f"{k:03d}", rng.uniform(1.0, max(ref_seconds, 1.0))
        started = time.perf_counter()
        code, sent = signal_at(generate(prompt, seed, out, self.steps), sig, delay, row)
        run = run_folder(out)
        if code not in (0, None) and (not sent or run is None or not (run / "ckpt" / "last.pt").is_file()):
            row.codes, row.statuses = [code], [run_status(run)]
            row.unresumable = sent
            row.failure = "" if sent else f"exit {code} before the signal (see {out / 'log.txt'})"
        else:
            if code not in (0, None):
                finished = run_status(run) == "ok" and code == -sig  # done; the signal hit the interpreter's exit
                if finished:
                    row.note += f"; finished before it (exit {code}: the signal hit the interpreter's exit)"
                elif sig != signal.SIGKILL and run_status(run) != "interrupted":
                    row.mismatch = f"status {run_status(run)} after {sig.name}, not interrupted"
                code = resume(row, run, out, code)
            check(row, out, code, ref)
        row.seconds = time.perf_counter() - started
        self.record(row)

    def summary(self) -> str:
        lines = []
        for phase in ("ref", "back", "pair", "kill"):
            rows = [r for r in self.rows if r.phase == phase]
            if rows:
                lines.append(f"{phase:5} {len(rows):3} runs: {sum(r.ok for r in rows)} ok, "
                             f"{sum(r.equal is True for r in rows)} equal to reference, "
                             f"{sum(bool(r.mismatch) for r in rows)} mismatches, "
                             f"{sum(bool(r.failure) for r in rows)} failures")
        kills = [r for r in self.rows if r.phase == "kill"]
        if kills:
            per = ", ".join(f"{s.name} {sum(r.unresumable for r in kills if r.sig == s.name)}/"
                            f"{sum(r.sig == s.name for r in kills)}" for s in SIGNALS)
            lines.append(f"killed before first checkpoint: {per}")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="back-to-back runs (and runs/2 pairs)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("outputs/soak"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = parser.parse_args()
    root = (args.out / time.strftime("%Y%m%d-%H%M%S")).resolve()
    print(f"soak: {args.runs} back to back, {args.runs // 2} pairs, {args.kills} kills, {args.steps} steps; "
          f"runs in {root}", flush=True)
    print(f"{'phase':5} {'prompt':18} {'seed':4} {'signal':8} {'exit':10} {'status':24} {'equal':5} "
          f"{'sec':>6}")
    soak = Soak(root, args.steps)
    for i in range(args.runs):
        soak.together("back", [i])
    for i in range(0, args.runs // 2 * 2, 2):
        soak.together("pair", [i, i + 1])
    rng = random.Random(args.seed)
    for k in range(args.kills):
        soak.kill(k, rng)
    print(soak.summary())
    sys.exit(1 if any(r.failure or r.mismatch for r in soak.rows) else 0)


if __name__ == "__main__":
    main()
