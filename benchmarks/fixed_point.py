"""Does SDS keep the true shape? Start the field at the ground truth and train with the recipe.

    python benchmarks/fixed_point.py --shape cube --color red [--seed 0] [--out outputs/fixed_point] [key=value ...]

The sdf grid starts as the true primitive's distance (sds.prior.world) and the albedo as its true colour, then
trains with the config (default recipe plus overrides) from step 0, exports and scores the mesh as
benchmarks/fidelity.py does. A shape that stays right shows the method can hold it and the trouble is getting
there from the start sphere; a shape that crumples from the truth shows the guidance itself (or a regulariser)
pulls it away, which no schedule of the start will fix.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from fidelity import score_mesh  # noqa: E402  (a sibling script)

from sds.prior.world import COLORS, sdf  # noqa: E402


def start_at_truth(trainer, shape: str, color: str) -> None:
    """Set the grid field's fine level so its distance is the primitive's, its coarse levels to 0, and its albedo
    to the colour."""
    field = trainer.field
    lattice = field.lattice  # [z, y, x, (x, y, z)]
    scale = field.geometry.scale
    with torch.no_grad():
        for g in (*field.geometry_grids, *field.albedo_grids):
            g.zero_()
        field.geometry_grids[0][0, 0] = (sdf(shape, lattice) - field.start_sphere_sdf(lattice)) / scale
        logits = torch.tensor([math.log(c / (1 - c)) for c in COLORS[color]]) - field.albedo_offset
        field.albedo_grids[0][0] = logits.view(3, 1, 1, 1).expand_as(field.albedo_grids[0][0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="cube")
    parser.add_argument("--color", default="red")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/fixed_point"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from sds import commands
    from sds.config import load_config
    from sds.guidance.load import load_guidance
    from sds.run import Run
    from sds.train import make_trainer, train

    prompt = f"a {args.color} {args.shape}"
    cfg = load_config(None, [f"seed={args.seed}", f"output_dir={args.out}", "export.formats=[glb, ply]",
                             "export.video=false", *args.overrides], prompt=prompt)
    device = torch.device("cpu")
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, device)
    trainer = make_trainer(cfg, device)
    start_at_truth(trainer, args.shape, args.color)
    run = Run.create(cfg)
    status = train(trainer, guidance, run, show_progress=False)
    commands.export_run(trainer, run, cfg, show_progress=False)
    s = score_mesh(run.path / "result" / "model.ply", args.shape, args.color)
    s.update(prompt=prompt, seed=args.seed, status=status, run=str(run.path),
             touches_bound=run.info.export.get("touches_bound"))
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}))


if __name__ == "__main__":
    main()
