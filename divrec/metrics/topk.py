"""Deterministic full-catalogue top-K selection that never recommends already-seen items."""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.errors import ConfigError, DataError


def topk_unseen(scores: Tensor, seen: Tensor | None, k: int) -> Tensor:
    """Return the ``k`` best unseen item ids per user, best first.

    ``scores: [users, items]``, ``seen: [users, items]`` bool (True = exclude, e.g. train
    interactions) or None. Returns ``LongTensor[users, k]``.

    Ties are broken by lower item index first, deterministically on every device: equal scores
    are ordered by item id, both inside the list and at the cut-off (of several items tied at
    the k-th score, the lowest ids are kept). Seen items are set to ``-inf`` before selection,
    so a user with fewer than ``k`` unseen items gets seen (``-inf``) items, lowest id first,
    at the tail of the list; callers must keep ``k <= items - max seen per user`` when that
    matters.

    Implementation: ``torch.topk`` plus a tie fix-up costs ~2.5x a bare topk, while a stable
    full sort costs ~14x (B=1024, N=10000, k=100 on CPU), so the full sort is only run on
    rows where the k-th score is tied with items outside the top-k.
    """
    if scores.dim() != 2:
        raise ValueError(f"topk_unseen: scores must be [users, items], got {tuple(scores.shape)}")
    n_users, n_items = scores.shape
    if not 1 <= k <= n_items:
        raise ConfigError(f"topk_unseen: k={k} must be between 1 and the number of items {n_items}")
    x = scores
    if seen is not None:
        if seen.shape != scores.shape:
            raise ValueError(
                f"topk_unseen: seen {tuple(seen.shape)} must match scores {tuple(scores.shape)}"
            )
        x = scores.masked_fill(seen.bool(), float("-inf"))

    values, idx = torch.topk(x, k, dim=1)
    if bool(torch.isnan(values).any()):
        raise DataError("topk_unseen: scores contain NaN")
    thr = values[:, -1:]  # [users, 1] k-th best score
    # A row is ambiguous when the k-th score is shared with items topk left out.
    n_tied_in = (values == thr).sum(1)
    n_tied_all = (x == thr).sum(1)
    bad = n_tied_all != n_tied_in
    if bool(bad.any()):
        rows = bad.nonzero()[:, 0]
        xr, tr = x[rows], thr[rows]
        above, tied = xr > tr, xr == tr
        need = k - above.sum(1, keepdim=True)
        # Keep every item above the threshold plus the `need` lowest-id tied items.
        keep = above | (tied & (tied.cumsum(1) <= need))
        idx = idx.clone()
        idx[rows] = keep.nonzero()[:, 1].view(-1, k)
    # Order by (score desc, item id asc): sort ids ascending, then stable sort by score.
    idx, _ = torch.sort(idx, dim=1)
    order = torch.sort(x.gather(1, idx), dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)
