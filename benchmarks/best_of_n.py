"""Does the batch's automatic score pick good seeds? The fidelity set, several seeds a prompt, through ``sds batch``.

    python benchmarks/best_of_n.py [--shapes sphere,cube,...] [--colors red,blue,yellow] [--seeds 3]
                                   [--workers 2] [--out outputs/best_of_n] [key=value overrides for every run]
    python benchmarks/best_of_n.py --report-only BATCH_FOLDER     # analyse a finished batch again
    python benchmarks/best_of_n.py --primitives [--colors ...]     # the score alone, on true renders (minutes)
    python benchmarks/best_of_n.py --fidelity-results R.json [R.json ...]  # score runs fidelity.py already made

Every prompt "a <colour> <shape>" runs with seeds 0..N-1 in one batch; each mesh is scored against its true
primitive as ``benchmarks/fidelity.py`` does (shape IoU, shape class, colour dE). Printed:
- the rank correlation (Spearman) between the batch's score and the IoU, and between the score and -dE, over the
  seeds of each prompt, averaged over prompts;
- the mean IoU (and dE) of the seed the score chose, of all seeds (what a random seed gets on average) and of the
  best seed by IoU (the best any choice could do);
- the prompts whose chosen mesh is the wrong shape although one of its seeds has the right one.

``--fidelity-results`` scores the kept runs of ``benchmarks/fidelity.py`` (its results.json files, several seeds
a prompt) with the same score ``sds batch`` writes (``sds.batch.score.score_run``, kept in each run's score.json),
instead of training them again through a batch.

``--primitives`` checks the score alone, without training: for each prompt "a <colour> <shape>" it scores 8 true
renders of each of the five primitives in that colour (the prior's own training renders, ``sds.prior.data``) and
counts the prompts whose own shape scores highest; and likewise the colour, among the colours, for the cube.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fidelity import score_mesh, shape_right  # noqa: E402  (a sibling script, not a package)


def run_batch(prompts: list[str], seeds: int, workers: int, out: Path, overrides: list[str]) -> Path:
    """The batch folder (``.../batch-best-of-n/<stamp>``) of one ``sds batch`` over the prompts."""
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "best-of-n.txt"
    spec.write_text("\n".join(prompts) + "\n")
    command = [sys.executable, "-m", "sds.cli", "batch", str(spec), "--seeds", str(seeds), "--workers", str(workers),
               f"output_dir={out}", "export.formats=[glb, ply]", *overrides]
    subprocess.run(command, check=False)  # a failed run is a row; the analysis says so
    return max(p for p in (out / "batch-best-of-n").glob("2*") if (p / "batch.json").is_file())


def fidelity_rows(folder: Path) -> list[dict]:
    """batch.json's rows with each ok run's mesh scored against the prompt's primitive."""
    rows = json.loads((folder / "batch.json").read_text())["runs"]
    for r in rows:
        mesh = folder / r["run_dir"] / "result" / "model.ply" if r["run_dir"] else None
        if r["status"] == "ok" and mesh is not None and mesh.is_file():
            _, color, shape = r["prompt"].split()
            r.update(score_mesh(mesh, shape, color), shape=shape)
    return [r for r in rows if "iou" in r and r["score"] is not None]


def scored_fidelity_rows(results: list[Path]) -> list[dict]:
    """The rows of fidelity.py's results.json files (already scored against the truth), each with the batch's
    score of its run (computed once, then read from the run's score.json)."""
    from sds.batch.results import read_score
    from sds.batch.score import score_run

    rows = []
    for path in results:
        for r in json.loads(path.read_text()):
            run = Path(r["run"]) if r.get("run") else None
            if "iou" not in r or run is None or not (run / "ckpt").is_dir():
                continue
            score = read_score(run)
            rows.append({**r, "shape": r["prompt"].split()[-1], "score": score if score is not None else score_run(run)})
    return rows


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def random_pick(by_prompt: dict[str, list[dict]], key: str) -> float:
    """What a seed picked at random gets on average: the mean over prompts of the mean over each prompt's seeds (a
    prompt with more seeds weighs no more, as for the chosen seed)."""
    return statistics.mean(statistics.mean(r[key] for r in runs) for runs in by_prompt.values())


