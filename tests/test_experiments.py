"""Baselines in the harness and the diversity experiments, through Hydra's compose API."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from divrec.errors import ConfigError
from divrec.run.train import train
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["pop", "itemknn", "ease", "bpr", "lightgcn"])
def test_baselines_share_the_harness(compose, tmp_path, name):
    train(compose(f"model={name}", "trainer.limit_train_batches=3"))
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok"
    assert 0.0 <= m["test/ndcg@10"] <= 1.0 and m["val/ndcg@10"] is not None
    assert (run / "recommendations.parquet").exists()


def test_mmr_sweep_trains_once_and_writes_one_run_per_value(compose, tmp_path, monkeypatch):
    fits = []
    real_fit = pl.Trainer.fit
    monkeypatch.setattr(
        pl.Trainer, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k)
    )
    cfg = compose("+experiment=mmr_sweep", "rerank_sweep.values=[0.0,0.5,0.9]")
    train(cfg)
    assert len(fits) == 1
    runs = {
        p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "run").glob("*/metrics.json")
    }
    assert sorted(runs) == ["diversity=0.0", "diversity=0.5", "diversity=0.9"]
    for name, m in runs.items():
        assert m["meta"]["knobs"]["rerank.diversity"] == float(name.split("=")[1])
    # More MMR diversity buys embedding diversity (ILD over the same reference space).
    assert runs["diversity=0.9"]["test/ild_emb@10"] > runs["diversity=0.0"]["test/ild_emb@10"]


def test_mmr_sweep_zero_equals_no_rerank(compose, tmp_path):
    train(compose("+experiment=mmr_sweep", "rerank_sweep.values=[0.0]"))
    swept = json.loads((tmp_path / "run" / "diversity=0.0" / "metrics.json").read_text())
    train(compose())
    plain = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert swept["test/ndcg@10"] == pytest.approx(plain["test/ndcg@10"], abs=1e-6)


@pytest.mark.parametrize(
    "name", ["mmr_sweep", "dpp_sweep", "diversity_weight", "diversity_grid", "recbole_fixed"]
)
def test_experiment_configs_compose(name):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=[f"+experiment={name}"])
    assert cfg.group == name


@pytest.mark.parametrize("term", ["ils", "category_entropy", "dpp"])
def test_diversity_regulariser_increases_category_ild(compose, tmp_path, term):
    """Same seed, data and steps: lambda > 0 gives more category-diverse lists than 0.

    Uses the real frozen MiniLM (cached embeddings, 420 short texts): the random tiny BERT
    gives near-random, already maximally diverse lists, where no regulariser can show.
    """
    common = (
        "model.encoder.pretrained=minilm",
        f"loss/diversity={term}",
        "trainer.limit_train_batches=20",
        "trainer.max_epochs=2",
        "~callbacks.early_stopping",
        "seed=5",
    )
    if term == "ils":
        common = (*common, "loss.diversity.similarity=category")
    ild = {}
    for lam in (0.0, 2.0):
        train(compose(*common, f"loss.diversity_weight={lam}"))
        m = json.loads((tmp_path / "run" / "metrics.json").read_text())
        ild[lam] = m["test/ild_cat@10"]
    assert ild[2.0] > ild[0.0]


def test_recbole_protocol_composes_and_validates():
    from divrec.config.check import validate_config

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            config_name="train",
            overrides=["+protocol=recbole", "data=movielens", "paths.output_dir=/tmp/x"],
        )
    validate_config(cfg)
    assert cfg.data.preprocess.min_rating == 3.5 and cfg.data.preprocess.min_user_history == 5
    assert list(cfg.eval.ks) == [10, 20] and cfg.callbacks.model_checkpoint.monitor == "val/ndcg@10"


def test_rerank_sweep_names_evaluate_each_reranker_on_one_model(compose, tmp_path, monkeypatch):
    fits = []
    real_fit = pl.Trainer.fit
    monkeypatch.setattr(
        pl.Trainer, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k)
    )
    train(
        compose(
            "+experiment=mmr_sweep",
            "rerank_sweep.values=[0.0,0.9]",
            "+rerank_sweep.names=[mmr,dpp]",
        )
    )
    assert len(fits) == 1
    runs = {
        p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "run").glob("*/metrics.json")
    }
    assert sorted(runs) == [
        "name=dpp,diversity=0.0",
        "name=dpp,diversity=0.9",
        "name=mmr,diversity=0.0",
        "name=mmr,diversity=0.9",
    ]
    assert runs["name=dpp,diversity=0.9"]["meta"]["knobs"]["rerank.name"] == "dpp"
    # Diversity 0 is relevance order for both re-rankers: the same lists, the same metrics.
    assert runs["name=dpp,diversity=0.0"]["test/ndcg@10"] == pytest.approx(
        runs["name=mmr,diversity=0.0"]["test/ndcg@10"], abs=1e-9
    )
    # The two re-rankers at 0.9 pick different lists from the same scores.
    assert runs["name=dpp,diversity=0.9"]["test/ild_emb@10"] != pytest.approx(
        runs["name=mmr,diversity=0.9"]["test/ild_emb@10"], abs=1e-9
    )


def test_rerank_sweep_unknown_name_fails_before_training(compose):
    with pytest.raises(ConfigError, match="rerank_sweep.names"):
        train(compose("+experiment=mmr_sweep", "+rerank_sweep.names=[mmr,dp]"))


def _count_scores(monkeypatch) -> list[int]:
    from divrec.models.module import RecModule

    calls: list[int] = []
    real = RecModule.score
    monkeypatch.setattr(RecModule, "score", lambda self, b: calls.append(1) or real(self, b))
    return calls


def test_rerank_sweep_scores_the_catalogue_once(compose, monkeypatch):
    """Extra re-rank points reuse the scores of the first: the same number of score() calls."""
    calls = _count_scores(monkeypatch)
    train(compose("+experiment=mmr_sweep", "rerank_sweep.values=[0.0]"))
    one = len(calls)
    calls.clear()
    train(compose("+experiment=mmr_sweep", "rerank_sweep.values=[0.0,0.5,0.9]"))
    assert len(calls) == one > 0


def test_score_cache_is_dropped_when_the_weights_change(compose, monkeypatch):
    from divrec.run.build import build_datamodule, build_module

    cfg = compose()
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    calls = _count_scores(monkeypatch)
    first = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/ndcg@10"]
    n = len(calls)
    again = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/ndcg@10"]
    assert len(calls) == n and again == first  # same weights: cached scores, same metrics
    state = {
        k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v
        for k, v in module.state_dict().items()
    }
    module.load_state_dict(state, strict=False)
    changed = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/ndcg@10"]
    assert len(calls) == 2 * n and changed != first
