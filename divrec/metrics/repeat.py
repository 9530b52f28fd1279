"""Repeat-purchase metrics: accuracy on the truth items a user had before vs on new ones.

``seen: [users, N]`` bool marks the items each user had before the held-out period (the eval
batch's ``seen``: train, plus valid at test). For every accuracy metric m
(:data:`~divrec.metrics.accuracy.ACCURACY_METRICS`):

- ``m_repeat``: m with the truth restricted to truth ∩ seen (buying again);
- ``m_new``: m with the truth restricted to truth ∖ seen (items new to the user).

A user whose restricted truth is empty is left out of that metric's mean, so ``ndcg_repeat``
averages over the users who bought something again and ``ndcg_new`` over those who bought
something new. ``repeat_share@k``: the share of the top-k that are seen items (exploit vs
explore), averaged over every evaluated user. With ``eval.mask_seen=true`` seen items are never
listed, so ``m_repeat`` and ``repeat_share`` are 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.metrics.accuracy import ACCURACY_METRICS, accuracy

SUBSETS = ("repeat", "new")
RESTRICTED_METRICS = tuple(f"{m}_{s}" for s in SUBSETS for m in ACCURACY_METRICS)
REPEAT_METRICS = (*RESTRICTED_METRICS, "repeat_share")


def parse(name: str) -> tuple[str, str]:
    """``"ndcg_repeat"`` -> ``("ndcg", "repeat")``; ValueError for a name not in the family."""
    if name not in RESTRICTED_METRICS:
        raise ValueError(f"{name!r} is not one of {list(RESTRICTED_METRICS)}")
    base, _, subset = name.rpartition("_")
    return base, subset


def subset_hits(topk: Tensor, truth: Tensor, seen: Tensor, subset: str) -> tuple[Tensor, Tensor]:
    """Hits ``[users, K]`` and truth sizes ``[users]`` (float64) of the restricted truth.

    ``topk: [users, K]`` item ids, ``truth``/``seen: [users, N]`` bool; ``subset``: ``repeat``
    (truth ∩ seen) or ``new`` (truth ∖ seen).
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset {subset!r} unknown; choose from {list(SUBSETS)}")
    kept = truth & seen if subset == "repeat" else truth & ~seen
    return kept.gather(1, topk).double(), kept.sum(1).double()


def restricted(name: str, hits: Tensor, n_truth: Tensor, ks: list[int]) -> tuple[Tensor, Tensor]:
    """Accuracy metric ``name`` on a restricted truth: values ``[users, len(ks)]`` (0 for left
    out users) and ``valid [users]`` (the restricted truth is not empty)."""
    valid = n_truth > 0
    values = accuracy(name, hits, n_truth.clamp_min(1.0), ks)
    return torch.where(valid[:, None], values, torch.zeros_like(values)), valid


def repeat_share(listed_seen: Tensor, ks: list[int]) -> Tensor:
    """Share of the top-k that are seen items: ``listed_seen [users, K]`` (``seen`` at each
    list position) -> ``[users, len(ks)]`` float64."""
    running = listed_seen.double().cumsum(1)[:, [k - 1 for k in ks]]
    return running / torch.tensor(ks, dtype=torch.float64, device=listed_seen.device)
