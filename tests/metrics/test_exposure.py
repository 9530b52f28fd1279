"""Expected-exposure metrics against hand-computed values and plain-Python references."""

from __future__ import annotations

import random

import pytest
import torch

from divrec.errors import ConfigError
from divrec.metrics import RankingEvaluator
from divrec.metrics.exposure import ExpectedExposureMetric


def brute_gini(x: list[float]) -> float:
    """Mean-absolute-difference Gini: sum_ij |x_i - x_j| / (2 n sum x)."""
    n, total = len(x), sum(x)
    return sum(abs(a - b) for a in x for b in x) / (2 * n * total)


def ref_user(lists, truth, seen, n_items, k, gamma):
    """(ee_d, ee_r, ee_l, eps) of one user from its S lists, by the definitions."""
    eps = [0.0] * n_items
    for lst in lists:
        for r, i in enumerate(lst[:k]):
            eps[i] += gamma**r / len(lists)
    rankable = [i for i in range(n_items) if i in truth or i not in seen]
    m, n = len(truth), len(rankable)
    head = sum(gamma**r for r in range(min(m, k)))
    tail = sum(gamma**r for r in range(min(m, k), k))
    target = [0.0] * n_items
    for i in rankable:
        target[i] = head / m if i in truth else tail / max(n - m, 1)
    ee_d = sum(e * e for e in eps)
    ee_r = sum(e * t for e, t in zip(eps, target, strict=True))
    ee_l = sum((e - t) ** 2 for e, t in zip(eps, target, strict=True))
    return ee_d, ee_r, ee_l, eps


def run(lists: list[list[list[int]]], truth_sets, seen_sets, n_items, ks, gamma=0.5):
    """Metric values for lists[s][b] (S draws of B users)."""
    ev = ExpectedExposureMetric(ks, n_items, gamma)
    truth = torch.zeros(len(truth_sets), n_items, dtype=torch.bool)
    seen = torch.zeros_like(truth)
    for b, (t, s) in enumerate(zip(truth_sets, seen_sets, strict=True)):
        truth[b, list(t)] = True
        seen[b, list(s)] = True
    ev.update(torch.tensor(lists), truth, seen)
    return {name: v.reshape(-1).tolist() for name, v in ev.compute().items()}


def test_hand_example_deterministic_and_ideal_stochastic():
    # one user, truth {0, 1}, k = 2, gamma = 0.5: list [0, 1] -> eps = [1, .5, 0, 0]
    got = run([[[0, 1]]], [{0, 1}], [set()], 4, [2])
    assert got["ee_d"] == pytest.approx([1.25])
    assert got["ee_r"] == pytest.approx([1.125])  # target .75 on each truth item
    assert got["ee_l"] == pytest.approx([0.125])
    # both orders, once each: eps = [.75, .75, 0, 0] is the target -> loss 0
    got = run([[[0, 1]], [[1, 0]]], [{0, 1}], [set()], 4, [2])
    assert got["ee_d"] == pytest.approx([1.125])
    assert got["ee_r"] == pytest.approx([1.125])
    assert got["ee_l"] == pytest.approx([0.0], abs=1e-12)
    assert got["exposure_coverage"] == pytest.approx([0.5])


def test_gini_hand_cases():
    # k = 1, four users each exposing another item: uniform exposure -> 0
    got = run([[[0], [1], [2], [3]]], [{0}] * 4, [set()] * 4, 4, [1])
    assert got["exposure_gini"] == pytest.approx([0.0], abs=1e-12)
    # all exposure on one item of n = 4 -> (n - 1) / n
    got = run([[[2], [2], [2], [2]]], [{0}] * 4, [set()] * 4, 4, [1])
    assert got["exposure_gini"] == pytest.approx([0.75])


def test_random_lists_match_the_reference():
    rnd = random.Random(0)
    n_items, s_draws, users, gamma, ks = 12, 3, 5, 0.7, [2, 4]
    lists = [[rnd.sample(range(n_items), 4) for _ in range(users)] for _ in range(s_draws)]
    truth = [set(rnd.sample(range(n_items), rnd.randint(1, 6))) for _ in range(users)]
    seen = [set(rnd.sample(sorted(set(range(n_items)) - t), 2)) for t in truth]
    got = run(lists, truth, seen, n_items, ks, gamma)
    for j, k in enumerate(ks):
        refs = [
            ref_user([lists[s][b] for s in range(s_draws)], truth[b], seen[b], n_items, k, gamma)
            for b in range(users)
        ]
        for t, name in enumerate(("ee_d", "ee_r", "ee_l")):
            assert got[name][j] == pytest.approx(sum(r[t] for r in refs) / users)
        total = [sum(r[3][i] for r in refs) for i in range(n_items)]
        assert got["exposure_gini"][j] == pytest.approx(brute_gini(total))
        assert got["exposure_coverage"][j] == pytest.approx(sum(v > 0 for v in total) / n_items)


def test_evaluator_reports_exposure_over_draws_and_skips_users_without_truth():
    n_items = 10
    truth = torch.zeros(3, n_items, dtype=torch.bool)
    truth[0, [1, 2]] = True
    truth[2, 5] = True  # user 1 has no truth: skipped
    draws = torch.stack([torch.randperm(n_items)[:4].expand(3, 4) for _ in range(5)])
    kw = dict(
        ks=[2, 4],
        category_matrix=torch.zeros(n_items, 0),
        popularity=torch.ones(n_items),
        n_train_users=3,
    )
    names = ["ndcg", "exposure_gini", "exposure_coverage", "ee_d", "ee_r", "ee_l"]
    ev = RankingEvaluator(names, **kw)
    ev.update(draws[0], truth, torch.arange(3), draws=draws)
    out = ev.compute()
    ref = ExpectedExposureMetric([2, 4], n_items)
    ref.update(draws[:, [0, 2]], truth[[0, 2]])
    want = ref.compute()
    for name in names[1:]:
        for j, k in enumerate([2, 4]):
            assert out[f"test/{name}@{k}"] == pytest.approx(float(want[name][j]))
    single = RankingEvaluator(names, **kw)
    single.update(draws[0], truth, torch.arange(3))  # no draws: the one list, S = 1
    ref1 = ExpectedExposureMetric([2, 4], n_items)
    ref1.update(draws[:1, [0, 2]], truth[[0, 2]])
    assert single.compute()["test/ee_d@4"] == pytest.approx(float(ref1.compute()["ee_d"][1]))
    with pytest.raises(ConfigError, match="ee_patience"):
        RankingEvaluator(names, **kw, ee_patience=1.0)
