"""Cold-item accuracy: how well a model ranks the held-out items nobody trained on.

An item is cold when it has no training interaction (``popularity == 0``: ID models cannot
score it, a text model can). For every accuracy metric m
(:data:`~divrec.metrics.accuracy.ACCURACY_METRICS`), ``m_cold`` is m with each user's truth
restricted to cold items; a user without a cold truth item is left out of its mean (the
evaluator reports how many users remain as ``n_cold_users``). The list itself is not
restricted: a cold item must win its place against every warm one.
"""

from __future__ import annotations

from torch import Tensor

from divrec.metrics.accuracy import ACCURACY_METRICS

COLD_METRICS = tuple(f"{m}_cold" for m in ACCURACY_METRICS)


def base(name: str) -> str:
    """``"recall_cold"`` -> ``"recall"``; ValueError for a name not in the family."""
    if name not in COLD_METRICS:
        raise ValueError(f"{name!r} is not one of {list(COLD_METRICS)}")
    return name.removesuffix("_cold")


def cold_hits(topk: Tensor, truth: Tensor, cold: Tensor) -> tuple[Tensor, Tensor]:
    """Hits ``[users, K]`` and truth sizes ``[users]`` (float64) of the truth restricted to
    cold items: ``topk [users, K]`` ids, ``truth [users, N]`` bool, ``cold [N]`` bool."""
    kept = truth & cold[None, :]
    return kept.gather(1, topk).double(), kept.sum(1).double()
