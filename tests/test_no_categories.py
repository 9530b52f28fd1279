"""A catalogue without categories (CSV without a categories column): no category metric is
logged, the sweeper's category objective falls back to ild_emb, xQuAD stops at once."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from divrec.errors import ConfigError
from divrec.run.train import objective, train


def _csv_folder(root: Path, n_users: int = 30, n_items: int = 40) -> Path:
    """items.csv (item_id, title: no categories column) and interactions.csv."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    titles = "\n".join(f"i{i},Item number {i}" for i in range(n_items))
    (root / "items.csv").write_text(f"item_id,title\n{titles}\n")
    rows = [
        f"u{u},i{i},1,{t}"
        for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, size=12, replace=False))
    ]
    (root / "interactions.csv").write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows))
    return root


@pytest.fixture
def csv_cfg(compose, tmp_path):
    folder = _csv_folder(tmp_path / "data")
    return lambda *overrides: compose("data=csv", f"data.path={folder}", *overrides)


def test_run_without_categories_logs_no_category_metric(csv_cfg, tmp_path, caplog):
    cfg = csv_cfg("optimized_metric=[val/ndcg@10,val/ild_cat@10]")
    with caplog.at_level(logging.WARNING):
        ndcg, div = train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok"
    for key in ("ild_cat", "cat_coverage", "alpha_ndcg"):
        assert not any(k.split("@")[0].endswith(f"/{key}") for k in m), key
    assert math.isfinite(m["test/ild_emb@10"]) and ndcg == pytest.approx(m["val/ndcg@10"])
    assert div == pytest.approx(m["val/ild_emb@10"])  # the sweeper's fallback objective
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 1 and "ild_cat, cat_coverage" in left_out[0]
    assert any("using val/ild_emb@10" in r.getMessage() for r in caplog.records)


def test_xquad_without_categories_stops_before_training(csv_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"^rerank: xquad needs item categories"):
        train(csv_cfg("rerank=xquad"))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_objective_missing_metric(caplog):
    assert objective({"val/ndcg@10": 0.5}, "val/ndcg@10") == 0.5
    assert objective({"val/ild_emb@10": 0.25}, "val/ild_cat@10") == 0.25
    with caplog.at_level("WARNING", logger="divrec"):
        assert math.isnan(objective({"val/ndcg@10": 0.5}, "val/recall@5"))
    assert "optimized_metric: 'val/recall@5' was not logged" in caplog.text
