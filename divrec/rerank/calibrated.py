"""Calibrated re-ranking (Steck, RecSys 2018) over item categories, batched over users.

Per user, over their top-``M`` candidates (seen items, score -inf, never enter), each step
picks the argmax over the remaining candidates ``i`` of

    (1 - diversity) * rel(i) - diversity * KL(p || q~(picked + i))

which is Steck's greedy maximisation of ``(1 - l) * sum rel - l * KL`` (the picked items'
relevance is a constant of the step).

* ``rel(i)``: the score min-max normalised over the user's unseen candidates to [0, 1], as in
  the other re-rankers (Steck uses the raw predicted score; the min-max is order-preserving,
  so diversity 0 is exactly the top-k, and puts relevance on one scale for every model).
* ``p(g|u) = user_categories[u, g]``: the user's training category distribution, used as given.
* ``q(g|list) = mean_{j in list} w_j(g)`` with ``w_j = categories[j] / |categories[j]|`` (each
  item's genres share weight 1, Steck's ``p(g|i)``; an item without categories adds nothing).
* ``q~ = (1 - alpha) q + alpha p`` (alpha = 0.01), ``KL = sum_g p log(p / q~)``, 0 log 0 = 0.

Ties follow the rule in :mod:`divrec.rerank.candidates` (higher relevance, then lower item index).
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.metrics.calibration import ALPHA, genre_shares, kl_calibration
from divrec.rerank.candidates import minmax_over_candidates, user_candidates
from divrec.rerank.checks import check_diversity, compute_dtype
from divrec.rerank.kernels import limit_cpu_threads, user_chunks
from divrec.rerank.xquad import _check_categories


@limit_cpu_threads
def calibrated(
    scores: Tensor,
    categories: Tensor,
    k: int,
    diversity: float,
    user_categories: Tensor,
    candidates: int | None = None,
    alpha: float = ALPHA,
) -> Tensor:
    """Re-rank each user's candidates by Steck's calibration.

    ``scores: [B, N]`` (-inf = seen), ``categories: [N, C]`` 0/1, ``user_categories: [B, C]``;
    returns ``[B, k]`` int64 item indices into N, in pick order. ``diversity`` (lambda) in
    [0, 1]; 0 returns the top-k by score exactly.
    """
    lam = check_diversity(diversity)
    k, m, idx, vals, valid = user_candidates(scores, k, candidates)
    _check_categories(categories, user_categories, scores.shape[0], scores.shape[1])
    if lam == 0.0:
        return idx[:, :k].contiguous()
    dtype = compute_dtype(scores, user_categories)
    shares = genre_shares(categories).to(device=scores.device, dtype=dtype)
    users_p = user_categories.to(device=scores.device, dtype=dtype)
    per_user = (3 * shares.shape[1] + 6) * m * (torch.finfo(dtype).bits // 8)
    out = []
    for chunk in user_chunks(scores.shape[0], per_user, scores.device):
        v = vals[chunk].to(dtype)
        rel = minmax_over_candidates(v, m).masked_fill(~valid[chunk], 0.0)
        cand = shares[idx[chunk]]  # [b, M, C]
        pos = _calibrated_positions(rel, valid[chunk], cand, users_p[chunk], k, lam, alpha)
        out.append(idx[chunk].gather(1, pos))
    return torch.cat(out) if out else idx[:, :k]


def _calibrated_positions(
    rel: Tensor, valid: Tensor, cand: Tensor, p: Tensor, k: int, lam: float, alpha: float
) -> Tensor:
    """Greedy calibration; ``rel, valid: [b, M]``, ``cand: [b, M, C]``, ``p: [b, C]``."""
    users = torch.arange(rel.shape[0], device=rel.device)
    relevance = torch.where(valid, rel * (1.0 - lam), -torch.inf)
    total = torch.zeros_like(p)  # sum of the picked items' genre shares
    picks = []
    for step in range(k):
        q = (total.unsqueeze(1) + cand) / (step + 1)  # [b, M, C]: q of picked + i
        kl = kl_calibration(p.unsqueeze(1), q, alpha)  # [b, M]
        pos = torch.add(relevance, kl, alpha=-lam).argmax(dim=1)
        picks.append(pos)
        relevance[users, pos] = -torch.inf
        total = total + cand[users, pos]
    return torch.stack(picks, dim=1)
