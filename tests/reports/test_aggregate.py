"""Mean ± std over seeds, against numpy on hand-written runs."""

import json

import numpy as np
import pytest

from divrec.reports.cli import main


def _run(folder, seed, model, ndcg):
    folder.mkdir(parents=True)
    meta = {"status": "ok", "overrides": [f"seed={seed}", f"model={model}"]}
    (folder / "metrics.json").write_text(
        json.dumps({"test/ndcg@10": ndcg, "test/ild_cat@10": 0.5, "meta": meta})
    )


def test_aggregate_groups_by_everything_but_the_seed(tmp_path):
    values = {"ease": [0.20, 0.22, 0.21], "pop": [0.10, 0.09, 0.11]}
    i = 0
    for model, ndcgs in values.items():
        for seed, v in zip((1, 2, 3), ndcgs, strict=True):
            _run(tmp_path / str(i), seed, model, v)
            i += 1
    assert main([str(tmp_path), "--aggregate"]) == 0
    import pandas as pd

    agg = pd.read_csv(tmp_path / "report" / "aggregate.csv").set_index("model")
    for model, ndcgs in values.items():
        assert agg.loc[model, "n_seeds"] == 3
        assert agg.loc[model, "test/ndcg@10 mean"] == pytest.approx(np.mean(ndcgs))
        assert agg.loc[model, "test/ndcg@10 std"] == pytest.approx(np.std(ndcgs, ddof=1))
    text = (tmp_path / "report" / "aggregate.md").read_text()
    assert f"{np.mean(values['ease']):.4f} ± {np.std(values['ease'], ddof=1):.4f}" in text
