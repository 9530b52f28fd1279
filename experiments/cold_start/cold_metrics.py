"""Cold-item metrics from run folders alone (recommendations.parquet + the saved split).

Usage: python experiments/cold_start/cold_metrics.py FOLDER [MODEL ...]
FOLDER holds one run folder per model (default: two_tower text_only bpr pop); prints a
markdown table: overall test NDCG/recall@10 from metrics.json, and recall@K restricted to the
test interactions with cold items (items held out of training by the cold_start_items split).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def cold_row(run: Path) -> tuple[dict, str]:
    m = json.loads((run / "metrics.json").read_text())
    cold = set(json.loads((run / "split" / "split.json").read_text())["cold_items"])
    test = pd.read_parquet(run / "split" / "test.parquet")
    recs = pd.read_parquet(run / "recommendations.parquet")
    cold_test = test[test.item_id.isin(cold)]
    per_user = cold_test.groupby("user_id").size()
    row = {
        "model": run.name,
        "ndcg@10 (all)": m["test/ndcg@10"],
        "recall@10 (all)": m["test/recall@10"],
    }
    for k in (10, 100):
        hits = recs[recs["rank"] <= k].merge(cold_test, on=["user_id", "item_id"])
        got = hits.groupby("user_id").size().reindex(per_user.index, fill_value=0)
        row[f"cold recall@{k}"] = float((got / per_user).mean())
    row["cold share of top-10"] = float(recs[recs["rank"] <= 10].item_id.isin(cold).mean())
    row["wall s"] = m["meta"]["wall_time_s"]
    info = (
        f"{len(cold)} cold items; {len(cold_test)} of {len(test)} test interactions are with "
        f"cold items, from {cold_test.user_id.nunique()} users"
    )
    return row, info


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    models = argv[1:] or ["two_tower", "text_only", "bpr", "pop"]
    rows, info = [], ""
    for name in models:
        row, info = cold_row(folder / name)
        rows.append(row)
    cols = list(rows[0])
    print(info + "\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for r in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
