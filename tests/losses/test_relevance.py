"""Relevance losses against brute-force loops and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from divrec.errors import ConfigError, DataError
from divrec.losses import (
    RELEVANCE_LOSSES,
    bpr_loss,
    get_relevance_loss,
    in_batch_logits,
    sampled_softmax_loss,
)


def _batch(seed: int, b: int = 6, d: int = 4, n: int = 10, dup: bool = False):
    g = torch.Generator().manual_seed(seed)
    user = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    item = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    idx = torch.randperm(n, generator=g)[:b]
    if dup:  # rows 0, 3, 4 share an item, rows 1 and 5 share another
        idx[3] = idx[0]
        idx[4] = idx[0]
        idx[5] = idx[1]
        item[3] = item[0]
        item[4] = item[0]
        item[5] = item[1]
    log_q = torch.log(torch.softmax(torch.randn(n, generator=g, dtype=torch.float64), 0))
    return user, item, idx, log_q


def _score(user, item, idx, tau, log_q, i, j) -> float:
    s = sum(float(user[i, k]) * float(item[j, k]) for k in range(user.shape[1])) / tau
    return s - (float(log_q[int(idx[j])]) if log_q is not None else 0.0)


def _ref_softmax(user, item, idx, tau, log_q) -> float:
    """Loop reference: -log(exp(s_ii) / sum_j exp(s_ij)), skipping j != i with idx[j] == idx[i]."""
    b = user.shape[0]
    total = 0.0
    for i in range(b):
        cols = [j for j in range(b) if j == i or int(idx[j]) != int(idx[i])]
        denom = sum(math.exp(_score(user, item, idx, tau, log_q, i, j)) for j in cols)
        total += -math.log(math.exp(_score(user, item, idx, tau, log_q, i, i)) / denom)
    return total / b


def _ref_bpr(user, item, idx, tau, log_q) -> float:
    """Loop reference: mean over (i, j != i, idx[j] != idx[i]) of -log sigmoid(s_ii - s_ij)."""
    b = user.shape[0]
    terms = []
    for i in range(b):
        for j in range(b):
            if j != i and int(idx[j]) != int(idx[i]):
                x = _score(user, item, idx, tau, log_q, i, i) - _score(
                    user, item, idx, tau, log_q, i, j
                )
                terms.append(-math.log(1.0 / (1.0 + math.exp(-x))))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("use_logq", [False, True])
@pytest.mark.parametrize("dup", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_matches_loop(seed, dup, use_logq):
    user, item, idx, log_q = _batch(seed, dup=dup)
    lq = log_q if use_logq else None
    loss, logits = sampled_softmax_loss(user, item, idx, 0.2, lq)
    assert logits.shape == (6, 6)
    assert loss.item() == pytest.approx(_ref_softmax(user, item, idx, 0.2, lq), rel=1e-10)


@pytest.mark.parametrize("use_logq", [False, True])
@pytest.mark.parametrize("dup", [False, True])
def test_bpr_matches_loop(dup, use_logq):
    user, item, idx, log_q = _batch(3, dup=dup)
    lq = log_q if use_logq else None
    loss, _ = bpr_loss(user, item, idx, 0.5, lq)
    assert loss.item() == pytest.approx(_ref_bpr(user, item, idx, 0.5, lq), rel=1e-10)


def test_softmax_hand_value():
    # s = [[1, 0], [0, 0]] (tau = 1): row 0: log(1 + e^-1) = 0.313262; row 1: log 2 = 0.693147
    user = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    item = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    loss, _ = sampled_softmax_loss(user, item, torch.tensor([0, 1]), 1.0)
    assert loss.item() == pytest.approx((0.313262 + 0.693147) / 2, abs=1e-6)
    # logQ correction: log_q = (0, log 2) lowers column 1 by log 2 in both rows:
    # row 0: -log(e / (e + 1/2)) = log(1 + e^-1 / 2); row 1: -log((1/2) / (1 + 1/2)) = log 3
    log_q = torch.tensor([0.0, math.log(2.0)], dtype=torch.float64)
    loss, _ = sampled_softmax_loss(user, item, torch.tensor([0, 1]), 1.0, log_q)
    expected = (math.log(1 + math.exp(-1) / 2) + math.log(3.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_duplicates_masked_in_logits():
    user, item, idx, log_q = _batch(0, dup=True)
    logits = in_batch_logits(user, item, idx, 0.1, log_q)
    for i in range(6):
        for j in range(6):
            masked = i != j and int(idx[i]) == int(idx[j])
            assert torch.isinf(logits[i, j]).item() == masked
    # the masked version differs from plain cross-entropy on the unmasked scores
    raw = user @ item.T / 0.1 - log_q[idx].unsqueeze(0)
    plain = torch.nn.functional.cross_entropy(raw, torch.arange(6))
    loss, _ = sampled_softmax_loss(user, item, idx, 0.1, log_q)
    assert loss.item() < plain.item() - 1e-3


def test_gradients_flow_and_are_finite_with_duplicates():
    user, item, idx, log_q = _batch(1, dup=True)
    user.requires_grad_()
    item.requires_grad_()
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    for fn in RELEVANCE_LOSSES.values():
        loss, _ = fn(user, item, idx, tau, log_q)
        grads = torch.autograd.grad(loss, [user, item, tau])
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_bpr_without_valid_pairs_is_zero():
    user = torch.randn(3, 4, requires_grad=True)
    loss, _ = bpr_loss(user, torch.randn(3, 4), torch.tensor([7, 7, 7]), 1.0)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(user.grad, torch.zeros(3, 4))


def test_registry_and_errors():
    assert get_relevance_loss("softmax") is sampled_softmax_loss
    assert get_relevance_loss("bpr") is bpr_loss
    with pytest.raises(ConfigError, match="unknown relevance loss"):
        get_relevance_loss("hinge")
    u = torch.randn(4, 3)
    with pytest.raises(DataError, match="item_idx"):
        sampled_softmax_loss(u, u, torch.arange(3), 1.0)
    with pytest.raises(DataError, match="user and item"):
        sampled_softmax_loss(u, torch.randn(4, 2), torch.arange(4), 1.0)
    with pytest.raises(DataError, match="integer"):
        sampled_softmax_loss(u, u, torch.arange(4.0), 1.0)
    with pytest.raises(ConfigError, match="temperature"):
        bpr_loss(u, u, torch.arange(4), 0.0)
