"""Export time and peak memory per phase at several grid resolutions, on a trained run's checkpoint.

    python benchmarks/export_time.py RUN_DIR [--resolutions 128,256]

Each resolution runs in a fresh process so the peak RSS it prints belongs to that export alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time, yaml, torch
from dataclasses import replace
from pathlib import Path
from sds.commands import nerf_render_fn
from sds.config import from_dict
from sds.export import export_result
from sds.run import Run, peak_memory_mb
from sds.train import load_checkpoint, make_trainer
run_dir, resolution, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
cfg = from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
cfg = replace(cfg, export=replace(cfg.export, resolution=resolution, formats=("glb", "obj", "ply")))
trainer = make_trainer(cfg, torch.device("cpu"))
load_checkpoint(trainer, Run.open(run_dir))
before = peak_memory_mb()
t = time.perf_counter()
res = export_result(trainer.field, trainer.field.bound, nerf_render_fn(trainer.renderer), out, cfg.export, False)
print(json.dumps({"resolution": resolution, "seconds": time.perf_counter() - t, "timings": res.timings_s,
                  "faces_before": res.faces_before_cleanup, "faces_after": res.faces_after_cleanup,
                  "vertices": res.num_vertices, "texture": res.texture_size,
                  "peak_rss_mb": peak_memory_mb(), "rss_before_mb": before}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resolutions", default="128,256")
    args = parser.parse_args()
    for r in map(int, args.resolutions.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(args.run_dir), str(r), str(Path(tmp) / "result")],
                                  capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"resolution {r}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        phases = ", ".join(f"{k} {v:.1f}" for k, v in d["timings"].items())
        print(f"resolution {r}: {d['seconds']:.1f} s ({phases}); faces {d['faces_before']} -> {d['faces_after']}, "
              f"{d['vertices']} vertices, texture {d['texture']}^2; peak RSS {d['peak_rss_mb']:.0f} MiB "
              f"(process before export {d['rss_before_mb']:.0f} MiB)")


if __name__ == "__main__":
    main()
