"""Miscalibration (Steck, RecSys 2018): KL of the user's history genres against a list's.

* ``p(g|u)``: the user's training history, each item's genres sharing weight 1 (an item with
  genres ``{a, b}`` adds 1/2 to each), normalised over the history.
* ``q(g|list)``: the same over the top-k list (each position weight 1/k).
* ``miscalibration@k = KL(p || q~) = sum_g p log(p / q~)``, ``q~ = (1 - alpha) q + alpha p``,
  alpha = 0.01; terms with p = 0 are 0. Lower is better calibrated; 0 = same distribution.
"""

from __future__ import annotations

import torch
from torch import Tensor

ALPHA = 0.01  # Steck's smoothing of q towards p


def genre_shares(categories: Tensor) -> Tensor:
    """``[N, C]`` rows ``categories[i] / sum(categories[i])`` (zero rows stay zero)."""
    cats = categories.double()
    return cats / cats.sum(-1, keepdim=True).clamp_min(1e-12)


def history_distribution(categories: Tensor, indptr: Tensor, indices: Tensor) -> Tensor:
    """Each user's ``p(g|u)``: ``[U, C]`` float32 from a CSR history (``indptr: [U+1]``).

    A user whose history has no categorised item gets a zero row."""
    n_users = len(indptr) - 1
    users = torch.repeat_interleave(torch.arange(n_users), indptr.diff())
    out = torch.zeros(n_users, categories.shape[1], dtype=torch.float64)
    out.index_add_(0, users, genre_shares(categories)[indices])
    return (out / out.sum(1, keepdim=True).clamp_min(1e-12)).float()


def kl_calibration(p: Tensor, q: Tensor, alpha: float = ALPHA) -> Tensor:
    """``KL(p || (1 - alpha) q + alpha p)`` over the last dim; 0 where p is 0."""
    q_s = (1.0 - alpha) * q + alpha * p
    terms = p * (torch.log(p.clamp_min(1e-30)) - torch.log(q_s.clamp_min(1e-30)))
    return torch.where(p > 0, terms, torch.zeros_like(terms)).sum(-1)


def miscalibration(
    cats: Tensor, history: Tensor, ks: list[int], alpha: float = ALPHA
) -> tuple[Tensor, Tensor]:
    """``cats: [users, K, C]`` 0/1 of the listed items, ``history: [users, C]`` p(g|u).

    Returns ``(values [users, len(ks)], valid [users])``; users whose history has no category
    are invalid and left out of the average."""
    shares = genre_shares(cats).cumsum(1)  # [users, K, C]
    p = history.double()
    out = [kl_calibration(p, shares[:, k - 1] / k, alpha) for k in ks]
    return torch.stack(out, dim=1), p.sum(-1) > 0