def report(rows: list[dict]) -> str:
    by_prompt: dict[str, list[dict]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r)
    lines, rho_iou, rho_de = [], [], []
    chosen, oracle, wrong = [], [], []
    for prompt, runs in by_prompt.items():
        scores = [r["score"] for r in runs]
        rho_iou.append(spearman(scores, [r["iou"] for r in runs]))
        rho_de.append(spearman(scores, [-r["delta_e"] for r in runs]))
        # As sds batch's mark_best: a run cut by the scene box (status cut_by_box) is never chosen.
        pick = max([r for r in runs if not r.get("touches_bound")] or runs, key=lambda r: r["score"])
        chosen.append(pick)
        oracle.append(max(runs, key=lambda r: r["iou"]))
        if not shape_right(pick) and any(shape_right(r) for r in runs):
            wrong.append(f"{prompt} (seed {pick['seed']}: {pick['class']}, genus {pick['genus']}, "
                         f"{pick['components']} component(s){', cut by the box' if pick.get('touches_bound') else ''})")
        lines.append(f"{prompt:22} " + "  ".join(f"s{r['seed']}: IoU {r['iou']:.3f} dE {r['delta_e']:4.1f} "
                                                 f"score {r['score']:.4g}{' *' if r is pick else ''}" for r in runs))

    def mean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return statistics.mean(kept) if kept else math.nan

    lines += [
        f"rank correlation over each prompt's seeds (mean of {len(by_prompt)} prompts): score vs IoU "
        f"{mean(rho_iou):+.2f}, score vs -dE {mean(rho_de):+.2f}",
        f"mean IoU: chosen seed {mean([r['iou'] for r in chosen]):.3f}, all seeds (a random pick) "
        f"{random_pick(by_prompt, 'iou'):.3f}, best possible {mean([r['iou'] for r in oracle]):.3f}",
        f"mean dE: chosen seed {mean([r['delta_e'] for r in chosen]):.1f}, all seeds "
        f"{random_pick(by_prompt, 'delta_e'):.1f}",
        f"chosen mesh of the wrong shape while a seed had the right one: {len(wrong)}"
        + (f" ({'; '.join(wrong)})" if wrong else ""),
    ]
    return "\n".join(lines)


def primitive_check(colors: list[str], views: int = 8) -> str:
    """How often the score ranks the prompted primitive (and colour) first among true renders of all of them."""
    import torch

    from sds.batch.score import score_renders
    from sds.config import load_config
    from sds.guidance.load import load_guidance
    from sds.prior.data import DataConfig, render_primitive
    from sds.prior.world import COLORS, SHAPES

    def renders(shape: str, color: str):
        albedo = torch.tensor(COLORS[color]).expand(views, 3)
        images, labels = render_primitive(shape, albedo, DataConfig(), torch.Generator().manual_seed(0), views)
        return images.permute(0, 2, 3, 1).clamp(0, 1), labels

    lines, shapes_right, colors_right = [], 0, 0
    for color in colors:
        images = {s: renders(s, color) for s in SHAPES}
        cube_in = {c: renders("cube", c) for c in colors}
        for shape in SHAPES:
            cfg = load_config(None, [], prompt=f"a {color} {shape}", recipe="builtin")
            guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
            scores = {s: score_renders(*images[s], guidance) for s in SHAPES}
            shapes_right += max(scores, key=scores.get) == shape
            lines.append(f"a {color} {shape:8}: " + " ".join(f"{s} {v:+.5f}" for s, v in scores.items()))
            if shape == "cube":
                by_color = {c: score_renders(*cube_in[c], guidance) for c in colors}
                colors_right += max(by_color, key=by_color.get) == color
    lines.append(f"the prompted shape scores highest among the {len(SHAPES)} primitives: {shapes_right}/"
                 f"{len(colors) * len(SHAPES)}; the prompted colour among {len(colors)}: {colors_right}/{len(colors)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="sphere,cube,cylinder,cone,torus")
    parser.add_argument("--colors", default=None, help="comma-separated (default red,blue,yellow; with "
                        "--fidelity-results: every colour in the files)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/best_of_n"))
    parser.add_argument("--report-only", type=Path, default=None, metavar="BATCH_FOLDER")
    parser.add_argument("--primitives", action="store_true", help="check the score on true renders, no training")
    parser.add_argument("--fidelity-results", type=Path, nargs="+", default=None, metavar="RESULTS_JSON",
                        help="score the runs of benchmarks/fidelity.py instead of running a batch")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if args.fidelity_results:
        rows = scored_fidelity_rows(args.fidelity_results)
        if args.colors:
            rows = [r for r in rows if r["prompt"].split()[1] in args.colors.split(",")]
        print(report(rows))
        return
    args.colors = args.colors or "red,blue,yellow"
    if args.primitives:
        print(primitive_check(args.colors.split(",")))
        return
    folder = args.report_only
    if folder is None:
        prompts = [f"a {c} {s}" for c in args.colors.split(",") for s in args.shapes.split(",")]
        folder = run_batch(prompts, args.seeds, args.workers, args.out, args.overrides)
    print(report(fidelity_rows(folder)))
    print(f"batch: {folder}")


if __name__ == "__main__":
    main()
