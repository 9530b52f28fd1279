"""``data.categories_from=clusters``: k-means categories for a catalogue without a taxonomy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from divrec.data.clusters import (
    check_cluster_args,
    cluster_key,
    cluster_names,
    kmeans_labels,
    one_hot,
)
from divrec.errors import ConfigError
from divrec.run.build import build_datamodule
from divrec.run.train import train


def _blobs(order: list[int], dim: int = 8, noise: float = 0.01, seed: int = 0) -> torch.Tensor:
    """One vector per entry of ``order``: a small perturbation of basis direction ``order[i]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.eye(dim)[order] * 5.0  # scale is irrelevant: rows are normalised
    return x + noise * torch.randn(len(order), dim, generator=g)


def test_kmeans_recovers_separated_groups_numbered_by_first_occurrence():
    order = [3, 3, 0, 5, 0, 3, 5, 5, 0]  # three directions, first seen in the order 3, 0, 5
    labels = kmeans_labels(_blobs(order), 3, seed=1)
    assert labels.dtype == torch.int64
    assert labels.tolist() == [0, 0, 1, 2, 1, 0, 2, 2, 1]


def test_kmeans_is_seeded_and_keyed_by_content_k_and_seed():
    x = torch.randn(60, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(kmeans_labels(x, 5, 7), kmeans_labels(x, 5, 7))
    keys = {
        cluster_key(x, 5, 7),
        cluster_key(x, 6, 7),
        cluster_key(x, 5, 8),
        cluster_key(x + 1, 5, 7),
    }
    assert len(keys) == 4
    assert cluster_key(x.clone(), 5, 7) == cluster_key(x, 5, 7)


def test_cluster_names_use_the_clusters_distinctive_words():
    labels = torch.tensor([0, 0, 1, 1, 2])
    titles = ["Red candle holder", "White candle holder", "Blue mug", "Green mug", "12345"]
    names = cluster_names(labels, titles, 4)
    assert names[0] == "c0 candle, holder"
    assert names[1].startswith("c1 mug")
    assert names[2] == "c2 12345"  # digits are words to TF-IDF
    assert names[3] == "c3"  # no item in it
    assert cluster_names(labels, ["", "", "", "", ""], 3) == ["c0", "c1", "c2"]


def test_one_hot():
    assert one_hot(torch.tensor([1, 0, 1]), 3).tolist() == [[0, 1, 0], [1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize(
    "args, match",
    [
        (("taxonomy", 5, 0), r"^data.categories_from='taxonomy': expected one of"),
        (("clusters", 1, 0), r"^data.n_clusters=1: must be an integer >= 2"),
        (("clusters", True, 0), r"^data.n_clusters=True"),
        (("clusters", 4, "x"), r"^data.cluster_seed='x': must be an integer"),
    ],
)
def test_bad_cluster_args_are_one_line(args, match):
    with pytest.raises(ConfigError, match=match):
        check_cluster_args(*args)


def test_more_clusters_than_items_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.n_clusters=9: the catalogue has only 4 items"):
        kmeans_labels(torch.randn(4, 3), 9, 0)


def _shop_without_taxonomy(root: Path, n_users: int = 30) -> Path:
    """A CSV shop of three product families (no categories column); users buy in one family."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    fam = {"candle": "Scented candle", "mug": "Ceramic coffee mug", "bag": "Jute shopping bag"}
    items = [(f"{f}{j}", f"{t} model {j}") for f, t in fam.items() for j in range(8)]
    (root / "items.csv").write_text(
        "item_id,title\n" + "\n".join(f"{i},{t}" for i, t in items) + "\n"
    )
    rows = []
    for u in range(n_users):
        f = list(fam)[u % 3]
        for t, j in enumerate(rng.choice(8, size=6, replace=False)):
            rows.append(f"u{u},{f}{j},1,{t}")
    (root / "interactions.csv").write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows))
    return root


@pytest.fixture
def shop_cfg(compose, tmp_path):
    folder = _shop_without_taxonomy(tmp_path / "data")
    return lambda *o: compose("data=csv", f"data.path={folder}", *o)


def test_clusters_give_a_catalogue_categories_cached_with_the_embeddings(shop_cfg, caplog):
    cfg = shop_cfg("data.categories_from=clusters", "data.n_clusters=3")
    with caplog.at_level("INFO", logger="divrec"):
        dm = build_datamodule(cfg)
    cat = dm.catalogue
    assert cat.category_matrix.shape == (24, 3) and cat.n_categories == 3
    assert torch.equal(cat.category_matrix.sum(1), torch.ones(24))  # one cluster per item
    assert dm.stats["categories"] == 3 and dm.stats["categories_from"] == "clusters"
    assert any(
        "3 clusters of the item text vectors (computed)" in r.getMessage() for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level("INFO", logger="divrec"):
        again = build_datamodule(cfg)
    assert any("(cached)" in r.getMessage() for r in caplog.records)
    assert torch.equal(again.catalogue.category_matrix, cat.category_matrix)
    assert again.catalogue.category_names == cat.category_names
    # k-means on another seed or K is another cache entry, not the first one's labels
    other = build_datamodule(shop_cfg("data.categories_from=clusters", "data.n_clusters=4"))
    assert other.catalogue.category_matrix.shape == (24, 4)


def test_a_run_on_clusters_logs_category_metrics_and_allows_xquad(shop_cfg, tmp_path):
    cfg = shop_cfg(
        "data.categories_from=clusters", "data.n_clusters=3", "rerank=xquad", "rerank.diversity=0.5"
    )
    train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok"
    assert 0.0 <= m["test/ild_cat@10"] <= 1.0 and 0.0 < m["test/cat_coverage@10"] <= 1.0


def test_source_categories_are_the_default(shop_cfg):
    dm = build_datamodule(shop_cfg())
    assert dm.catalogue.n_categories == 0 and dm.categories_from == "source"


def test_config_check_names_a_bad_categories_from_before_loading(compose):
    from divrec.config.check import validate_config

    with pytest.raises(ConfigError, match=r"data.categories_from.*clusters"):
        validate_config(compose("data.categories_from=taxonomy"))
