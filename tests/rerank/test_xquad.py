"""xQuAD: batched result equals a per-user loop over the formula of Santos et al. (2010)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from divrec.errors import ConfigError, DataError
from divrec.rerank import rerank, xquad

from . import random_case, ref_candidates


def random_categories(seed: int, n_users: int = 8, n_items: int = 50, n_cat: int = 6):
    """0/1 ``[N, C]`` item categories and ``[B, C]`` user distributions (rows sum to 1)."""
    gen = torch.Generator().manual_seed(seed + 100)
    cats = (torch.rand(n_items, n_cat, generator=gen) < 0.3).to(torch.float64)
    user = torch.rand(n_users, n_cat, generator=gen, dtype=torch.float64)
    return cats, user / user.sum(dim=1, keepdim=True)


def ref_xquad(scores, cats, user, k: int, lam: float, m: int) -> list[list]:
    """(1-lam) P(i|u) + lam sum_c P(c|u) P(i|c) prod_{j in S} (1 - P(j|c)), greedily."""
    out = []
    c = cats.numpy()
    for u in range(scores.shape[0]):
        row = scores[u].numpy()
        cands = ref_candidates(row, m)
        lo, hi = min(row[cands]), max(row[cands])
        p_iu = {i: (row[i] - lo) / (hi - lo) if hi > lo else 0.0 for i in cands}
        picked: list[int] = []
        while len(picked) < k:
            best, best_val = None, -np.inf
            for i in cands:
                if i in picked:
                    continue
                div = 0.0
                for cat in range(c.shape[1]):
                    not_covered = np.prod([1.0 - c[j, cat] for j in picked])
                    div += float(user[u, cat]) * c[i, cat] * not_covered
                val = (1 - lam) * p_iu[i] + lam * div
                if val > best_val:
                    best, best_val = i, val
            picked.append(best)
        out.append(picked)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam", [0.2, 0.5, 0.9, 1.0])
def test_matches_reference_loop(seed, lam):
    scores, _ = random_case(seed)
    cats, user = random_categories(seed)
    got = xquad(scores, cats, 5, lam, user, candidates=30)
    assert got.tolist() == ref_xquad(scores, cats, user, 5, lam, 30)


def test_fractional_coverage_and_bool_categories():
    scores, _ = random_case(3)
    cats, user = random_categories(3)
    frac = cats * torch.rand(cats.shape, generator=torch.Generator().manual_seed(1))
    got = xquad(scores, frac.to(torch.float64), 6, 0.6, user)
    assert got.tolist() == ref_xquad(scores, frac, user, 6, 0.6, 50)
    as_bool = xquad(scores, cats.bool(), 6, 0.6, user, candidates=30)
    assert torch.equal(as_bool, xquad(scores, cats, 6, 0.6, user, candidates=30))


def test_hand_computed_coverage():
    # Items 0..3, scores 4, 3, 2, 1 -> P(i|u) = 1, 2/3, 1/3, 0. Categories: item0 {A},
    # item1 {A}, item2 {B}, item3 {B}; P(A|u) = P(B|u) = 0.5; diversity 0.5.
    # Step 1: 0.5*1 + 0.5*0.5 = 0.75 (item0) beats 0.5*2/3 + 0.25 = 0.583 -> item0.
    # Step 2: A covered: item1 0.5*2/3 = 0.333; item2 0.5/3 + 0.25 = 0.417 -> item2.
    # Step 3: both covered: item1 0.333 > item3 0 -> item1. Top-k would be 0, 1, 2.
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    cats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    user = torch.tensor([[0.5, 0.5]])
    assert xquad(scores, cats, 3, 0.5, user).tolist() == [[0, 2, 1]]
    assert rerank("xquad", scores, 3, 0.5, categories=cats, user_categories=user).tolist() == [
        [0, 2, 1]
    ]


def test_diversity_zero_is_top_k_and_seen_never_selected():
    scores, _ = random_case(4, n_seen=42)
    cats, user = random_categories(4)
    expected = [ref_candidates(scores[u].numpy(), 50)[:5] for u in range(8)]
    assert xquad(scores, cats, 5, 0.0, user).tolist() == expected
    got = xquad(scores, cats, 8, 1.0, user)
    assert got.shape == (8, 8) and got.dtype == torch.long
    assert torch.isfinite(scores.gather(1, got)).all()
    assert all(len(set(r)) == 8 for r in got.tolist())


def test_bad_inputs_raise():
    scores, _ = random_case(0)
    cats, user = random_categories(0)
    for bad in (-0.01, 2.0):
        with pytest.raises(ConfigError, match="diversity"):
            xquad(scores, cats, 5, bad, user)
    with pytest.raises(DataError, match="categories"):
        xquad(scores, cats[:5], 5, 0.5, user)
    with pytest.raises(DataError, match="user_categories"):
        xquad(scores, cats, 5, 0.5, user[:3])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        xquad(scores, cats * 2, 5, 0.5, user)
    with pytest.raises(DataError, match="xquad needs"):
        rerank("xquad", scores, 5, 0.5, categories=cats)
