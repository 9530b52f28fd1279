"""Per-user category metrics of saved lists vs brute-force loops on a hand-made catalogue."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from divrec.data.catalogue import Catalogue
from divrec.errors import DataError
from divrec.reports.catalogue_metrics import category_values

CATS = {"a": {"x"}, "b": {"x", "y"}, "c": {"y"}, "d": set(), "e": {"z"}}
LISTS = [["a", "b", "c", "d"], ["d", "e", "a", "b"], ["d", "c", "e", "a"]]
TRUTH = [{"b", "c"}, {"a", "e"}, {"d"}]
KS = [1, 2, 4]
ALPHA = 0.5


def catalogue() -> Catalogue:
    names = ["x", "y", "z"]
    m = torch.tensor([[float(c in CATS[i]) for c in names] for i in CATS])
    ids = list(CATS)
    return Catalogue(ids, ids, ids, names, m, torch.ones(len(ids)))


def brute_ild(items: list[str]) -> float:
    sims = [
        len(CATS[p] & CATS[q]) / len(CATS[p] | CATS[q])
        for p, q in itertools.combinations(items, 2)
        if CATS[p] and CATS[q]
    ]
    return 1.0 - sum(sims) / len(sims) if sims else 0.0


def brute_dcg(items, truth) -> float:
    seen: dict[str, int] = {}
    dcg = 0.0
    for r, i in enumerate(items, start=1):
        if i in truth:
            dcg += sum((1 - ALPHA) ** seen.get(a, 0) for a in CATS[i]) / math.log2(r + 1)
            for a in CATS[i]:
                seen[a] = seen.get(a, 0) + 1
    return dcg


def brute_alpha_ndcg(items, truth, k) -> float:
    ideal = max(brute_dcg(list(p)[:k], truth) for p in itertools.permutations(sorted(truth)))
    return brute_dcg(items[:k], truth) / ideal if ideal > 0 else 0.0


def test_category_values_match_brute_force():
    got = category_values(catalogue(), LISTS, TRUTH, KS, alpha=ALPHA)
    for u, (items, truth) in enumerate(zip(LISTS, TRUTH, strict=True)):
        for j, k in enumerate(KS):
            assert got["ild_cat"][u, j] == pytest.approx(brute_ild(items[:k])), (u, k)
            cover = len(set().union(*(CATS[i] for i in items[:k]))) / 3
            assert got["cat_coverage"][u, j] == pytest.approx(cover), (u, k)
            assert got["alpha_ndcg"][u, j] == pytest.approx(brute_alpha_ndcg(items, truth, k))
    # a few by hand: user 0 @4: pairs ab 1/2, ac 0, bc 1/2 -> 1 - 1/3; user 2 truth d: 0
    assert got["ild_cat"][0, 2] == pytest.approx(2 / 3)
    assert got["alpha_ndcg"][2] == pytest.approx(np.zeros(3))
    assert got["alpha_ndcg"][1, 2] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    )


def test_category_values_chunks_agree(monkeypatch):
    import divrec.reports.catalogue_metrics as cm

    whole = category_values(catalogue(), LISTS, TRUTH, KS)
    monkeypatch.setattr(cm, "_USERS", 2)
    parts = category_values(catalogue(), LISTS, TRUTH, KS)
    for m in whole:
        np.testing.assert_allclose(parts[m], whole[m])


def test_unknown_item_is_one_data_error():
    with pytest.raises(DataError, match="lacks 1 listed/test item"):
        category_values(catalogue(), [["a", "q"]], [{"a"}], [2])
