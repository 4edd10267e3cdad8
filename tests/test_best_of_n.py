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
    # A prompt with a third seed weighs no more in the random pick's mean: (0.775 + 0.625) / 2, not the runs' 0.685.
    text = report([*rows, _row("a blue cone", 2, 0.0, 0.325, "cone")])
    assert "all seeds (a random pick) 0.700" in text


def test_fidelity_results_mode_reads_each_run_s_score_and_filters_colours(tmp_path, capsys):
    import json

    from best_of_n import main

    from sds.batch.results import SCORE_FILE, SCORE_VERSION

    rows = []
    for i, (prompt, seed, score, iou) in enumerate([("a red cube", 0, 0.2, 0.70), ("a red cube", 1, 0.1, 0.80),
                                                    ("a pink cone", 0, 0.3, 0.60), ("a pink cone", 1, 0.1, 0.65)]):
        run = tmp_path / f"run{i}"
        (run / "ckpt").mkdir(parents=True)
        (run / SCORE_FILE).write_text(json.dumps({"score": score, "version": SCORE_VERSION}))
        rows.append(_row(prompt, seed, 0.0, iou, prompt.split()[-1], run=str(run)))
    (tmp_path / "results.json").write_text(json.dumps(rows))
    main(["--fidelity-results", str(tmp_path / "results.json"), "--colors", "red"])
    out = capsys.readouterr().out
    assert "a pink cone" not in out and "chosen seed 0.700, all seeds (a random pick) 0.750" in out
