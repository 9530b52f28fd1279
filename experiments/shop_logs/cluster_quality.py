"""How close are the k-means categories to the shop's true taxonomy? (shop_logs study)

``python -m experiments.shop_logs.cluster_quality [runs folder]``: builds the log's catalogue
with ``data.categories_from=clusters`` (cached vectors and labels) and compares the clusters
with shop_sim's true leaves and departments (``truth.json``, written by ``make_log.py``):
normalised mutual information and leaf purity (share of items in their cluster's most
common leaf).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from sklearn.metrics import normalized_mutual_info_score as nmi

from divrec.run.build import build_datamodule

COLUMNS = (
    "data.columns={user:CustomerID,item:StockCode,time:InvoiceDate,quantity:Quantity,"
    "invoice:InvoiceNo,price:UnitPrice,description:Description}"
)


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/shop_logs").resolve()
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=transactions",
                f"data.path={runs}/lines.csv.gz",
                COLUMNS,
                "data.time_format='%m/%d/%Y %H:%M'",
                "data.categories_from=clusters",
                f"paths.output_dir={runs}/cluster_quality",
            ],
        )
    cat = build_datamodule(cfg).catalogue
    truth = json.loads((runs / "truth.json").read_text())
    lab = cat.category_matrix.argmax(1).tolist()
    leaf = [truth[i] for i in cat.item_ids]
    dept = [t.split(" > ")[0] for t in leaf]
    groups = collections.defaultdict(collections.Counter)
    for lf, c in zip(leaf, lab, strict=True):
        groups[c][lf] += 1
    purity = sum(max(g.values()) for g in groups.values()) / len(lab)
    print(
        f"{len(groups)} clusters, {len(set(leaf))} true leaves: NMI vs leaf {nmi(leaf, lab):.3f}, "
        f"vs department {nmi(dept, lab):.3f}, leaf purity {purity:.3f}"
    )
    print("first names:", "; ".join(cat.category_names[:6]))


if __name__ == "__main__":
    main()
