"""``recommend()`` with an ANN index (``serve.ann``) on a tiny trained run: the same frame as
exact scoring, the index saved in the run folder and reused, the recall line, the CLI flag."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

import divrec.serve.recommend as recommend_mod
from divrec.errors import ConfigError
from divrec.serve.recommend import load_model, main, recommend
from divrec.serve.retrieval import open_for_model, rank_with_index
from tests.test_recommend import _run

pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install faiss-cpu)")

# 300 items: nlist = 300 // 39 = 7 lists, all scanned (nprobe 48 > 7), so the index is exact.
IVF = {"kind": "ivf", "recall_queries": 50}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir, shared_cache):
    return _run(tmp_path_factory, tiny_model_dir, shared_cache, "model.user_tower=history")


@pytest.fixture(scope="module")
def models(run):
    exact = load_model(run)  # auto: 300 items < min_items -> exact
    assert exact.ann is None
    return exact, load_model(run, ann=IVF)


@pytest.mark.parametrize(
    ("rerank", "diversity"), [("none", 0.0), ("mmr", 0.5), ("dpp", 0.5), ("xquad", 0.5)]
)
def test_index_frame_equals_exact_frame(models, rerank, diversity, monkeypatch):
    exact, ann = models
    used = []

    def spy(*args, **kwargs):
        used.append(rank_with_index(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(recommend_mod, "rank_with_index", spy)
    assert ann.ann is not None and ann.ann.kind == "ivf"
    ids = exact.dm.catalogue.item_ids
    for history in ([ids[3], ids[50], ids[120]], list(ids[:40]), [ids[299]]):
        a = recommend(exact, history, k=10, rerank=rerank, diversity=diversity)
        b = recommend(ann, history, k=10, rerank=rerank, diversity=diversity)
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5, rtol=1e-5)
        assert not set(b.item_id) & set(history)
    assert len(used) == 3 and all(u is not None for u in used)  # the index path answered


def test_index_with_call_time_items_and_run_users(models):
    exact, ann = models
    dm = exact.dm
    extra = dm.dataset.items.iloc[[4, 5]].copy()
    extra["item_id"] = ["cold-a", "cold-b"]
    history = [dm.catalogue.item_ids[4], dm.catalogue.item_ids[9]]  # cold-a is item 4's twin
    a = recommend(exact, history, k=8, catalogue=extra)
    b = recommend(ann, history, k=8, catalogue=extra)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5, rtol=1e-5)
    assert "cold-a" in set(b.item_id)
    user = dm.user_ids[7]
    pd.testing.assert_frame_equal(
        recommend(exact, user=user, k=10),
        recommend(ann, user=user, k=10),
        check_exact=False,
        atol=1e-5,
        rtol=1e-5,
    )


def test_index_is_saved_in_the_run_and_reused(run, models, caplog):
    _, ann = models
    assert (run / "ann" / "ivf.faiss").is_file() and (run / "ann" / "ivf.json").is_file()
    caplog.set_level(logging.INFO, logger="divrec.serve.ann")
    again = load_model(run, ann=IVF)
    line = again.ann.summary
    assert "ANN ivf index over 300 items" in line and " loaded in " in line
    assert "recall@100 vs exact 1.000 on 50 users" in line
    assert line in caplog.text


def test_cli_flag_prints_the_recall_line(run, models, capsys):
    ids = models[0].dm.catalogue.item_ids
    args = ["--checkpoint", str(run), "--history", f"{ids[3]},{ids[50]}", "--k", "3"]
    assert main([*args, "--ann", "ivf"]) == 0
    err = capsys.readouterr().err
    assert "ANN ivf index over 300 items" in err and "recall@100 vs exact" in err


def test_target_aware_pooling_refuses_an_explicit_index(models, monkeypatch):
    exact, _ = models
    monkeypatch.setattr(exact.module.net.pool, "target_aware", True)  # e.g. additive pooling
    with pytest.raises(ConfigError, match=r"serve\.ann\.kind=ivf: needs inner-product scoring"):
        open_for_model(exact, "ivf")
    assert open_for_model(exact, {"kind": "auto", "min_items": 1}) is None  # auto: exact
