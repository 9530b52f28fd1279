"""Expected exposure of stochastic rankings (Diaz, Mitra, Ekstrand, Biega & Carterette, CIKM
2020, "Evaluating Stochastic Rankings with Expected Exposure").

Browsing model: RBP with patience ``gamma`` (``eval.ee_patience``, 0.5 as in the paper), so
rank ``r`` (0-based) of a top-``k`` list gets exposure ``gamma^r`` and ranks >= k get 0. A
user's **expected exposure** ``eps_u: [N]`` is that exposure averaged over the ``S`` lists
drawn for the user (``rerank.samples`` for a stochastic re-ranker; 1 list, S = 1, for a
deterministic one). Its **target** ``eps*_u`` is the exposure of the ideal stochastic ranking
under equal expected exposure: the ``m`` truth items shuffled at the top, then the other
rankable items shuffled; each truth item gets ``sum_{r < min(m, k)} gamma^r / m``, each
other rankable item (not seen, or in the truth) ``sum_{min(m, k) <= r < k} gamma^r / (n - m)``
with ``n`` rankable items, a seen item 0. Per user, unnormalised:

- ``ee_d@k`` = ||eps||^2, disparity (lower: exposure spread over more items);
- ``ee_r@k`` = eps . eps*, relevance (higher: exposure on the truth);
- ``ee_l@k`` = ||eps - eps*||^2 = ee_d - 2 ee_r + ||eps*||^2, the expected-exposure loss;

each averaged over evaluated users. Over the catalogue: ``exposure_gini@k``, the Gini index
(:func:`divrec.metrics.beyond.gini`) of the summed expected exposure ``sum_u eps_u`` of all N
items, and ``exposure_coverage@k``, the share of items with any exposure in any draw.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from divrec.errors import ConfigError
from divrec.metrics import beyond

EXPOSURE_METRICS = ("exposure_gini", "exposure_coverage", "ee_d", "ee_r", "ee_l")
_USER_TERMS = ("ee_d", "ee_r", "ee_l")
_CHUNK_ELEMENTS = 1 << 22  # users per dense [users, N] exposure chunk: about this many entries


def rank_weights(k: int, patience: float, device: torch.device | None = None) -> Tensor:
    """RBP exposure ``gamma^r`` of ranks ``r = 0..k-1``: ``[k]`` float64."""
    return patience ** torch.arange(k, dtype=torch.float64, device=device)


def expected_exposure(lists: Tensor, n_items: int, k: int, patience: float) -> Tensor:
    """``lists: [S, B, K >= k]`` item ids -> ``eps: [B, N]`` float64, exposure averaged over S."""
    s, b = lists.shape[:2]
    w = (rank_weights(k, patience, lists.device) / s).expand(s, b, k)
    eps = torch.zeros(b, n_items, dtype=torch.float64, device=lists.device)
    items = lists[:, :, :k].permute(1, 0, 2).reshape(b, s * k)
    return eps.scatter_add_(1, items, w.permute(1, 0, 2).reshape(b, s * k))


def target_levels(
    n_truth: Tensor, n_rankable: Tensor, k: int, patience: float
) -> tuple[Tensor, Tensor]:
    """Target exposure of a truth item and of another rankable item per user: two ``[B]``.

    ``n_truth, n_rankable: [B]`` (m and n of the module docstring; m >= 1).
    """
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), rank_weights(k, patience).cumsum(0)])
    cum = cum.to(n_truth.device)
    m = n_truth.double()
    head = cum[n_truth.clamp(max=k).long()]  # exposure of the first min(m, k) ranks
    rel = head / m
    rest = (n_rankable.double() - m).clamp_min(1.0)
    return rel, (cum[k] - head) / rest


def user_terms(eps: Tensor, truth: Tensor, seen: Tensor | None, k: int, patience: float) -> Tensor:
    """``[B, 3]``: ee_d, ee_r, ee_l per user. ``eps: [B, N]``; ``truth, seen: [B, N]`` bool."""
    truth = truth.bool()
    rankable = torch.ones_like(truth) if seen is None else truth | ~seen.bool()
    m, n = truth.sum(1), rankable.sum(1)
    rel, other = target_levels(m, n, k, patience)
    on_truth = (eps * truth).sum(1)
    on_other = (eps * (rankable & ~truth)).sum(1)
    ee_d = (eps * eps).sum(1)
    ee_r = rel * on_truth + other * on_other
    target_sq = m * rel**2 + (n - m) * other**2
    return torch.stack([ee_d, ee_r, ee_d - 2 * ee_r + target_sq], dim=1)


class ExpectedExposureMetric(Metric):
    """Sum states of the exposure metrics at each cut-off (DDP "sum" reductions).

    ``item_exposure [len(ks), N]`` (summed expected exposure), ``terms [3, len(ks)]`` (sums of
    ee_d, ee_r, ee_l over users) and ``count`` (users).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, ks: list[int], n_items: int, patience: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < float(patience) < 1.0:
            raise ConfigError(f"eval.ee_patience must be in (0, 1), got {patience!r}")
        self.ks, self.n_items, self.patience = list(ks), n_items, float(patience)
        shape = (len(ks), n_items)
        self.add_state("item_exposure", torch.zeros(shape, dtype=torch.float64), "sum")
        self.add_state("terms", torch.zeros(3, len(ks), dtype=torch.float64), "sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), "sum")

    def update(self, lists: Tensor, truth: Tensor, seen: Tensor | None = None) -> None:
        """Add ``lists: [S, B, K >= max(ks)]`` (S draws per user), ``truth, seen: [B, N]``."""
        step = max(1, _CHUNK_ELEMENTS // max(1, self.n_items))
        for lo in range(0, lists.shape[1], step):
            part = slice(lo, lo + step)
            for j, k in enumerate(self.ks):
                eps = expected_exposure(lists[:, part], self.n_items, k, self.patience)
                self.item_exposure[j] += eps.sum(0)
                cut = None if seen is None else seen[part]
                terms = user_terms(eps, truth[part], cut, k, self.patience)
                self.terms[:, j] += terms.sum(0)
        self.count += lists.shape[1]

    def compute(self) -> dict[str, Tensor]:
        """``{name: [len(ks)]}`` for every name of :data:`EXPOSURE_METRICS`."""
        out = {t: self.terms[i] / self.count for i, t in enumerate(_USER_TERMS)}
        out["exposure_gini"] = torch.stack([beyond.gini(x) for x in self.item_exposure])
        out["exposure_coverage"] = torch.stack(
            [beyond.item_coverage(x) for x in self.item_exposure]
        )
        return out
