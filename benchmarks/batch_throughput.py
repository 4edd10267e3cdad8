"""Throughput of ``sds batch``: the same batch with 1 and with 2 (or more) workers, wall time and speed-up.

    python benchmarks/batch_throughput.py [--prompts "a red cube,a blue sphere"] [--seeds 4] [--workers 1,2]
                                          [--out outputs/batch_throughput] [key=value overrides for every run]

Each setting runs the whole batch (prompts x seeds; default 2 x 4 = 8 short runs of the built-in prior) through
the real command in a fresh output folder, so nothing is skipped. Ray runs embedded; each task gets
cores / workers CPUs and as many torch threads. The wall time includes starting Ray and its workers (seconds),
so short runs understate the speed-up a long batch reaches. Prints one line per setting and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHORT = ["steps=60", "checkpoint_every=60", "preview_every=1000", "export.video=false", "export.resolution=64"]
"""Short runs: enough steps that training dominates a run, no turntable video."""


def run_once(prompts: list[str], seeds: int, workers: int, out: Path, overrides: list[str]) -> dict:
    """One batch in a fresh folder; its wall time and what batch.json records."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    spec = out / "prompts.txt"
    spec.write_text("\n".join(prompts) + "\n")
    command = [sys.executable, "-m", "sds.cli", "batch", str(spec), "--seeds", str(seeds), "--workers", str(workers),
               "--no-progress", f"output_dir={out / 'outputs'}", *SHORT, *overrides]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"batch with {workers} worker(s) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    (record,) = (out / "outputs").glob("batch-*/2*/batch.json")
    data = json.loads(record.read_text())
    runs = data["runs"]
    return {"workers": workers, "wall_s": wall, "runs": len(runs), "cpus_per_task": data.get("cpus_per_task"),
            "mean_run_s": statistics.mean(r["seconds"] for r in runs),
            "mean_train_s": statistics.mean(r["train_s"] for r in runs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", default="a red cube,a blue sphere")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare")
    parser.add_argument("--out", type=Path, default=Path("outputs/batch_throughput"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    prompts = [p.strip() for p in args.prompts.split(",") if p.strip()]
    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        r = run_once(prompts, args.seeds, workers, args.out / f"workers-{workers}", args.overrides)
        results.append(r)
        print(f"{r['workers']} worker(s) x {r['cpus_per_task']} CPU(s): {r['runs']} runs in {r['wall_s']:.1f} s "
              f"wall (a run: {r['mean_run_s']:.1f} s, of which training {r['mean_train_s']:.1f} s)", flush=True)
    base = results[0]
    for r in results[1:]:
        print(f"speed-up of {r['workers']} over {base['workers']} worker(s): {base['wall_s'] / r['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
