"""experiments/shop_logs: the generated log holds what a shop's log holds; the tables are
plain means over seeds of test metrics (no selection)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from divrec.data.sources.transactions import MAPPING_UCI, load_transactions
from experiments.shop_logs import study
from experiments.shop_logs.make_log import make_log


@pytest.fixture(scope="module")
def small_log(tmp_path_factory) -> tuple[Path, dict]:
    log, truth = make_log(n_users=80, n_items=120, n_pairs=900, seed=3)
    path = tmp_path_factory.mktemp("log") / "lines.csv"
    log.to_csv(path, index=False)
    return path, truth


def _load(path: Path, aggregate: str):
    return load_transactions(
        str(path), columns=MAPPING_UCI, time_format="%m/%d/%Y %H:%M", aggregate=aggregate
    )


def test_log_has_cancellations_postage_guests_and_repeats(small_log):
    path, truth = small_log
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    first = raw[~raw["InvoiceNo"].str.startswith("C") & (raw["StockCode"] != "POST")]
    first = first[first["CustomerID"] != ""]
    n_pairs = len(first.drop_duplicates(["CustomerID", "StockCode"]))
    ds = _load(path, "invoice")
    st = ds.extra["stats"]
    assert st["tx/dropped_cancelled"] > 0 and st["tx/dropped_non_product"] > 0
    assert st["tx/dropped_missing_user"] > 0
    # every repeat interaction is one beyond a pair's first: events - distinct pairs
    assert st["tx/repeat_interactions"] == len(ds.interactions) - n_pairs > 0
    pairs = _load(path, "pair")
    assert len(pairs.interactions) == n_pairs
    assert set(ds.items["item_id"]) <= set(truth)  # the truth covers every product code
    assert ds.category_names == []  # no taxonomy written


def _run(root: Path, folder: str, seed: int, metrics: dict, rerank: tuple | None = None):
    job = root / folder / str(seed)
    if rerank:
        job = job / f"name={rerank[0]},diversity={rerank[1]}"
    job.mkdir(parents=True)
    knobs = {"rerank.name": rerank[0], "rerank.diversity": rerank[1]} if rerank else {}
    meta = {"status": "ok", "seed": seed, "knobs": knobs}
    (job / "metrics.json").write_text(json.dumps({"meta": meta, **metrics}))


def test_study_table_is_the_mean_and_std_over_seeds(tmp_path):
    for seed, v in ((1, 0.2), (2, 0.4)):
        _run(tmp_path, "random-repeats_on-ease", seed, {"test/ndcg@10": v})
        _run(tmp_path, "random-repeats_on-two_tower", seed, {"test/ndcg@10": 0.1}, ("xquad", 0.3))
    _run(tmp_path, "global_temporal-repeats_off-pop", 1, {"test/ndcg@10": 0.05})
    _run(tmp_path, "not-a-study-folder", 1, {"test/ndcg@10": 0.9})
    df = study.load(tmp_path)
    assert len(df) == 5
    text = study.table(df[df["rerank"] == "none"], study.MAIN[:1], ["split", "repeats", "model"])
    rows = text.splitlines()[2:]
    assert rows[0] == "| random | on | EASE (λ=500) | 2 | 0.3000 ± 0.1000 |"
    assert rows[1] == "| global_temporal | off | most popular | 1 | 0.0500 |"
    keys = ["split", "repeats", "model", "rerank", "diversity"]
    rr = study.table(df[df["rerank"] != "none"], study.MAIN[:1], keys).splitlines()[2]
    assert rr == "| random | on | two-tower (default) | xquad 0.3 | 2 | 0.1000 ± 0.0000 |"
