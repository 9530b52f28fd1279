"""Cold-item metrics (m_cold: the truth restricted to items without a training interaction)
vs a hand-computed example and a per-user loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from divrec.metrics import RankingEvaluator
from divrec.metrics.cold import COLD_METRICS

N = 6


def _evaluate(metrics, ks, lists, truth, popularity):
    ev = RankingEvaluator(metrics, ks, torch.zeros(N, 0), popularity, n_train_users=3)
    ev.update(lists, truth, torch.arange(len(lists)))
    return ev.compute()


def test_hand_example() -> None:
    """Items 4 and 5 are cold. User 0: truth {0, 4}, list [4, 1, 0]: one cold truth item, hit
    at rank 1. User 1: truth {5, 2}, list [0, 1, 2]: cold item 5 not listed. User 2: truth
    {1} only warm: left out of the cold means."""
    popularity = torch.tensor([3.0, 2.0, 1.0, 1.0, 0.0, 0.0])
    lists = torch.tensor([[4, 1, 0], [0, 1, 2], [1, 0, 2]])
    truth = torch.zeros(3, N, dtype=torch.bool)
    truth[0, [0, 4]] = truth[1, [5, 2]] = truth[2, [1]] = True
    got = _evaluate(
        ["recall_cold", "ndcg_cold", "hit_cold", "recall"], [1, 3], lists, truth, popularity
    )
    assert got["test/recall_cold@1"] == pytest.approx(0.5)  # (1 + 0) / 2 users
    assert got["test/recall_cold@3"] == pytest.approx(0.5)
    assert got["test/ndcg_cold@3"] == pytest.approx(0.5)  # user 0: 1/1, user 1: 0
    assert got["test/hit_cold@3"] == pytest.approx(0.5)
    assert got["test/n_cold_users"] == 2
    # the unrestricted recall counts every user: user 0 lists both {4, 0}, user 1 lists 2 of
    # {5, 2}, user 2 lists 1: (1 + 1/2 + 1) / 3 at 3
    assert got["test/recall@3"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    users, k = 40, 4
    popularity = torch.from_numpy((rng.random(N) < 0.5) * rng.integers(1, 5, N)).float()
    truth = torch.from_numpy(rng.random((users, N)) < 0.35)
    lists = torch.from_numpy(np.stack([rng.permutation(N)[:k] for _ in range(users)]))
    got = _evaluate(["recall_cold", "ndcg_cold", "mrr_cold"], [2, 4], lists, truth, popularity)
    cold = popularity.numpy() == 0
    for kk in (2, 4):
        rec, nd, rr = [], [], []
        for u in range(users):
            t = {i for i in range(N) if truth[u, i] and cold[i]}
            if not t:
                continue
            top = lists[u, :kk].tolist()
            hits = [1.0 if i in t else 0.0 for i in top]
            rec.append(sum(hits) / len(t))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(t), kk)))
            nd.append(sum(h / math.log2(r + 2) for r, h in enumerate(hits)) / idcg)
            first = next((r for r, h in enumerate(hits) if h), None)
            rr.append(0.0 if first is None else 1 / (first + 1))
        assert got[f"test/recall_cold@{kk}"] == pytest.approx(np.mean(rec))
        assert got[f"test/ndcg_cold@{kk}"] == pytest.approx(np.mean(nd))
        assert got[f"test/mrr_cold@{kk}"] == pytest.approx(np.mean(rr))


def test_family_covers_every_accuracy_metric() -> None:
    assert COLD_METRICS == ("recall_cold", "ndcg_cold", "mrr_cold", "hit_cold",
                            "precision_cold", "f1_cold")  # fmt: skip
