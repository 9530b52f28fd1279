"""Per-user accuracy metrics at several cut-offs, vectorised over a batch of users.

Every function takes the compact hit matrix ``hits: [users, K]`` (1.0 where the item at list
position r, 0-based, is in the user's held-out truth set; K >= max(ks)) and returns
``[users, len(ks)]`` float64 values; the evaluator averages them over users.
"""

from __future__ import annotations

import torch
from torch import Tensor

ACCURACY_METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "f1")


def _at(x: Tensor, ks: list[int]) -> Tensor:
    """Columns ``k-1`` of a running quantity ``x: [users, K]`` -> ``[users, len(ks)]``."""
    return x[:, [k - 1 for k in ks]]


def discounts(k: int, device: torch.device | None = None) -> Tensor:
    """Position discounts ``1 / log2(r + 1)`` for 1-based ranks r = 1..k: ``[k]`` float64."""
    ranks = torch.arange(1, k + 1, dtype=torch.float64, device=device)
    return 1.0 / torch.log2(ranks + 1.0)


def n_hits(hits: Tensor, ks: list[int]) -> Tensor:
    """Number of truth items in the top-k: ``[users, len(ks)]``."""
    return _at(hits.cumsum(1), ks)


def recall(hits: Tensor, n_truth: Tensor, ks: list[int]) -> Tensor:
    """hits@k / |truth| (RecBole convention: not capped at k). ``n_truth: [users]`` > 0."""
    return n_hits(hits, ks) / n_truth[:, None]


def precision(hits: Tensor, ks: list[int]) -> Tensor:
    """hits@k / k."""
    return n_hits(hits, ks) / torch.tensor(ks, dtype=hits.dtype, device=hits.device)


def hit(hits: Tensor, ks: list[int]) -> Tensor:
    """1 if at least one truth item is in the top-k, else 0."""
    return (n_hits(hits, ks) > 0).to(hits.dtype)


def f1(hits: Tensor, n_truth: Tensor, ks: list[int]) -> Tensor:
    """Per-user 2PR / (P + R); 0 when P = R = 0 (no hit)."""
    p, r = precision(hits, ks), recall(hits, n_truth, ks)
    denom = p + r
    return torch.where(denom > 0, 2 * p * r / denom.clamp_min(1e-300), torch.zeros_like(denom))


def mrr(hits: Tensor, ks: list[int]) -> Tensor:
    """1 / rank of the first hit within the top-k; 0 if there is none."""
    first = hits * (hits.cumsum(1) == 1)  # 1 only at the first hit position
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=hits.dtype, device=hits.device)
    return _at((first / ranks).cumsum(1), ks)


def ndcg(hits: Tensor, n_truth: Tensor, ks: list[int]) -> Tensor:
    """Binary-gain nDCG: DCG = sum over hit ranks of 1/log2(rank+1), IDCG over min(|truth|, k)."""
    disc = discounts(hits.shape[1], hits.device).to(hits.dtype)
    dcg = _at((hits * disc).cumsum(1), ks)
    ideal_table = torch.cat([disc.new_zeros(1), disc.cumsum(0)])  # [K+1]: IDCG of n hits
    k_t = torch.tensor(ks, device=hits.device)
    n_ideal = torch.minimum(n_truth.round().long()[:, None], k_t[None, :])  # [users, len(ks)]
    idcg = ideal_table[n_ideal]
    return torch.where(idcg > 0, dcg / idcg.clamp_min(1e-300), torch.zeros_like(dcg))


def accuracy(name: str, hits: Tensor, n_truth: Tensor, ks: list[int]) -> Tensor:
    """The accuracy metric ``name`` (one of :data:`ACCURACY_METRICS`): ``[users, len(ks)]``."""
    if name == "recall":
        return recall(hits, n_truth, ks)
    if name == "ndcg":
        return ndcg(hits, n_truth, ks)
    if name == "mrr":
        return mrr(hits, ks)
    if name == "hit":
        return hit(hits, ks)
    if name == "precision":
        return precision(hits, ks)
    if name == "f1":
        return f1(hits, n_truth, ks)
    raise ValueError(f"accuracy metric {name!r} unknown; choose from {list(ACCURACY_METRICS)}")
