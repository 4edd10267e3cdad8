"""benchmarks/best_of_n.py's report: what the score chose against every seed and the best one, and a wrong pick."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from best_of_n import report  # noqa: E402


def _row(prompt: str, seed: int, score: float, iou: float, cls: str, **extra) -> dict:
    return {"prompt": prompt, "seed": seed, "score": score, "iou": iou, "class": cls, "delta_e": 5.0,
            "components": 1, "genus_ok": True, "genus": 0, **extra}


def test_report_compares_the_chosen_seed_with_all_and_the_best_and_names_a_wrong_pick():
    rows = [_row("a red cube", 0, 0.9, 0.75, "cylinder"), _row("a red cube", 1, 0.5, 0.80, "cube"),
            _row("a blue cone", 0, 0.9, 0.70, "cone", touches_bound=True),  # cut by the box: never chosen
            _row("a blue cone", 1, 0.1, 0.85, "cone")]
    text = report(rows)
    assert "chosen seed 0.800, all seeds (a random pick) 0.775, best possible 0.825" in text
    assert "wrong shape while a seed had the right one: 1 (a red cube (seed 0: cylinder" in text
