"""Per-user intra-list diversity and category coverage at several cut-offs.

Inputs are the recommended lists' item features, gathered per list position:
``cats: [users, K, C]`` 0/1 category rows, ``emb: [users, K, d]`` unit-normalised embeddings.
Each function returns ``[users, len(ks)]`` float64, computed for the prefix top-k of the list.
A list of length 1 has no pairs, so its ILD is defined as 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _at(x: Tensor, ks: list[int]) -> Tensor:
    """Entries ``k-1`` along dim 1 of a running quantity ``x: [users, K, ...]``."""
    return x[:, [k - 1 for k in ks]]


def _pair_counts(ks: list[int], ref: Tensor) -> Tensor:
    """Number of unordered pairs k(k-1)/2 per cut-off: ``[len(ks)]`` float64."""
    return torch.tensor([k * (k - 1) / 2 for k in ks], dtype=torch.float64, device=ref.device)


def _mean_from_pair_sums(pair_sums: Tensor, ks: list[int]) -> Tensor:
    """Mean over pairs from pair sums ``[users, len(ks)]``; 0 where k = 1 (no pairs)."""
    n_pairs = _pair_counts(ks, pair_sums)
    return torch.where(n_pairs > 0, pair_sums / n_pairs.clamp_min(1), torch.zeros_like(pair_sums))


def ild_cat(cats: Tensor, ks: list[int]) -> Tensor:
    """1 - mean pairwise Jaccard similarity of the items' category sets in the top-k.

    ``cats: [users, K, C]`` 0/1. Jaccard(A, B) = |A & B| / |A | B|; two empty sets have
    Jaccard 0 (they share nothing), so such a pair counts as fully diverse.
    """
    x = cats.float()
    inter = torch.bmm(x, x.transpose(1, 2)).double()  # [users, K, K] |A & B|
    size = x.sum(-1).double()  # [users, K]
    union = size[:, :, None] + size[:, None, :] - inter
    jac = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))
    k_max = cats.shape[1]
    upper = torch.ones(k_max, k_max, dtype=torch.bool, device=cats.device).triu(1)
    # col[b, j] = sum_{i<j} J[b, i, j]; its running sum over j gives the pair sums of prefixes.
    col = (jac * upper).sum(1)
    sims = _mean_from_pair_sums(_at(col.cumsum(1), ks), ks)
    return torch.where(_pair_counts(ks, sims) > 0, 1.0 - sims, torch.zeros_like(sims))


def ild_emb(emb: Tensor, ks: list[int]) -> Tensor:
    """1 - mean pairwise cosine similarity of the items' embeddings in the top-k.

    ``emb: [users, K, d]`` unit-normalised (zero rows allowed: cosine with a zero vector is 0).
    Uses sum_{i<j} <e_i, e_j> = (|sum_i e_i|^2 - sum_i |e_i|^2) / 2, so the cost is
    O(users * K * d) instead of a [K, K] Gram matrix per user.
    """
    e = emb.double()
    run = _at(e.cumsum(1), ks)  # [users, len(ks), d] prefix sums
    sq = (run * run).sum(-1)
    self_sq = _at((e * e).sum(-1).cumsum(1), ks)
    sims = _mean_from_pair_sums((sq - self_sq) / 2, ks)
    return torch.where(_pair_counts(ks, sims) > 0, 1.0 - sims, torch.zeros_like(sims))


def covered_categories(cats: Tensor, ks: list[int]) -> Tensor:
    """0/1 categories present anywhere in the top-k: ``[users, len(ks), C]`` float64."""
    return (_at(cats.double().cumsum(1), ks) > 0).double()


def cat_coverage(cats: Tensor, ks: list[int]) -> Tensor:
    """Distinct categories in the top-k divided by the number of catalogue categories C."""
    return covered_categories(cats, ks).sum(-1) / cats.shape[-1]


def interest_coverage(cats: Tensor, interests: Tensor, ks: list[int]) -> tuple[Tensor, Tensor]:
    """Share of the user's true interest categories that the top-k covers.

    ``interests: [users, C]`` 0/1. Returns ``(values [users, len(ks)], valid [users])``;
    users with no interest category are invalid (value 0) and left out of the average.
    """
    want = interests.double()
    n_want = want.sum(-1)  # [users]
    got = (covered_categories(cats, ks) * want[:, None, :]).sum(-1)
    valid = n_want > 0
    return got / n_want.clamp_min(1)[:, None], valid
