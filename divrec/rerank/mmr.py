"""Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998), batched over users.

Per user, over their top-``M`` candidates (seen items, score -inf, never enter): the first pick
is the highest score; each further pick is the argmax over the remaining candidates of
``(1 - diversity) * score - diversity * max_{j picked} cos(i, j)``. Raw scores are used (no
normalisation) and cosines are not clipped, as in pyversity's ``mmr`` except that pyversity
clips cosine to [0, 1] (identical for non-negative embeddings). Ties follow the rule in
:mod:`divrec.rerank.candidates` (higher relevance, then lower item index).
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.rerank.candidates import user_candidates
from divrec.rerank.checks import (
    check_diversity,
    check_embeddings,
)
from divrec.rerank.kernels import CandidateSims, greedy_in_chunks, limit_cpu_threads


@limit_cpu_threads
def mmr(
    scores: Tensor,
    embeddings: Tensor,
    k: int,
    diversity: float,
    candidates: int | None = None,
) -> Tensor:
    """Re-rank each user's candidates by MMR.

    ``scores: [B, N]`` (-inf = seen), ``embeddings: [N, d]`` or ``[B, N, d]``; returns
    ``[B, k]`` int64 item indices into N, in pick order. ``diversity`` in [0, 1]; 0 returns the
    top-k by score exactly.
    """
    lam = check_diversity(diversity)
    k, m, idx, vals, valid = user_candidates(scores, k, candidates)
    check_embeddings(embeddings, scores.shape[0], scores.shape[1])
    if lam == 0.0:
        return idx[:, :k].contiguous()
    return greedy_in_chunks(_mmr_positions, vals, valid, embeddings, idx, k, lam, 6)


def _mmr_positions(
    vals: Tensor, valid: Tensor, embeddings: Tensor, idx: Tensor, k: int, lam: float
) -> Tensor:
    """Greedy MMR over candidate positions; ``vals, valid, idx: [b, M]``; returns ``[b, k]``."""
    sims = CandidateSims(embeddings, idx, k, vals.dtype)
    users = torch.arange(idx.shape[0], device=idx.device)
    # (1 - lam) * score, -inf for seen and picked candidates so argmax never takes them.
    relevance = torch.where(valid, vals * (1.0 - lam), -torch.inf)
    max_sim = torch.full_like(vals, -torch.inf)
    # Candidates are sorted by relevance, so the first pick (highest score) is position 0.
    pos = torch.zeros(idx.shape[0], dtype=torch.long, device=idx.device)
    picks = [pos]
    for _ in range(1, k):
        relevance[users, pos] = -torch.inf
        torch.maximum(max_sim, sims.rows(pos), out=max_sim)
        pos = torch.add(relevance, max_sim, alpha=-lam).argmax(dim=1)
        picks.append(pos)
    return torch.stack(picks, dim=1)
