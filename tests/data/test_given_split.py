"""``data.split.method=given``: held-out rows that evaluation masks as seen leave the truth.

A hand-made catalogue of six items with strictly ordered training popularity (A 5, B 4, C 3,
D 2, E 1, F 0) and the ``pop`` baseline, whose lists are then known by hand.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from divrec.data.split import given_split
from divrec.run.train import train

TRAIN = {"u1": "AB", "u2": "AB", "u3": "ABC", "u4": "ABCD", "u5": "ACDE"}
VALID = {"u1": "BE"}  # B is in u1's train
TEST = {"u1": "AEC", "u2": "B", "u3": "DF", "u4": "F", "u5": "B"}  # u1 A, u2 B: train; u1 E: valid


def _frame(rows: dict[str, str]) -> pd.DataFrame:
    pairs = [(u, i) for u, items in rows.items() for i in items]
    return pd.DataFrame(pairs, columns=["user_id", "item_id"])


def _files(folder) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    items = pd.DataFrame({"item_id": list("ABCDEF"), "title": [f"item {c}" for c in "ABCDEF"]})
    items["categories"] = ["x", "y", "x", "y", "x", "y"]
    items.to_csv(folder / "items.csv", index=False)
    _frame(TRAIN).to_csv(folder / "interactions.csv", index=False)
    out = {}
    for name, rows in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        out[name] = str(folder / f"{name}.csv")
        _frame(rows).to_csv(out[name], index=False)
    return out


def test_overlapping_truth_rows_are_dropped_and_counted(tmp_path, caplog):
    f = _files(tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="divrec.data.split"):
        split, stats = given_split(f["train"], f["valid"], f["test"], set("ABCDEF"))
    assert stats == {"split/dropped_overlap_valid": 1, "split/dropped_overlap_test": 3}
    assert sorted(zip(split.valid["user_id"], split.valid["item_id"], strict=True)) == [("u1", "E")]
    want = [("u1", "C"), ("u3", "D"), ("u3", "F"), ("u4", "F"), ("u5", "B")]
    assert sorted(zip(split.test["user_id"], split.test["item_id"], strict=True)) == want
    assert len(split.train) == sum(map(len, TRAIN.values()))
    assert sum("dropped 1 valid row(s)" in r.getMessage() for r in caplog.records) == 1


def test_recall_on_a_given_split_counts_only_rankable_truth(compose_source, tmp_path):
    f = _files(tmp_path / "data")
    cfg = compose_source(
        "data=csv",
        f"data.path={tmp_path / 'data'}",
        "data.split.method=given",
        *(f"data.split.{p}_file={path}" for p, path in f.items()),
        "model=pop",
        "eval.ks=[2]",
        "eval.save_topk=2",
        "eval.metrics=[recall]",
    )
    train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Top-2 of pop after masking train + valid: u1 {C, D} vs {C}: 1; u3 {D, E} vs {D, F}: 1/2;
    # u4 {E, F} vs {F}: 1; u5 {B, F} vs {B}: 1. u2's only test row (B) was in train: no user.
    # (Keeping the masked rows would give (1/3 + 0 + 1/2 + 1 + 1) / 5 = 0.567.)
    assert m["test/n_users"] == 4
    assert m["test/recall@2"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    stats = m["meta"]["data_stats"]
    assert stats["split/dropped_overlap_valid"] == 1 and stats["split/dropped_overlap_test"] == 3
