"""torchmetrics state holders behind RankingEvaluator; all states are DDP "sum" reductions.

Keeping states as sums (per-user value sums, user counts, exposure counts) means a
distributed compute() or ``merge_state`` of per-rank metrics equals one run on all users.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class UserMeanMetric(Metric):
    """Mean over users of a per-user value at each cut-off: states ``total [len(ks)]``, ``count``."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, n_ks: int) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(n_ks, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: Tensor, valid: Tensor | None = None) -> None:
        """Add ``values: [users, len(ks)]``; rows where ``valid: [users]`` is False are ignored."""
        values = values.to(self.total.dtype)
        if valid is not None:
            values = values * valid[:, None].to(values.dtype)
            self.count += valid.sum().to(self.count.dtype)
        else:
            self.count += values.shape[0]
        self.total += values.sum(0)

    def compute(self) -> Tensor:
        """``[len(ks)]`` means; NaN when no user was counted."""
        return self.total / self.count

    def users(self) -> float:
        """Users counted, summed over processes (under DDP a collective: call on every rank)."""
        with self.sync_context():
            return float(self.count)


class ExposureMetric(Metric):
    """How often each catalogue item appears in the evaluated top-k lists, per cut-off."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, ks: list[int], n_items: int) -> None:
        super().__init__()
        self.ks = list(ks)
        self.add_state(
            "counts", torch.zeros(len(ks), n_items, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, topk: Tensor) -> None:
        """Count the items of ``topk: [users, K >= max(ks)]`` (item ids) at each cut-off."""
        for j, k in enumerate(self.ks):
            ids = topk[:, :k].reshape(-1)
            self.counts[j].index_add_(0, ids, torch.ones_like(ids))

    def compute(self) -> Tensor:
        """``[len(ks), N]`` exposure counts (summed over all processes)."""
        return self.counts


class UserCountMetric(Metric):
    """Number of evaluated users and of users skipped for having no truth item."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self) -> None:
        super().__init__()
        self.add_state("evaluated", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("skipped", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, evaluated: Tensor, skipped: Tensor) -> None:
        """Add scalar counts."""
        self.evaluated += evaluated.to(self.evaluated.dtype)
        self.skipped += skipped.to(self.skipped.dtype)

    def compute(self) -> Tensor:
        """``[2]``: evaluated users, skipped users."""
        return torch.stack([self.evaluated, self.skipped])
