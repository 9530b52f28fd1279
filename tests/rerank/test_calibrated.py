"""Calibration: batched greedy equals a per-user loop over Steck (2018)'s formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from divrec.errors import DataError
from divrec.metrics.calibration import kl_calibration
from divrec.rerank import calibrated, rerank, top_k

from . import random_case, ref_candidates
from .test_xquad import random_categories


def ref_kl(p: list[float], q: list[float], alpha: float = 0.01) -> float:
    """sum_g p log(p / ((1 - alpha) q + alpha p)), terms with p = 0 dropped."""
    return sum(
        pg * math.log(pg / ((1 - alpha) * qg + alpha * pg))
        for pg, qg in zip(p, q, strict=True)
        if pg > 0
    )


def ref_calibrated(scores, cats, user, k: int, lam: float, m: int) -> list[list]:
    """argmax_i (1-lam) rel(i) - lam KL(p || q~(S + i)), rel min-max over the candidates."""
    c = cats.numpy()
    out = []
    for u in range(scores.shape[0]):
        row = scores[u].numpy()
        cands = ref_candidates(row, m)
        lo, hi = min(row[cands]), max(row[cands])
        rel = {i: (row[i] - lo) / (hi - lo) if hi > lo else 0.0 for i in cands}
        p = [float(x) for x in user[u]]
        picked: list[int] = []
        while len(picked) < k:
            best, best_val = None, -np.inf
            for i in cands:
                if i in picked:
                    continue
                lst = [*picked, i]
                q = [0.0] * c.shape[1]
                for j in lst:
                    n = c[j].sum()
                    for g in range(c.shape[1]):
                        q[g] += (c[j, g] / n if n > 0 else 0.0) / len(lst)
                val = (1 - lam) * rel[i] - lam * ref_kl(p, q)
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
    got = calibrated(scores, cats, 5, lam, user, candidates=30)
    assert got.tolist() == ref_calibrated(scores, cats, user, 5, lam, 30)


def test_lambda_zero_is_top_k():
    scores, _ = random_case(3)
    cats, user = random_categories(3)
    got = calibrated(scores, cats, 7, 0.0, user, candidates=30)
    assert torch.equal(got, top_k(scores, 7))


def test_kl_hand_computed():
    # p = (0.5, 0.5, 0), list q = (1, 0, 0): q~ = (0.995, 0.005, 0)
    want = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert float(kl_calibration(p, q)) == pytest.approx(want, rel=1e-12)


def test_calibration_picks_the_missing_genre():
    # user half genre 0 / half genre 1; top item is genre 0, second genre 0, third genre 1
    scores = torch.tensor([[3.0, 2.9, 2.0]])
    cats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    user = torch.tensor([[0.5, 0.5]])
    assert calibrated(scores, cats, 2, 0.5, user).tolist() == [[0, 2]]
    assert rerank("calibrated", scores, 2, 0.0, categories=cats, user_categories=user).tolist() == [
        [0, 1]
    ]


def test_missing_categories_one_line():
    scores, _ = random_case(0)
    with pytest.raises(DataError, match="calibrated needs item categories"):
        rerank("calibrated", scores, 5, 0.5)
