"""Repeat-purchase metrics (m_repeat, m_new, repeat_share) vs hand-computed and brute-force
references, the user-exclusion rule, and the inputs they need."""

from __future__ import annotations

import math

import pytest
import torch

from divrec.errors import ConfigError
from divrec.evaluation.pipeline import Ranker
from divrec.metrics import RankingEvaluator
from divrec.metrics.evaluator import category_fallback, drop_category_metrics
from divrec.metrics.repeat import REPEAT_METRICS, RESTRICTED_METRICS
from tests.metrics import KS, evaluate, random_case, user_mean
from tests.metrics.test_accuracy import ACC, ref_user

N = 6


def _hand(metrics: list[str], ks: list[int]) -> dict[str, float]:
    """Three users over a 6-item catalogue (lists, truths and seen sets in the comments)."""
    ev = RankingEvaluator(metrics, ks, torch.zeros(N, 0), torch.ones(N), n_train_users=3)
    lists = torch.tensor([[0, 1, 2], [5, 4, 3], [0, 1, 2]])
    truth = torch.zeros(3, N, dtype=torch.bool)
    seen = torch.zeros(3, N, dtype=torch.bool)
    truth[0, [0, 2, 4]], seen[0, [0, 3, 4]] = True, True  # repeat {0, 4}, new {2}
    truth[1, [1]], seen[1, [5]] = True, True  # repeat {}, new {1}
    seen[2, [0, 1]] = True  # no truth at all: skipped
    ev.update(lists, truth, torch.arange(3), seen)
    return ev.compute()


def test_hand_example() -> None:
    names = [f"{m}_{s}" for s in ("repeat", "new") for m in ACC] + ["repeat_share"]
    got = _hand(names, [1, 3])
    idcg2 = 1 + 1 / math.log2(3)
    want = {
        # user 0 only (user 1 has no repeat truth): item 0 hit at rank 1, item 4 not listed
        "ndcg_repeat@3": 1 / idcg2,
        "recall_repeat@3": 1 / 2,
        "precision_repeat@3": 1 / 3,
        "hit_repeat@3": 1.0,
        "mrr_repeat@3": 1.0,
        "f1_repeat@3": 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2),
        "ndcg_repeat@1": 1.0,  # IDCG over min(2, 1) items
        # users 0 (item 2 hit at rank 3) and 1 (no hit)
        "ndcg_new@3": (1 / math.log2(4) + 0) / 2,
        "recall_new@3": (1 + 0) / 2,
        "precision_new@3": (1 / 3 + 0) / 2,
        "hit_new@3": (1 + 0) / 2,
        "mrr_new@3": (1 / 3 + 0) / 2,
        "f1_new@3": (2 * (1 / 3) * 1 / (1 / 3 + 1) + 0) / 2,
        "ndcg_new@1": 0.0,
        # user 0 lists seen item 0 first; user 1 seen item 5 first
        "repeat_share@1": 1.0,
        "repeat_share@3": (1 / 3 + 1 / 3) / 2,
    }
    for key, value in want.items():
        assert got[f"test/{key}"] == pytest.approx(value, abs=1e-12), key
    assert got["test/n_users"] == 2 and got["test/n_skipped_users"] == 1
    assert got["test/n_repeat_users"] == 1 and got["test/n_new_users"] == 2


def test_user_without_repeat_truth_is_left_out_not_counted_as_zero() -> None:
    got = _hand(["ndcg_repeat", "ndcg"], [3])
    user0 = 1 / (1 + 1 / math.log2(3))
    assert got["test/ndcg_repeat@3"] == pytest.approx(user0)  # not (user0 + 0) / 2
    # no user has a repeat truth item: the mean is over nobody (NaN), never a made-up 0
    ev = RankingEvaluator(["recall_repeat"], [2], torch.zeros(N, 0), torch.ones(N), 3)
    truth = torch.zeros(1, N, dtype=torch.bool)
    truth[0, 1] = True
    ev.update(torch.tensor([[1, 2]]), truth, torch.tensor([0]), torch.zeros(1, N, dtype=bool))
    out = ev.compute()
    assert math.isnan(out["test/recall_repeat@2"]) and out["test/n_repeat_users"] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed: int) -> None:
    case = random_case(seed)
    got = evaluate(case, list(REPEAT_METRICS))
    evaluated = [u for u, t in enumerate(case.truths) if t]
    subsets = {
        "repeat": [case.truths[u] & case.seens[u] for u in range(len(case.truths))],
        "new": [case.truths[u] - case.seens[u] for u in range(len(case.truths))],
    }
    for subset, truths in subsets.items():
        users = [u for u in evaluated if truths[u]]
        assert 0 < len(users) < len(evaluated)  # the case exercises the exclusion rule
        assert got[f"test/n_{subset}_users"] == len(users)
        for name in ACC:
            for k in KS:
                ref = [ref_user(name, case.lists[u], truths[u], k) for u in users]
                key = f"test/{name}_{subset}@{k}"
                assert got[key] == pytest.approx(user_mean(ref), abs=1e-9), key
    for k in KS:
        shares = [sum(i in case.seens[u] for i in case.lists[u][:k]) / k for u in evaluated]
        assert got[f"test/repeat_share@{k}"] == pytest.approx(user_mean(shares), abs=1e-12)


def test_masked_seen_lists_score_no_repeat() -> None:
    """The default evaluation masks seen items: no repeat can be hit or listed."""
    case = random_case(3)
    _, truth, uidx = case.tensors()
    seen = case.seen_tensor()
    scores = torch.rand(len(case.lists), case.n_items, generator=torch.Generator().manual_seed(0))
    ev = case.evaluator(["ndcg_repeat", "recall_repeat", "repeat_share", "ndcg_new"])
    ev.update(Ranker().rank(scores, seen, max(KS)), truth, uidx, seen)
    out = ev.compute()
    assert out["test/n_repeat_users"] > 0
    for k in KS:
        assert out[f"test/ndcg_repeat@{k}"] == 0.0 and out[f"test/recall_repeat@{k}"] == 0.0
        assert out[f"test/repeat_share@{k}"] == 0.0
    assert out["test/ndcg_new@12"] > 0.0


def test_seen_is_required_and_checked() -> None:
    case = random_case(0)
    ev = case.evaluator(["ndcg", "ndcg_repeat", "repeat_share"])
    with pytest.raises(ConfigError) as err:
        ev.update(*case.tensors())
    msg = str(err.value)
    assert "\n" not in msg and "ndcg_repeat, repeat_share need seen" in msg
    with pytest.raises(ValueError, match=r"seen \(40, 59\) must be \[users, N\]"):
        ev.update(*case.tensors(), case.seen_tensor()[:, :-1])
    plain = case.evaluator(["ndcg"])  # no repeat metric: seen is optional
    plain.update(*case.tensors())


def test_keys_are_not_category_metrics() -> None:
    for key in ("test/ndcg_repeat@10", "test/recall_new@10", "val/repeat_share@20"):
        assert category_fallback(key) is None
    names = ["ndcg_repeat", "ild_cat", "repeat_share"]
    assert drop_category_metrics(names, torch.zeros(4, 0)) == ["ndcg_repeat", "repeat_share"]
    assert len(RESTRICTED_METRICS) == 2 * len(ACC) and set(ACC) <= {
        m.rsplit("_", 1)[0] for m in RESTRICTED_METRICS
    }
