"""CF scoring variants against direct loops, explanations, and every variant through Hydra."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from divrec.errors import ConfigError
from divrec.models.cf import (
    CFContext,
    CFScorer,
    Query,
    item_based_scores,
    item_neighbours,
    train_matrix,
    user_based_scores,
)
from divrec.models.pooling import AdditivePooling, MeanPooling
from divrec.run.build import build_datamodule, build_module
from divrec.run.train import train
from tests.conftest import ROOT


def group_override(name: str, option: str) -> str:
    """``model/<name>=<option>``, or ``+model/...`` while two_tower.yaml lacks the default."""
    in_defaults = f"- {name}:" in (ROOT / "conf" / "model" / "two_tower.yaml").read_text()
    return f"{'' if in_defaults else '+'}model/{name}={option}"


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


ITEMS = _unit(8, 4, seed=0)  # 8 items in 4-d
HIST = torch.tensor([[1, 3, 5], [2, 0, 0]])
MASK = torch.tensor([[True, True, True], [True, False, False]])
WEIGHTS = torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]])


def test_item_neighbours_are_the_most_similar_other_items():
    idx, sim = item_neighbours(ITEMS, 3, chunk=3)
    for i in range(8):
        others = sorted((j for j in range(8) if j != i), key=lambda j: -float(ITEMS[i] @ ITEMS[j]))
        assert idx[i].tolist() == others[:3]
        torch.testing.assert_close(sim[i], ITEMS[others[:3]] @ ITEMS[i])


@pytest.mark.parametrize("top_n", [None, 2])
def test_item_based_matches_loop(top_n):
    nb = item_neighbours(ITEMS, top_n) if top_n else None
    scores = item_based_scores(WEIGHTS, HIST, MASK, ITEMS, nb)
    for b in range(2):
        for i in range(8):
            expected = 0.0
            for h in range(3):
                j = int(HIST[b, h])
                if not MASK[b, h]:
                    continue
                sims = {o: float(ITEMS[j] @ ITEMS[o]) for o in range(8) if o != j}
                kept = sorted(sims, key=lambda o: -sims[o])[:top_n] if top_n else range(8)
                if i in kept:
                    expected += float(WEIGHTS[b, h]) * float(ITEMS[j] @ ITEMS[i])
            assert scores[b, i].item() == pytest.approx(expected, abs=1e-6)


def _user_ctx():
    users = _unit(5, 4, seed=1)
    # user 4 has no training interaction; (0, 2) appears twice: r stays 1.
    pairs = [(0, 2), (0, 2), (0, 6), (1, 6), (1, 7), (2, 1), (3, 6), (3, 0)]
    u = torch.tensor([p[0] for p in pairs])
    i = torch.tensor([p[1] for p in pairs])
    ctx = CFContext(
        ITEMS,
        users=users,
        active=torch.bincount(u, minlength=5) > 0,
        interactions=train_matrix(u, i, 5, 8),
    )
    return ctx, {(a, b) for a, b in pairs}


@pytest.mark.parametrize("normalise", [False, True])
def test_user_based_matches_loop(normalise):
    ctx, pairs = _user_ctx()
    q_vecs = torch.cat([ctx.users[:2], _unit(1, 4, seed=2)])  # users 0, 1 and a fresh user
    q_users = torch.tensor([0, 1, -1])
    k = 2
    scores = user_based_scores(q_vecs, q_users, ctx, k, normalise)
    for b in range(3):
        cands = [v for v in range(5) if v != int(q_users[b]) and v != 4]  # self, inactive out
        cos = {v: float(q_vecs[b] @ ctx.users[v]) for v in cands}
        nbrs = sorted(cands, key=lambda v: -cos[v])[:k]
        for i in range(8):
            expected = sum(cos[v] * ((v, i) in pairs) for v in nbrs)
            if normalise:
                expected /= sum(abs(cos[v]) for v in nbrs)
            assert scores[b, i].item() == pytest.approx(expected, abs=1e-6)


def test_hybrid_is_the_weighted_sum_of_its_parts():
    ctx, _ = _user_ctx()
    net = SimpleNamespace(user_tower="history", pool=MeanPooling())
    q = Query(HIST, MASK, ctx.users[:2], WEIGHTS, torch.tensor([0, 1]))
    w = {"two_tower": 1.0, "item_based": 0.5, "user_based": 0.25}
    scores = CFScorer("hybrid", weights=w, k=2).score(net, q, ctx)
    expected = (
        1.0 * (q.user_vecs @ ITEMS.T)
        + 0.5 * item_based_scores(WEIGHTS, HIST, MASK, ITEMS)
        + 0.25 * user_based_scores(q.user_vecs, q.users, ctx, 2, normalise=True)
    )
    torch.testing.assert_close(scores, expected)
    for name in ("two_tower", "item_based", "user_based"):  # the single variants
        alone = CFScorer(name, k=2).score(net, q, ctx)
        part = CFScorer("hybrid", weights={name: 1.0}, k=2).components(net, q, ctx, {name})[name]
        if name != "user_based":  # the hybrid rescales the user-based part only
            torch.testing.assert_close(alone, part)


def test_hybrid_under_bf16_autocast_matches_float32():
    """Mixed precision (trainer=gpu runs eval under bf16 autocast): dtypes must line up."""
    ctx, _ = _user_ctx()
    ctx.neighbours = item_neighbours(ITEMS, 3)
    net = SimpleNamespace(user_tower="history", pool=MeanPooling())
    q = Query(HIST, MASK, ctx.users[:2], WEIGHTS, torch.tensor([0, 1]))
    cf = CFScorer("hybrid", top_n=3, k=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = cf.score(net, q, ctx)
    torch.testing.assert_close(low.float(), cf.score(net, q, ctx), atol=0.05, rtol=0.05)
    pool = AdditivePooling(dim=4, attn_dim=3, hidden=3, chunk_elems=20)  # target-aware path
    net = SimpleNamespace(user_tower="history", pool=pool, history_values=lambda h, users: h)
    cf = CFScorer("hybrid", weights={"two_tower": 1.0, "item_based": 1.0}, top_n=3)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = cf.score(net, q, ctx)
        torch.testing.assert_close(low.float(), cf.score(net, q, ctx), atol=0.05, rtol=0.05)


def test_learned_hybrid_has_three_positive_weights():
    cf = CFScorer("hybrid", learn=True, weights={"two_tower": 1.0, "item_based": 0.5})
    mix = cf.mix()
    assert sorted(mix) == ["item_based", "two_tower", "user_based"]
    # weights start at w * 20 (user_based: the 1e-3 floor * 20)
    assert [
        round(float(mix[c].detach()), 4) for c in ("two_tower", "item_based", "user_based")
    ] == [
        20.0,
        10.0,
        0.02,
    ]
    assert cf.log_mix.requires_grad


@pytest.mark.parametrize("top_n", [None, 3])
def test_target_aware_two_tower_and_item_based_match_loop(top_n):
    torch.manual_seed(0)
    pool = AdditivePooling(dim=4, attn_dim=3, hidden=3, chunk_elems=20)
    torch.nn.init.normal_(pool.fc2.weight)
    head = torch.nn.Linear(4, 4)
    net = SimpleNamespace(user_tower="history", pool=pool, history_values=lambda h, users: head(h))
    ctx = CFContext(ITEMS, neighbours=item_neighbours(ITEMS, top_n) if top_n else None)
    q = Query(HIST, MASK, torch.zeros(2, 4), WEIGHTS, None)
    with torch.no_grad():
        tt = CFScorer("two_tower").score(net, q, ctx)
        ib = CFScorer("item_based", top_n=top_n).score(net, q, ctx)
        for b in range(2):
            h = ITEMS[HIST[b]]
            for i in range(8):
                a = pool.candidate_weights(h[None], MASK[b : b + 1], ITEMS[i].view(1, 1, -1))[0, 0]
                u = (a[:, None] * head(h)).sum(0)
                assert tt[b, i].item() == pytest.approx(
                    F.cosine_similarity(u, ITEMS[i], 0).item(), abs=1e-5
                )
                expected = 0.0
                for pos in range(3):
                    j = int(HIST[b, pos])
                    if top_n and i not in ctx.neighbours[0][j].tolist():
                        continue
                    expected += float(a[pos]) * float(ITEMS[j] @ ITEMS[i])
                assert ib[b, i].item() == pytest.approx(expected, abs=1e-5)


def test_cf_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.cf.name"):
        CFScorer("svd")
    with pytest.raises(ConfigError, match="model.cf.weights"):
        CFScorer("hybrid", weights={"two_tower": 1.0, "pop": 1.0})
    with pytest.raises(ConfigError, match="model.cf.weights"):
        CFScorer("hybrid", weights={"two_tower": 0.0})
    with pytest.raises(ConfigError, match="model.cf.top_n"):
        CFScorer("item_based", top_n=0)


# ---------------------------------------------------------------- through Hydra
VARIANT_RUNS = [
    ("two_tower", "mean"),
    ("item_based", "similarity"),
    ("user_based", "multihead"),
    ("hybrid", "mean"),
]  # two_tower + additive: test_because_column_in_recommendations_parquet


@pytest.mark.parametrize(("cf", "pooling"), VARIANT_RUNS)
def test_variant_trains_and_evaluates_through_hydra(compose, tmp_path, cf, pooling):
    extra = ("model.cf.learn=true",) if cf == "hybrid" else ()
    cfg = compose(
        "model.user_tower=history",
        group_override("cf", cf),
        group_override("pooling", pooling),
        "trainer.limit_train_batches=2",
        *extra,
    )
    assert cfg.model.cf.name == cf and cfg.model.pooling.name == pooling
    train(cfg)
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok", m["meta"]["error"]
    assert 0.0 <= m["test/ndcg@10"] <= 1.0 and m["best/val/ndcg@10"] is not None
    recs = pd.read_parquet(run / "recommendations.parquet")
    assert recs.groupby("user_id")["rank"].max().eq(100).all()


def _fitted(compose, *overrides):
    cfg = compose(*overrides)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    return dm, module


BECAUSE = re.compile(r"^because you liked: .+ \((\d\.\d\d)\)(, .+ \((\d\.\d\d)\))*$")


def _rows(module):
    users = torch.cat([r[0] for r in module.recommendations]).tolist()
    tops = torch.cat([r[1] for r in module.recommendations]).tolist()
    return users, tops


def _explain_weights(pooling: str, items: torch.Tensor, hist: list[int], i: int) -> dict:
    """History item -> explanation weight for recommended item ``i``, from the formulas."""
    if pooling == "mean":  # non-attentive: cos(v_j, v_i) per recommended item i
        return {j: float(items[j] @ items[i]) for j in hist}
    mean = items[hist].mean(0)  # the seed's clamp weights, the same for every item i
    s = {j: max(0.0, F.cosine_similarity(mean, items[j], 0).item()) for j in hist}
    return {j: s[j] / sum(s.values()) for j in hist}


@pytest.mark.parametrize("pooling", ["mean", "similarity"])
def test_explanations_match_direct_weights(compose, pooling):
    dm, module = _fitted(compose, "model.user_tower=history", group_override("pooling", pooling))
    users, tops = _rows(module)
    assert len(module.because) == len(users) and all(len(b) == 100 for b in module.because)
    module.eval()
    with torch.no_grad():
        items = module.net.all_item_vectors()
    titles = dm.catalogue.titles
    for row in (0, len(users) // 2, len(users) - 1):
        u = users[row]
        hist = dm.history.recent[u][dm.history.recent_mask[u]].tolist()
        for pos in (0, 1, 99):
            i = tops[row][pos]
            w = _explain_weights(pooling, items, hist, i)
            best = sorted(hist, key=lambda j: -w[j])[:3]  # noqa: B023
            expected = "because you liked: " + ", ".join(f"{titles[j]} ({w[j]:.2f})" for j in best)
            assert module.because[row][pos] == expected
            assert BECAUSE.match(expected)


def test_because_column_in_recommendations_parquet(compose, tmp_path):
    """The target-aware pooling end to end (training + full-catalogue scoring + explanations)."""
    train(
        compose(
            "model.user_tower=history",
            group_override("pooling", "additive"),
            "model.pooling.hidden=8",
            "model.pooling.attn_dim=8",
            "trainer.limit_train_batches=2",
        )
    )
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok" and 0.0 <= m["test/ndcg@10"] <= 1.0
    recs = pd.read_parquet(tmp_path / "run" / "recommendations.parquet")
    assert "because" in recs.columns, (
        "divrec/train.py must pass because=module.because to recommendations_frame"
    )
    assert recs["because"].map(lambda s: bool(BECAUSE.match(s))).all()
    weights = recs["because"].str.findall(r"\((\d\.\d\d)\)").map(lambda w: [float(x) for x in w])
    assert weights.map(lambda w: len(w) == 3 and w == sorted(w, reverse=True)).all()


@pytest.mark.parametrize(
    ("name", "key", "values"),
    [
        ("cf_variants", "model/cf", ["two_tower", "item_based", "user_based", "hybrid"]),
        ("attention_pooling", "model/pooling", ["mean", "similarity", "additive", "multihead"]),
    ],
)
def test_experiments_sweep_every_option(name, key, values):
    group = key.split("/")[1]
    for value in values:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = hydra_compose(
                config_name="train",
                overrides=[f"+experiment={name}", group_override(group, value)],
                return_hydra_config=True,
            )
        assert cfg.group == name and cfg.model.user_tower == "history"
        assert cfg.model[group].name == value
        assert cfg.hydra.sweeper.params[key].split(",") == values
