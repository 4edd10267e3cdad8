"""How the CFG scale changes colour saturation and diversity across seeds (DreamFusion's trade-off), measured.

    OMP_NUM_THREADS=1 python benchmarks/cfg_scale.py --prompt "a blue cone" --scales 10,25,50,100 --seeds 0,1 \
        --out outputs/cfg_scale [--texture-stage] [key=value overrides for every run]

--texture-stage varies only the guidance scale of the stage named "texture" (the default recipe's) and keeps the
other stages'; without it each scale is used in every stage.

For each scale it runs ``sds generate`` once per seed (through the fidelity benchmark's runner) and reports:
- chroma: CIE C* of the mesh's mean albedo (the prompt colour's own chroma is printed for reference);
  saturation rising with the scale is what the DreamFusion paper and our seed notes predict;
- delta E to the prompt colour and the shape IoU against the true primitive (fidelity's scorer);
- diversity: 1 - IoU between the meshes of two seeds (same equal-volume alignment as the scorer, best over
  rotations about +Y) and the colour distance dE between the seeds' mean albedos. 0 means the seeds agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
from pathlib import Path

import numpy as np
import trimesh
from fidelity import ROTATIONS_DEG, _grid_points, iou, mesh_occupancy, run_prompt, score_mesh, srgb_to_lab

from sds.config import StageConfig, load_config
from sds.prior.world import COLORS


def chroma(rgb: np.ndarray) -> float:
    lab = srgb_to_lab(np.asarray(rgb, dtype=float))
    return float(np.hypot(lab[1], lab[2]))


def _rotated(mesh: trimesh.Trimesh, angle_deg: float) -> trimesh.Trimesh:
    out = mesh.copy()
    out.apply_transform(trimesh.transformations.rotation_matrix(np.radians(angle_deg), [0, 1, 0]))
    return out


def mesh_agreement(a: trimesh.Trimesh, b: trimesh.Trimesh) -> float:
    """IoU of two meshes, both centred on their centres of volume and scaled to a common volume, best over
    rotations of b about +Y."""
    points = _grid_points()
    occ_a = mesh_occupancy(a, points, 0.25)
    return max(iou(occ_a, mesh_occupancy(_rotated(b, angle), points, 0.25)) for angle in ROTATIONS_DEG)


def scale_override(scale: float, stages: tuple[StageConfig, ...], texture_stage_only: bool) -> str:
    """The `stages=` override that sets the guidance scale to `scale` in every stage, or in the "texture" stage only."""
    changed = [dataclasses.replace(s, guidance_scale=scale) if not texture_stage_only or s.name == "texture" else s
               for s in stages]
    return "stages=" + json.dumps([dataclasses.asdict(s) for s in changed])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", default="a blue cone")
    parser.add_argument("--scales", default="10,25,50,100")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", type=Path, default=Path("outputs/cfg_scale"))
    parser.add_argument("--texture-stage", action="store_true",
                        help="vary only the texture stage's scale, not the shape or colour stage's")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    default = load_config(None, [], prompt=args.prompt).stages
    color, shape = args.prompt.split()[-2:]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"prompt {args.prompt!r}; the prompt colour's own chroma is {chroma(COLORS[color]):.1f}")
    print("scale  chroma  dE    IoU    seed-diversity(1-IoU)  seed-colour-dE")
    for scale in [float(s) for s in args.scales.split(",")]:
        out = args.out / f"scale_{scale:g}"
        out.mkdir(parents=True, exist_ok=True)
        meshes, scores = [], []
        for seed in seeds:
            run = run_prompt(args.prompt, seed, out, [scale_override(scale, default, args.texture_stage),
                                                      *args.overrides])
            path = run / "result" / "model.ply" if run else None
            if path is None or not path.exists():
                continue
            meshes.append(trimesh.load(path, force="mesh", process=False))
            scores.append(score_mesh(path, shape, color))
        if not scores:
            print(f"{scale:5g}  (no mesh)")
            continue
        pairs = list(itertools.combinations(range(len(meshes)), 2))
        diversity = [1 - mesh_agreement(meshes[i], meshes[j]) for i, j in pairs]
        colour_spread = [float(np.linalg.norm(srgb_to_lab(np.array(scores[i]["mean_rgb"]))
                                              - srgb_to_lab(np.array(scores[j]["mean_rgb"])))) for i, j in pairs]
        mean = statistics.mean
        print(f"{scale:5g}  {mean(chroma(s['mean_rgb']) for s in scores):6.1f}  "
              f"{mean(s['delta_e'] for s in scores):5.1f} {mean(s['iou'] for s in scores):.3f}  "
              f"{mean(diversity) if diversity else float('nan'):21.3f}  "
              f"{mean(colour_spread) if colour_spread else float('nan'):14.1f}", flush=True)


if __name__ == "__main__":
    main()
