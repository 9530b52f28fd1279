"""Greedy MAP inference of a DPP (Chen, Zhang & Zhou, NeurIPS 2018, Algorithm 1), batched.

Per user, over their top-``M`` candidates (seen items, score -inf, never enter), with ``r`` the
candidates' relevance (the scores as given; the ``Ranker`` min-max scales them to [0, 1] by
default, ``rerank.normalize``) and ``S`` the cosine similarity of the L2-normalised embeddings
(not clipped, so ``S`` is PSD; a zero embedding has ``S_ii = 0``):

* trade-off (Chen et al. 2018, Sec. 4): kernel ``L' = Diag(exp(alpha r)) S Diag(exp(alpha r))``
  with ``alpha = theta / (2 (1 - theta))``, so ``log det L'_Y = theta / (1 - theta) * sum_Y r
  + log det S_Y``. Their ``theta`` weighs relevance; divrec's ``diversity = 1 - theta``, hence
  ``alpha = (1 - diversity) / (2 diversity)``: 1 -> alpha = 0, the pure DPP on ``S`` (ties in
  the first pick go to the most relevant); 0.5 -> alpha = 0.5; 0.1 -> 4.5; 0 -> alpha = inf,
  the limit, returned directly as the top-k by score (the greedy's picks for any small enough
  diversity when the top-k items' embeddings are linearly independent). With
  ``rerank.normalize=false`` alpha multiplies raw scores, so its effect depends on their scale.
* greedy: ``det L'_{Y+i} / det L'_Y = exp(2 alpha r_i) d_i^2`` with ``d_i^2`` the residual of
  item i in ``S`` given the picks, so each step takes ``argmax 2 alpha r_i + log d_i^2`` and then
  updates every ``d_i^2`` by an incremental Cholesky step on ``S`` (O(M k^2) per user plus one
  similarity row per pick). Working in the log domain, no alpha can overflow or underflow.
* a candidate with ``d_i^2 <= 1e-6 * max_j S_jj`` lies in the span of the picks (its gain is
  round-off) and is not picked by the greedy; once none is left, the remaining slots are filled
  by score order of the unpicked candidates.

Ties follow the rule in :mod:`divrec.rerank.candidates` (higher relevance, then lower item index).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from divrec.rerank.candidates import user_candidates
from divrec.rerank.checks import (
    check_diversity,
    check_embeddings,
)
from divrec.rerank.kernels import CandidateSims, greedy_in_chunks, limit_cpu_threads

# A candidate whose residual d_i^2 is at most this times the user's largest S_ii is spanned.
DPP_EPS = 1e-6


def relevance_weight(diversity: float) -> float:
    """``alpha = (1 - diversity) / (2 diversity)`` of the kernel ``L'`` (inf at diversity 0)."""
    div = check_diversity(diversity)
    return math.inf if div == 0.0 else (1.0 - div) / (2.0 * div)


@limit_cpu_threads
def dpp(
    scores: Tensor,
    embeddings: Tensor,
    k: int,
    diversity: float,
    candidates: int | None = None,
) -> Tensor:
    """Re-rank each user's candidates by greedy DPP MAP inference on ``L'`` (module docstring).

    ``scores: [B, N]`` (-inf = seen), ``embeddings: [N, d]`` or ``[B, N, d]``; returns
    ``[B, k]`` int64 item indices into N, in pick order. ``diversity`` in [0, 1]: 0 = top-k by
    score (alpha = inf), 1 = pure DPP on the similarity (alpha = 0).
    """
    alpha = relevance_weight(diversity)
    k, m, idx, vals, valid = user_candidates(scores, k, candidates)
    check_embeddings(embeddings, scores.shape[0], scores.shape[1])
    if math.isinf(alpha):
        return idx[:, :k].contiguous()
    return greedy_in_chunks(_dpp_positions, vals, valid, embeddings, idx, k, alpha, k + 8)


def _dpp_positions(
    vals: Tensor, valid: Tensor, embeddings: Tensor, idx: Tensor, k: int, alpha: float
) -> Tensor:
    """Greedy DPP over candidate positions; ``vals, valid, idx: [b, M]``; returns ``[b, k]``."""
    b, m = idx.shape
    sims = CandidateSims(embeddings, idx, k, vals.dtype, self_sim=True)
    users = torch.arange(b, device=idx.device)
    # 2 alpha r_i (0 for seen candidates, which are never free); alpha = 0 ignores r entirely.
    rel = torch.where(valid, vals, 0.0).mul_(2.0 * alpha)
    resid = sims.self_sim.clone()  # d_i^2 in S, initially S_ii
    limit = DPP_EPS * torch.where(valid, resid, 0.0).amax(dim=1, keepdim=True)
    free = valid.clone()  # not seen, not picked
    comps = torch.empty(b, max(k - 1, 1), m, dtype=vals.dtype, device=idx.device)  # c_i rows
    picks = []
    for step in range(k):
        open_ = free & (resid > limit)
        key = torch.where(
            open_, rel + resid.clamp(min=torch.finfo(resid.dtype).tiny).log(), -math.inf
        )
        pos = key.argmax(dim=1)
        spent = ~open_.any(dim=1)  # nothing left outside the span: fill by score
        if bool(spent.any()):
            pos = torch.where(spent, free.to(torch.uint8).argmax(dim=1), pos)
        picks.append(pos)
        free[users, pos] = False
        if step == k - 1:
            break
        # e_i = (S_ji - <c_j, c_i>) / d_j for the pick j; then d_i^2 -= e_i^2.
        e = sims.rows(pos)
        if step > 0:
            c_pos = comps[:, :step].gather(2, pos.view(b, 1, 1).expand(b, step, 1))
            e = torch.baddbmm(e.unsqueeze(1), c_pos.transpose(1, 2), comps[:, :step], alpha=-1)
            e = e.squeeze(1)
        best = resid[users, pos]
        inv_d = torch.where(spent, 0.0, best.clamp(min=torch.finfo(best.dtype).tiny).rsqrt())
        torch.mul(e, inv_d.unsqueeze(1), out=comps[:, step])
        resid.addcmul_(comps[:, step], comps[:, step], value=-1)
    return torch.stack(picks, dim=1)
