"""Greedy MAP inference of a DPP (Chen, Zhang & Zhou, NeurIPS 2018, Algorithm 1), batched.

Per user, over their top-``M`` candidates (seen items, score -inf, never enter):

* kernel ``L = diag(q) S diag(q)``; ``S`` = cosine similarity of the L2-normalised embeddings,
  NOT clipped (clipping can make ``S`` indefinite and break the Cholesky updates; identical to
  a [0, 1] clip for non-negative embeddings); a zero embedding has ``S_ii = 0``.
* ``q = exp(beta * z)``, ``z = (score - mean) / (std + eps32)`` with mean and population std
  over the user's unseen candidates (pyversity's formulation), ``beta = (1 - diversity) * scale``;
  computed as ``exp(beta * (z - max z))``, the same picks without overflow for large ``scale``.
* greedy: pick ``argmax d_i^2`` (the marginal gain ``det(L_{Y+i}) / det(L_Y)``), then update
  every ``d_i^2`` by an incremental Cholesky step: O(M k^2) per user plus one similarity row
  per pick.
* stop: when the best ``d_j^2 <= 1e-6 * max_i L_ii`` (the set spans the kernel; further gains
  are round-off), the remaining slots are filled by score order of the unpicked candidates.
* ``diversity == 0`` short-circuits to the top-k by score (beta would be 1 yet the DPP would
  still trade off similarity, so pure relevance needs the explicit short-cut).

Ties follow the rule in :mod:`divrec.rerank.candidates` (higher relevance, then lower item index).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from divrec.errors import ConfigError
from divrec.rerank.candidates import user_candidates
from divrec.rerank.checks import (
    check_diversity,
    check_embeddings,
    compute_dtype,
)
from divrec.rerank.kernels import CandidateSims, limit_cpu_threads, speculative_rows, user_chunks

# Relative stopping threshold on the marginal gain d_j^2 (times the user's largest L_ii).
DPP_EPS = 1e-6
# Added to the standard deviation before standardising scores (float32 machine epsilon).
STD_EPS = float(torch.finfo(torch.float32).eps)


@limit_cpu_threads
def dpp(
    scores: Tensor,
    embeddings: Tensor,
    k: int,
    diversity: float,
    candidates: int | None = None,
    scale: float = 1.0,
) -> Tensor:
    """Re-rank each user's candidates by greedy DPP MAP inference.

    ``scores: [B, N]`` (-inf = seen), ``embeddings: [N, d]`` or ``[B, N, d]``; returns
    ``[B, k]`` int64 item indices into N, in pick order. ``diversity`` in [0, 1] (0 = top-k by
    score, 1 = similarity only); ``scale`` >= 0 multiplies the relevance weight ``beta``.
    """
    div = check_diversity(diversity)
    if not isinstance(scale, int | float) or not math.isfinite(scale) or scale < 0:
        raise ConfigError(f"rerank.scale must be a finite number >= 0, got {scale!r}")
    k, m, idx, vals, valid = user_candidates(scores, k, candidates)
    check_embeddings(embeddings, scores.shape[0], scores.shape[1])
    if div == 0.0:
        return idx[:, :k].contiguous()
    beta = (1.0 - div) * float(scale)
    dtype = compute_dtype(scores, embeddings)
    elem = torch.finfo(dtype).bits // 8
    per_user = (speculative_rows(k, m) + k + 8) * m * elem
    out = []
    for chunk in user_chunks(scores.shape[0], per_user, scores.device):
        emb = embeddings if embeddings.dim() == 2 else embeddings[chunk]
        pos = _dpp_positions(vals[chunk].to(dtype), valid[chunk], emb, idx[chunk], k, beta)
        out.append(idx[chunk].gather(1, pos))
    return torch.cat(out) if out else idx[:, :k]


def quality(vals: Tensor, valid: Tensor, beta: float) -> Tensor:
    """``q = exp(beta * z) / exp(beta * max z)``, z = scores standardised per user.

    ``vals, valid: [b, M]`` with candidates sorted (position 0 holds the maximum). Dividing by
    the user's largest q (a per-user constant: the greedy picks are unchanged, and the stop
    threshold is relative) keeps q in (0, 1], so large ``scale`` cannot overflow.
    """
    n = valid.sum(dim=1, keepdim=True)
    zero = torch.zeros_like(vals)
    mean = torch.where(valid, vals, zero).sum(dim=1, keepdim=True) / n
    centred = torch.where(valid, vals - mean, zero)
    std = (centred.pow(2).sum(dim=1, keepdim=True) / n).sqrt()
    z = centred / (std + STD_EPS)
    return torch.exp(beta * (z - z[:, :1]))


def _dpp_positions(
    vals: Tensor, valid: Tensor, embeddings: Tensor, idx: Tensor, k: int, beta: float
) -> Tensor:
    """Greedy DPP over candidate positions; ``vals, valid, idx: [b, M]``; returns ``[b, k]``."""
    b, m = idx.shape
    sims = CandidateSims(embeddings, idx, k, vals.dtype, self_sim=True)
    users = torch.arange(b, device=idx.device)
    q = quality(vals, valid, beta)
    # gain = d_i^2, initially L_ii; -inf marks seen and picked candidates.
    gain = torch.where(valid, q * q * sims.self_sim, -torch.inf)
    limit = DPP_EPS * gain.amax(dim=1)
    comps = torch.empty(b, max(k - 1, 1), m, dtype=vals.dtype, device=idx.device)  # c_i rows
    done = torch.zeros(b, dtype=torch.bool, device=idx.device)
    picks = []
    for step in range(k):
        pos = gain.argmax(dim=1)
        best = gain[users, pos]
        done |= best <= limit
        if bool(done.any()):  # fill by score: the first (most relevant) candidate left
            first_free = (gain > -torch.inf).to(torch.uint8).argmax(dim=1)
            pos = torch.where(done, first_free, pos)
        picks.append(pos)
        gain[users, pos] = -torch.inf
        if step == k - 1:
            break
        # e_i = (L_ji - <c_j, c_i>) / d_j for the pick j; then d_i^2 -= e_i^2.
        e = sims.rows(pos).mul_(q).mul_(q[users, pos].unsqueeze(1))
        if step > 0:
            c_pos = comps[:, :step].gather(2, pos.view(b, 1, 1).expand(b, step, 1))
            e = torch.baddbmm(e.unsqueeze(1), c_pos.transpose(1, 2), comps[:, :step], alpha=-1)
            e = e.squeeze(1)
        inv_d = torch.where(done, 0.0, best.clamp(min=torch.finfo(best.dtype).tiny).rsqrt())
        torch.mul(e, inv_d.unsqueeze(1), out=comps[:, step])
        gain.addcmul_(comps[:, step], comps[:, step], value=-1)
    return torch.stack(picks, dim=1)
