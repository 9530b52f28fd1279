"""miscalibration@k against KL values computed by hand (Steck 2018, alpha = 0.01)."""

from __future__ import annotations

import math

import pytest
import torch

from divrec.metrics import RankingEvaluator
from divrec.metrics.calibration import history_distribution, miscalibration

# items: 0 = {A}, 1 = {B}, 2 = {A, B}, 3 = {C}, 4 = no genre
CATS = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.float32)


def test_history_distribution_shares_genres():
    # user 0 history {0, 2}: A = 1 + 1/2, B = 1/2 -> (0.75, 0.25, 0); user 1: only item 4
    indptr = torch.tensor([0, 2, 3])
    indices = torch.tensor([0, 2, 4])
    p = history_distribution(CATS, indptr, indices)
    assert p.tolist() == [[0.75, 0.25, 0.0], [0.0, 0.0, 0.0]]


def test_miscalibration_hand_computed():
    p = torch.tensor([[0.75, 0.25, 0.0]])
    lists = torch.tensor([[3, 1]])  # @1: q = (0, 0, 1); @2: q = (0, 0.5, 0.5)
    vals, valid = miscalibration(CATS[lists], p, [1, 2])
    # @1: q~ = (0.0075, 0.0025, 0.99); @2: q~ = (0.0075, 0.4975, 0.495)
    at1 = 0.75 * math.log(0.75 / 0.0075) + 0.25 * math.log(0.25 / 0.0025)
    at2 = 0.75 * math.log(0.75 / 0.0075) + 0.25 * math.log(0.25 / 0.4975)
    assert vals[0].tolist() == pytest.approx([at1, at2], rel=1e-12)
    assert valid.tolist() == [True]
    same, _ = miscalibration(CATS[torch.tensor([[0, 0, 0, 1]])], p, [4])
    assert float(same[0, 0]) == pytest.approx(0.0, abs=1e-12)  # q = p exactly


def test_evaluator_logs_miscalibration_and_skips_uncategorised_users():
    p = torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.0, 0.0]])
    ev = RankingEvaluator(
        ["miscalibration"], [1], CATS, torch.ones(5), 2, user_history=p, prefix="test"
    )
    truth = torch.zeros(2, 5, dtype=torch.bool)
    truth[:, 0] = True
    ev.update(torch.tensor([[0], [1]]), truth, torch.tensor([0, 1]))
    want = 0.75 * math.log(0.75 / (0.99 + 0.0075)) + 0.25 * math.log(0.25 / 0.0025)
    assert ev.compute()["test/miscalibration@1"] == pytest.approx(want, rel=1e-6)
