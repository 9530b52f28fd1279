"""Accuracy metrics vs brute-force references and hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from divrec.metrics import RankingEvaluator
from tests.metrics import KS, evaluate, random_case, user_mean

ACC = ["recall", "ndcg", "mrr", "hit", "precision", "f1"]


def ref_user(name: str, lst: list[int], truth: set[int], k: int) -> float:
    """One user's metric, written with plain loops over list positions."""
    top = lst[:k]
    n_hit = sum(1 for i in top if i in truth)
    if name == "recall":
        return n_hit / len(truth)
    if name == "precision":
        return n_hit / k
    if name == "hit":
        return 1.0 if n_hit > 0 else 0.0
    if name == "f1":
        p, r = n_hit / k, n_hit / len(truth)
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)
    if name == "mrr":
        for rank, item in enumerate(top, start=1):
            if item in truth:
                return 1.0 / rank
        return 0.0
    if name == "ndcg":
        dcg = 0.0
        for rank, item in enumerate(top, start=1):
            if item in truth:
                dcg += 1.0 / math.log2(rank + 1)
        idcg = 0.0
        for rank in range(1, min(len(truth), k) + 1):
            idcg += 1.0 / math.log2(rank + 1)
        return dcg / idcg
    raise AssertionError(name)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_accuracy_matches_brute_force(seed: int) -> None:
    case = random_case(seed)
    got = evaluate(case, ACC)
    users = [u for u, t in enumerate(case.truths) if t]  # empty truths are skipped
    assert got["test/n_users"] == len(users)
    assert got["test/n_skipped_users"] == len(case.truths) - len(users)
    assert any(len(case.truths[u]) > max(KS) for u in users)  # the case covers |truth| > K
    for name in ACC:
        for k in KS:
            want = user_mean([ref_user(name, case.lists[u], case.truths[u], k) for u in users])
            assert got[f"test/{name}@{k}"] == pytest.approx(want, abs=1e-6), (name, k)


def _one_user(lst: list[int], truth: set[int], metrics: list[str], ks: list[int]) -> dict:
    """Evaluate a single user over a 6-item catalogue with no categories."""
    n = 6
    ev = RankingEvaluator(metrics, ks, torch.zeros(n, 2), torch.ones(n), n_train_users=3)
    t = torch.zeros(1, n, dtype=torch.bool)
    t[0, sorted(truth)] = True
    ev.update(torch.tensor([lst]), t, torch.tensor([0]))
    return ev.compute()


def test_ndcg_hand() -> None:
    # hits at ranks 1 and 3, 2 truth items: (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309
    got = _one_user([0, 1, 2, 3], {0, 2}, ["ndcg"], [3])
    assert got["test/ndcg@3"] == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)), abs=1e-9)
    # @1: one hit at rank 1, IDCG over min(2, 1) = 1 item -> 1
    assert _one_user([0, 1, 2, 3], {0, 2}, ["ndcg"], [1])["test/ndcg@1"] == pytest.approx(1.0)


def test_recall_precision_f1_hand() -> None:
    # top-3 [0, 1, 2], truth {0, 2, 4, 5}: 2 hits -> R = 2/4, P = 2/3, F1 = 2PR/(P+R) = 4/7
    got = _one_user([0, 1, 2, 3], {0, 2, 4, 5}, ["recall", "precision", "f1"], [3])
    assert got["test/recall@3"] == pytest.approx(0.5)
    assert got["test/precision@3"] == pytest.approx(2 / 3)
    assert got["test/f1@3"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert got["test/f1@3"] == pytest.approx(4 / 7)


def test_mrr_hit_hand() -> None:
    # first hit at rank 2 -> MRR 1/2 for k >= 2; none within top-1 -> MRR@1 = 0, hit@1 = 0
    got = _one_user([0, 1, 2, 3], {1, 3}, ["mrr", "hit"], [1, 2, 4])
    assert got["test/mrr@1"] == 0.0
    assert got["test/mrr@2"] == pytest.approx(0.5)
    assert got["test/mrr@4"] == pytest.approx(0.5)  # later hit at rank 4 does not count
    assert got["test/hit@1"] == 0.0
    assert got["test/hit@2"] == 1.0


def test_no_hit_user_scores_zero() -> None:
    got = _one_user([0, 1, 2], {4, 5}, ["recall", "ndcg", "mrr", "hit", "precision", "f1"], [3])
    assert all(got[f"test/{m}@3"] == 0.0 for m in ACC)
    assert got["test/n_users"] == 1.0
