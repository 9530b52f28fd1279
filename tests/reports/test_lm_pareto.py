"""The lm_vs_id Pareto script: dominance is decided on validation means, test only reported."""

from __future__ import annotations

import pandas as pd

from experiments.lm_vs_id import pareto
from tests.reports.test_study import _model


def _study_csv(path, ref_val, ref_test):
    """A one-model study aggregate: tuned EASE + MMR 0.5 with the given means (std 0)."""
    row = {"model": "ease_tuned", "rerank": "mmr", "div": 0.5, "n_seeds": 3}
    for split, values in (("val", ref_val), ("test", ref_test)):
        for m, v in zip(pareto.AXES, values, strict=True):
            row[f"{split}/{m} mean"], row[f"{split}/{m} std"] = v, 0.0
    pd.DataFrame([row]).to_csv(path, index=False)


def test_dominance_uses_validation_and_reports_test(tmp_path, capsys):
    runs = tmp_path / "runs"
    # 0.3 beats the reference's val on all three axes but not on test; 0.1 misses val ILD
    # although its test values beat the reference everywhere: only 0.3 may be reported.
    for seed in (1, 2, 3):
        _model(runs, "ease_text_prior", seed, {
            ("mmr", 0.0): ((0.30, 0.70, 0.50), (0.30, 0.70, 0.50)),
            ("mmr", 0.1): ((0.25, 0.79, 0.65), (0.30, 0.90, 0.70)),
            ("mmr", 0.3): ((0.21, 0.82, 0.61), (0.19, 0.79, 0.59)),
        })  # fmt: skip
    _study_csv(tmp_path / "agg.csv", (0.20, 0.80, 0.60), (0.20, 0.80, 0.60))
    assert (
        pareto.main([str(runs), "--out", str(tmp_path), "--study", str(tmp_path / "agg.csv")]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("dominates on validation") == 1
    assert "+ mmr 0.3: 0.2100" in out and "its test (not dominating on test)" in out
    df = pd.read_csv(tmp_path / "pareto.csv")
    assert len(df) == 1 + 4  # the reference + mmr 0.0/0.1/0.3 and the mirrored dpp 0.0
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_no_dominating_point_is_said(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in (1, 2, 3):
        _model(runs, "ease_text_prior", seed, {
            ("mmr", 0.0): ((0.30, 0.70, 0.50), (0.30, 0.70, 0.50)),
        })  # fmt: skip
    _study_csv(tmp_path / "agg.csv", (0.20, 0.80, 0.60), (0.20, 0.80, 0.60))
    pareto.main([str(runs), "--out", str(tmp_path), "--study", str(tmp_path / "agg.csv")])
    assert "no point dominates" in capsys.readouterr().out
