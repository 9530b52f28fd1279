"""Per-user intra-list diversity and category coverage at several cut-offs.

Inputs are the recommended lists' item features, gathered per list position:
``cats: [users, K, C]`` 0/1 category rows, ``emb: [users, K, d]`` unit-normalised embeddings.
Each function returns ``[users, len(ks)]`` float64, computed for the prefix top-k of the list.
A list of length 1 has no pairs, so its ILD is defined as 0.

Items without categories: ``ild_cat`` leaves every pair with such an item out of its mean (a
top-k with no pair of categorised items gets 0, like k = 1), ``cat_coverage`` and
``interest_coverage`` count them as covering nothing. With no category at all in the catalogue
these metrics are undefined and the evaluator does not log them.
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


def _prefix_pair_sums(sim: Tensor, ks: list[int]) -> Tensor:
    """Sum of ``sim[b, i, j]`` over pairs i < j < k per cut-off: ``[users, len(ks)]`` float64.

    col[b, j] = sum_{i<j} sim[b, i, j]; its running sum over j is the pair sum of every prefix.
    """
    return _at(torch.triu(sim, diagonal=1).sum(1).double().cumsum(1), ks)


def _one_minus_mean_pair(sim: Tensor, ks: list[int], pairs: Tensor | None = None) -> Tensor:
    """1 - mean of ``sim[b, i, j]`` over pairs i < j < k, per cut-off; 0 where no pair.

    ``sim: [users, K, K]`` symmetric; ``pairs: [users, K, K]`` 0/1 optionally keeps only some
    pairs (``sim`` must be 0 on the others). Sums are accumulated in float64.
    """
    pair_sums = _prefix_pair_sums(sim, ks)
    n_pairs = _pair_counts(ks, pair_sums) if pairs is None else _prefix_pair_sums(pairs, ks)
    mean = pair_sums / n_pairs.clamp_min(1)
    return torch.where(n_pairs > 0, 1.0 - mean, torch.zeros_like(mean))


def ild_cat(cats: Tensor, ks: list[int]) -> Tensor:
    """1 - mean pairwise Jaccard similarity of the items' category sets in the top-k.

    ``cats: [users, K, C]`` 0/1. Jaccard(A, B) = |A & B| / |A | B|, averaged over the pairs of
    items that both have a category: an uncategorised item is not "different from everything"
    (that would rank lists of uncategorised items as the most diverse), it is left out. A top-k
    without such a pair gets 0.
    """
    x = cats.float()
    inter = torch.bmm(x, x.transpose(1, 2))  # [users, K, K] |A & B|, exact small integers
    size = x.sum(-1)  # [users, K]
    union = size[:, :, None] + size[:, None, :] - inter
    has = (size > 0).float()
    pairs = has[:, :, None] * has[:, None, :]  # both items categorised; inter = 0 elsewhere
    return _one_minus_mean_pair(inter / union.clamp_min(1.0), ks, pairs)


def ild_emb(emb: Tensor, ks: list[int]) -> Tensor:
    """1 - mean pairwise cosine similarity of the items' embeddings in the top-k.

    ``emb: [users, K, d]`` unit-normalised rows (a zero row has cosine 0 with everything).
    """
    x = emb.float()
    return _one_minus_mean_pair(torch.bmm(x, x.transpose(1, 2)), ks)


def covered_categories(cats: Tensor, ks: list[int]) -> Tensor:
    """0/1 categories present anywhere in the top-k: ``[users, len(ks), C]`` float64."""
    return (_at(cats.float().cumsum(1), ks) > 0).double()


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
