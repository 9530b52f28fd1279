"""xQuAD (Santos, Macdonald & Ounis, WWW 2010) with categories as aspects, batched over users.

Per user, over their top-``M`` candidates (seen items, score -inf, never enter), each step
picks the argmax over the remaining candidates ``i`` of

    (1 - diversity) * P(i|u) + diversity * sum_c P(c|u) * P(i|c) * prod_{j picked} (1 - P(j|c))

* ``P(i|u)``: min-max normalised score over the user's unseen candidates, in [0, 1] (0 for all
  when every candidate has the same score). Min-max keeps the two terms on one [0, 1] scale and
  is order-preserving, so diversity 0 is exactly the top-k.
* ``P(i|c) = categories[i, c]``: binary coverage (1 if the item has the category), the common
  recsys choice; fractional values in [0, 1] are used as given.
* ``P(c|u) = user_categories[u, c]``: the user's category distribution from training history,
  used as given (rows expected to sum to 1; not renormalised).

Ties follow the rule in :mod:`divrec.rerank.candidates` (higher relevance, then lower item index).
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.errors import DataError
from divrec.rerank.candidates import minmax_over_candidates, user_candidates
from divrec.rerank.checks import check_diversity, compute_dtype
from divrec.rerank.kernels import limit_cpu_threads, user_chunks


def _check_categories(categories: Tensor, user_categories: Tensor, n_users: int, n_items: int):
    """DataError unless ``categories: [N, C]`` in [0, 1] and ``user_categories: [B, C]`` >= 0."""
    if not isinstance(categories, Tensor) or categories.dim() != 2 or len(categories) != n_items:
        shape = tuple(categories.shape) if isinstance(categories, Tensor) else type(categories)
        raise DataError(f"rerank: categories must be [items={n_items}, C], got {shape}")
    n_cat = categories.shape[1]
    if (
        not isinstance(user_categories, Tensor)
        or user_categories.dim() != 2
        or tuple(user_categories.shape) != (n_users, n_cat)
    ):
        shape = tuple(user_categories.shape) if isinstance(user_categories, Tensor) else None
        raise DataError(
            f"rerank: user_categories must be [users={n_users}, C={n_cat}], got {shape}"
        )
    cats = categories.float()
    if not bool(((cats >= 0) & (cats <= 1)).all()):
        raise DataError("rerank: categories must hold values in [0, 1] (0/1 coverage)")
    user = user_categories.float()
    if not bool((torch.isfinite(user) & (user >= 0)).all()):
        raise DataError("rerank: user_categories must be finite and non-negative")


@limit_cpu_threads
def xquad(
    scores: Tensor,
    categories: Tensor,
    k: int,
    diversity: float,
    user_categories: Tensor,
    candidates: int | None = None,
) -> Tensor:
    """Re-rank each user's candidates by xQuAD over item categories.

    ``scores: [B, N]`` (-inf = seen), ``categories: [N, C]`` 0/1, ``user_categories: [B, C]``;
    returns ``[B, k]`` int64 item indices into N, in pick order. ``diversity`` in [0, 1]; 0
    returns the top-k by score exactly.
    """
    lam = check_diversity(diversity)
    k, m, idx, vals, valid = user_candidates(scores, k, candidates)
    _check_categories(categories, user_categories, scores.shape[0], scores.shape[1])
    if lam == 0.0:
        return idx[:, :k].contiguous()
    dtype = compute_dtype(scores, user_categories)
    cats = categories.to(device=scores.device, dtype=dtype)
    users_p = user_categories.to(device=scores.device, dtype=dtype)
    per_user = (cats.shape[1] + 6) * m * (torch.finfo(dtype).bits // 8)
    out = []
    for chunk in user_chunks(scores.shape[0], per_user, scores.device):
        v = vals[chunk].to(dtype)  # P(i|u): scores min-max scaled over the unseen candidates
        rel = minmax_over_candidates(v, m).masked_fill(~valid[chunk], 0.0)
        cand_cats = cats[idx[chunk]].transpose(1, 2).contiguous()  # [b, C, M]
        pos = _xquad_positions(rel, valid[chunk], cand_cats, users_p[chunk], k, lam)
        out.append(idx[chunk].gather(1, pos))
    return torch.cat(out) if out else idx[:, :k]


def _xquad_positions(
    rel: Tensor, valid: Tensor, cand_cats: Tensor, user_p: Tensor, k: int, lam: float
) -> Tensor:
    """Greedy xQuAD; ``rel, valid: [b, M]``, ``cand_cats: [b, C, M]``, ``user_p: [b, C]``."""
    users = torch.arange(rel.shape[0], device=rel.device)
    # (1 - lam) * P(i|u), -inf for seen and picked candidates so argmax never takes them.
    relevance = torch.where(valid, rel * (1.0 - lam), -torch.inf)
    uncovered = torch.ones_like(user_p)  # prod_{j picked} (1 - P(j|c))
    picks = []
    for _ in range(k):
        weight = (user_p * uncovered).unsqueeze(1)  # [b, 1, C]
        coverage = torch.bmm(weight, cand_cats).squeeze(1)  # [b, M]
        pos = torch.add(relevance, coverage, alpha=lam).argmax(dim=1)
        picks.append(pos)
        relevance[users, pos] = -torch.inf
        uncovered = uncovered * (1.0 - cand_cats[users, :, pos])
    return torch.stack(picks, dim=1)
