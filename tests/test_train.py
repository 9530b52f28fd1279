"""End-to-end runs through Hydra's compose API on the tiny BERT and a small shop_sim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divrec.run.train import train


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("finetune", ["frozen", "top_layers", "lora", "full"])
def test_one_run_per_finetune_mode(compose, tmp_path, finetune):
    cfg = compose(f"model.encoder.finetune={finetune}", "trainer.limit_train_batches=2")
    value = train(cfg)
    run = tmp_path / "run"
    m = _metrics(run)
    assert m["meta"]["status"] == "ok"
    assert math.isfinite(value) and value == pytest.approx(m["best/val/ndcg@10"])
    for key in ("test/ndcg@10", "test/recall@20", "test/ild_cat@10", "test/gini@10"):
        assert m[key] is not None and 0.0 <= m[key] <= 1.0, key
    assert (run / "recommendations.parquet").exists()


@pytest.mark.parametrize(
    ("finetune", "rerank"), [("frozen", "mmr"), ("frozen", "dpp"), ("lora", "none")]
)
def test_bf16_mixed_with_gradient_clipping_trains(compose, tmp_path, finetune, rerank):
    """bf16 autocast (the GPU default, an option on CPU) with the default gradient clipping
    (Lightning refuses clipping with a fused optimizer under mixed precision) and re-ranking
    (autocast must not reach the fp32 re-rankers and metrics)."""
    cfg = compose(
        f"model.encoder.finetune={finetune}",
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=1.0",
        "trainer.limit_train_batches=2",
        f"rerank={rerank}",
        *(["rerank.diversity=0.5"] if rerank != "none" else []),
    )
    assert math.isfinite(train(cfg))
    assert _metrics(tmp_path / "run")["meta"]["status"] == "ok"


def test_recommendations_reproduce_logged_ndcg(compose, tmp_path):
    """Recompute NDCG@10 from recommendations.parquet and the saved test split alone."""
    train(compose())
    run = tmp_path / "run"
    recs = pd.read_parquet(run / "recommendations.parquet")
    test = pd.read_parquet(run / "split" / "test.parquet")
    truth = test.groupby("user_id")["item_id"].apply(set).to_dict()
    assert recs.groupby("user_id")["rank"].max().eq(100).all()
    seen = pd.concat([pd.read_parquet(run / "split" / f"{p}.parquet") for p in ("train", "valid")])
    seen_pairs = set(zip(seen["user_id"], seen["item_id"], strict=True))
    assert not any((u, i) in seen_pairs for u, i in zip(recs.user_id, recs.item_id, strict=True))
    ndcgs = []
    for user, items in truth.items():
        top = recs[recs.user_id == user].sort_values("rank").item_id.tolist()[:10]
        dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(top) if i in items)
        idcg = sum(1.0 / np.log2(r + 2) for r in range(min(len(items), 10)))
        ndcgs.append(dcg / idcg)
    assert float(np.mean(ndcgs)) == pytest.approx(_metrics(run)["test/ndcg@10"], abs=1e-5)


def test_second_run_reuses_caches(compose, tmp_path):
    cache = tmp_path / "fresh-cache"
    train(compose(cache=cache))
    first = _metrics(tmp_path / "run")["meta"]["data_stats"]
    assert first["cache/embeddings_hit"] is False and first["cache/tokens_hit"] is False
    train(compose(cache=cache))
    second = _metrics(tmp_path / "run")["meta"]["data_stats"]
    assert second["cache/embeddings_hit"] is True and second["cache/tokens_hit"] is True


def test_history_tower_with_id_embeddings(compose, tmp_path):
    train(compose("model.user_tower=history", "model.id_embeddings=true"))
    m = _metrics(tmp_path / "run")
    assert m["meta"]["status"] == "ok" and m["test/ndcg@10"] is not None


def test_default_text_and_id_hybrid(compose, tmp_path):
    train(compose("model.id_embeddings=true"))
    m = _metrics(tmp_path / "run")
    assert m["meta"]["status"] == "ok" and 0.0 <= m["test/ndcg@10"] <= 1.0


def test_given_split_reproduces_the_run_it_came_from(compose, tmp_path):
    """Train on a random split, hand its saved files back as a `given` split: same metrics."""
    train(compose())
    first = _metrics(tmp_path / "run")
    files = {}
    for part in ("train", "valid", "test"):
        path = tmp_path / f"{part}.csv"
        pd.read_parquet(tmp_path / "run" / "split" / f"{part}.parquet").to_csv(path, index=False)
        files[part] = path
    train(
        compose(
            "data.split.method=given",
            f"data.split.train_file={files['train']}",
            f"data.split.valid_file={files['valid']}",
            f"data.split.test_file={files['test']}",
        )
    )
    second = _metrics(tmp_path / "run")
    assert second["meta"]["data_stats"]["split/method"] == "given"
    assert second["test/ndcg@10"] == pytest.approx(first["test/ndcg@10"], abs=1e-6)


def test_wandb_offline_run_has_config_metrics_and_table(compose, tmp_path, monkeypatch):
    """logger=wandb offline: one finished run holding the test metrics and the sample table."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from divrec.run.train import run

    run(compose("logger=wandb"))  # what train.py calls: train() inside try/finally
    assert wandb.run is None  # finished in run's finally
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    tables = list(runs[0].rglob("recommendations_*.table.json"))
    assert tables, "no recommendations table logged"
    table = json.loads(tables[0].read_text())
    assert table["columns"][:3] == ["user_id", "history", "recommended"] and table["data"]


def test_eval_users_without_training_history_are_counted(compose, tmp_path):
    """A test user with no training rows: the history tower still runs, and the user is counted."""
    train(compose())
    split = {
        p: pd.read_parquet(tmp_path / "run" / "split" / f"{p}.parquet")
        for p in ("train", "valid", "test")
    }
    gone = split["test"]["user_id"].iloc[0]
    split["train"] = split["train"][split["train"]["user_id"] != gone]
    files = {}
    for part, df in split.items():
        files[part] = tmp_path / f"{part}.csv"
        df.to_csv(files[part], index=False)
    train(
        compose(
            "model.user_tower=history",
            "data.split.method=given",
            *(f"data.split.{p}_file={f}" for p, f in files.items()),
        )
    )
    m = _metrics(tmp_path / "run")
    assert m["meta"]["status"] == "ok"
    assert m["meta"]["data_stats"]["split/eval_users_without_history"] == 1
    assert m["test/n_users"] == split["test"]["user_id"].nunique()
