"""Beyond-accuracy metrics: novelty, alpha-nDCG (per user) and exposure metrics (global).

Per-user functions return ``[users, len(ks)]`` float64 for the prefix top-k of each list.
Global functions take the catalogue-wide exposure counts ``[N]`` (how often each item was
recommended in any evaluated top-k list) and return a scalar tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.metrics.accuracy import discounts

# Marginal gains closer than this are a tie in the greedy ideal list (lowest item id wins),
# so float rounding in the gain sums cannot flip the choice.
GAIN_TIE_TOL = 1e-9


def _at(x: Tensor, ks: list[int]) -> Tensor:
    return x[:, [k - 1 for k in ks]]


def self_information(popularity: Tensor, n_train_users: int) -> Tensor:
    """-log2(p_i) with p_i = popularity_i / n_train_users: ``[N]`` float64.

    Smoothing: an item with zero training popularity is given popularity 1 (it is then the
    most novel possible item, -log2(1 / n_train_users)), so the value stays finite.
    """
    pop = popularity.double().clamp_min(1.0)
    return -torch.log2(pop / float(n_train_users))


def novelty(item_info: Tensor, ks: list[int]) -> Tensor:
    """Mean self-information over the top-k. ``item_info: [users, K]`` from self_information."""
    k_t = torch.tensor(ks, dtype=torch.float64, device=item_info.device)
    return _at(item_info.double().cumsum(1), ks) / k_t


def truth_items(truth: Tensor) -> tuple[Tensor, Tensor]:
    """Ids of each user's truth items, ascending, padded: ``(ids [users, T], valid [users, T])``.

    ``truth: [users, N]`` bool; T is the largest truth size in the batch; padding ids are 0.
    """
    n_users = truth.shape[0]
    sizes = truth.sum(1)
    t_max = int(sizes.max()) if n_users else 0
    ids = torch.zeros(n_users, max(t_max, 1), dtype=torch.long, device=truth.device)
    nz = truth.nonzero()  # row-major: ids ascending within each user
    if nz.numel():
        first = sizes.cumsum(0) - sizes  # offset of each user's first entry in nz
        pos = torch.arange(nz.shape[0], device=truth.device) - first[nz[:, 0]]
        ids[nz[:, 0], pos] = nz[:, 1]
    valid = torch.arange(ids.shape[1], device=truth.device)[None, :] < sizes[:, None]
    return ids, valid


def _ideal_gains(truth_cats: Tensor, truth_valid: Tensor, steps: int, alpha: float) -> Tensor:
    """Greedy ideal list gains ``[users, steps]`` over each user's truth items.

    At each step the item with the largest marginal gain sum_a x_a (1-alpha)^count_a is taken
    (ties within GAIN_TIE_TOL: lowest item id, as ``truth_cats`` rows are in ascending id order).
    """
    x = truth_cats.double()  # [users, T, C]
    n_users = x.shape[0]
    rows = torch.arange(n_users, device=x.device)
    counts = x.new_zeros(n_users, x.shape[2])
    avail = truth_valid.clone()
    out = x.new_zeros(n_users, steps)
    for s in range(min(steps, x.shape[1])):  # loop over list positions, vectorised over users
        weight = (1.0 - alpha) ** counts  # [users, C]
        gain = (x * weight[:, None, :]).sum(-1).masked_fill(~avail, -1.0)
        best_gain = gain.max(1, keepdim=True).values
        best = (gain >= best_gain - GAIN_TIE_TOL).long().argmax(1)  # first (lowest id) near-max
        took = avail[rows, best]  # False once a user's truth items are exhausted
        out[:, s] = torch.where(took, gain[rows, best], torch.zeros_like(best_gain[:, 0]))
        counts += x[rows, best] * took[:, None]
        avail[rows, best] = False
    return out


def alpha_ndcg(
    hits: Tensor,
    cats: Tensor,
    truth_cats: Tensor,
    truth_valid: Tensor,
    alpha: float,
    ks: list[int],
) -> Tensor:
    """alpha-nDCG@k with categories as aspects (Clarke et al., 2008).

    ``hits: [users, K]`` 0/1, ``cats: [users, K, C]`` categories of the listed items,
    ``truth_cats: [users, T, C]`` / ``truth_valid: [users, T]`` the truth items (ascending ids).
    Gain at rank r = sum_a rel(d, a) (1-alpha)^(number of earlier relevant items with aspect a),
    rel(d, a) = 1 iff d is a truth item with aspect a; discount 1/log2(r+1). The ideal DCG uses
    the standard greedy list over the truth items; the value is 0 when the ideal DCG is 0.
    A truth item without categories has no aspect: it adds no gain (nor ideal gain); with no
    category in the catalogue the metric is undefined and the evaluator leaves it out.
    """
    k_max = hits.shape[1]
    rel = hits.double()[:, :, None] * cats.double()  # [users, K, C]
    earlier = rel.cumsum(1) - rel
    gain = (rel * (1.0 - alpha) ** earlier).sum(-1)  # [users, K]
    disc = discounts(k_max, hits.device)
    dcg = _at((gain * disc).cumsum(1), ks)
    ideal = _ideal_gains(truth_cats, truth_valid, k_max, alpha)
    idcg = _at((ideal * disc).cumsum(1), ks)
    return torch.where(idcg > 0, dcg / idcg.clamp_min(1e-300), torch.zeros_like(dcg))


def item_coverage(counts: Tensor) -> Tensor:
    """Share of the N catalogue items recommended to at least one user."""
    return (counts > 0).double().mean()


def gini(counts: Tensor) -> Tensor:
    """Gini index of exposure counts over all N items: 0 = equal, (N-1)/N = one item only.

    Sorted formula: G = sum_i (2i - N - 1) x_(i) / (N sum_i x_i), x ascending, i = 1..N.
    Defined as 0 when nothing was recommended.
    """
    x = torch.sort(counts.double()).values
    n = x.numel()
    total = x.sum()
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    g = ((2 * i - n - 1) * x).sum() / (n * total.clamp_min(1e-300))
    return torch.where(total > 0, g, torch.zeros_like(g))


def dist_coverage(counts: Tensor) -> Tensor:
    """Shannon entropy in bits of the distribution of recommended items over all lists."""
    total = counts.double().sum()
    p = counts.double() / total.clamp_min(1e-300)
    terms = torch.where(p > 0, -p * torch.log2(p.clamp_min(1e-300)), torch.zeros_like(p))
    return terms.sum()
