"""Each user's top-``M`` candidates under one tie rule, the plain top-k, min-max scaling.

Tie rule (used by every re-ranker and by evaluation, so a per-user reference loop can match
exactly): each user's candidates are ordered by score descending, equal scores by item index
ascending; of several items tied at the cut-off the lowest indices are kept; every greedy
re-ranker step takes the first maximum in that order (the more relevant candidate, then the
lower item index, wins a tie). This is the one tie-aware top-k of divrec: evaluation, the
re-rankers and ItemKNN's neighbour lists all call :func:`select_candidates`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from divrec.errors import DataError
from divrec.rerank.checks import check_scores, require_valid
from divrec.rerank.kernels import limit_cpu_threads


def _canonical_order(idx: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder each row to score descending, then item index ascending (the tie rule)."""
    idx, perm = torch.sort(idx, dim=1)
    vals = vals.gather(1, perm)
    vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
    return idx.gather(1, perm), vals


def _exact_top(scores: Tensor, m: int) -> Tensor:
    """Item indices of the top-``m`` per row, boundary ties going to the lowest index.

    Slow path (a few passes over ``[rows, items]``) for rows whose m-th and (m+1)-th scores tie.
    """
    thr = torch.topk(scores, m, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = scores > thr
    need = m - above.sum(dim=1, keepdim=True)
    at = scores == thr
    take = above | (at & (at.cumsum(dim=1) <= need))
    return take.nonzero()[:, 1].view(scores.shape[0], m)


_NUMPY_TOPK_MIN = 128  # see _top_sorted


def _top_sorted(scores: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Values and indices of the ``m`` largest scores per row, descending (ties unordered).

    Speed trick (CPU only): for long candidate lists numpy's argpartition + argsort beats
    ``torch.topk``; for short ones it loses. Measured on [1024, 10000] float32, one thread:
    m=11 numpy 0.036 s / topk 0.017 s, m=101 0.052 / 0.053, m=201 0.060 / 0.108. Hence numpy
    from ``_NUMPY_TOPK_MIN`` on (re-rank candidate lists), ``torch.topk`` below (top-20 and
    top-100 evaluation lists). NaN counts as largest in both, so it lands at the head.
    """
    if scores.device.type != "cpu" or m < _NUMPY_TOPK_MIN:
        return torch.topk(scores, m, dim=1)
    arr = scores.detach()
    if arr.dtype not in (torch.float32, torch.float64):
        arr = arr.float()
    arr = arr.numpy()
    n_items = arr.shape[1]
    idx = np.argpartition(arr, n_items - m, axis=1)[:, n_items - m :]
    vals = np.take_along_axis(arr, idx, axis=1)
    order = np.argsort(-vals, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    return torch.from_numpy(vals).to(scores.dtype), torch.from_numpy(idx)


def _check_finite_head(vals: Tensor) -> None:
    """DataError on NaN or +inf among the selected top scores ``vals: [B, m]``.

    Selection treats NaN and +inf as the largest values, so they always land in ``vals``.
    """
    bad = torch.isnan(vals) | (vals == math.inf)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise DataError(f"rerank: scores contain NaN or +inf (user row {row})")


def select_candidates(scores: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each user's top-``m`` items in tie-rule order.

    Returns ``idx: [B, m]`` item indices, ``vals: [B, m]`` their scores and ``valid: [B, m]``
    (score > -inf; seen items carry -inf and never enter). DataError on NaN or +inf scores.
    """
    n_users, n_items = scores.shape
    if m >= n_items:
        vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
        _check_finite_head(vals)
    else:
        # One extra: if the m-th and (m+1)-th scores differ there is no tie at the boundary.
        vals, idx = _top_sorted(scores, m + 1)
        _check_finite_head(vals)
        boundary = vals[:, m - 1] == vals[:, m]
        vals, idx = vals[:, :m], idx[:, :m]
        if bool(boundary.any()):
            rows = boundary.nonzero()[:, 0]
            idx = idx.clone()
            idx[rows] = _exact_top(scores[rows], m)
            vals = scores.gather(1, idx)
        # topk orders equal scores arbitrarily: restore the tie rule in rows that have any.
        fix = boundary | (vals[:, 1:] == vals[:, :-1]).any(dim=1)
        if bool(fix.any()):
            rows = fix.nonzero()[:, 0]
            idx, vals = idx.clone(), vals.clone()
            idx[rows], vals[rows] = _canonical_order(idx[rows], vals[rows])
    return idx, vals, vals > -math.inf


def user_candidates(
    scores: Tensor, k: int, candidates: int | None
) -> tuple[int, int, Tensor, Tensor, Tensor]:
    """The prologue of every re-ranker: checked ``k`` and ``M``, then each user's top-``M``
    candidates ``(idx, vals, valid)`` as in :func:`select_candidates`, at least ``k`` of them
    valid (``DataError`` otherwise)."""
    k, m = check_scores(scores, k, candidates)
    idx, vals, valid = select_candidates(scores, m)
    require_valid(valid, k)
    return k, m, idx, vals, valid


@limit_cpu_threads
def top_k(scores: Tensor, k: int, candidates: int | None = None, strict: bool = True) -> Tensor:
    """Plain relevance order: ``[B, k]`` item indices of the highest scores (tie rule applies).

    ``scores: [B, N]``, -inf marks excluded (seen) items. ``strict=False`` lets a user with
    fewer than ``k`` finite scores get excluded items at the tail, lowest index first (what
    evaluation needs on tiny catalogues); ``strict=True`` raises ``DataError`` then.
    ``candidates`` is accepted for a uniform re-ranker signature; it cannot change the top-k.
    """
    k, _ = check_scores(scores, k, candidates)
    idx, _, valid = select_candidates(scores, k)
    if strict:
        require_valid(valid, k)
    return idx


def minmax_over_candidates(scores: Tensor, m: int) -> Tensor:
    """Rescale each user's scores so their top-``m`` candidates span [0, 1]: [B, N] -> [B, N].

    Monotone per user (the candidate set and relevance order are unchanged; -inf stays -inf),
    so ``diversity`` weighs relevance against similarity on the same scale for every model:
    raw scores range from cosines (two-tower) to interaction counts (pop). A user whose
    candidates all tie gets 0 for them.
    """
    top = scores.topk(min(m, scores.shape[1]), dim=1).values
    finite = torch.isfinite(top)
    hi = top[:, :1]
    lo = torch.where(finite, top, torch.inf).amin(dim=1, keepdim=True)
    span = (hi - lo).clamp_min(1e-12)
    return torch.where(torch.isfinite(scores), (scores - lo) / span, scores)
