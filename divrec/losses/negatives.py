"""Extra sampled negatives for the in-batch softmax ("weighting" side of diversity training).

``loss.negatives``:

- ``in_batch`` (default): only the other items of the batch are negatives, corrected by
  ``log q_b`` with ``q_b = popularity / sum`` (:mod:`divrec.losses.relevance`, unchanged);
- ``uniform``: each step also draws ``loss.n_negatives`` items uniformly from the catalogue,
  shared by every row (mixed negative sampling, Yang et al., WWW 2020 companion, "Mixed
  Negative Sampling for Learning Two-tower Neural Networks in Recommendations");
- ``popularity``: those items are drawn with probability ``q_n(i) = pop_i^alpha / sum_j
  pop_j^alpha`` (``loss.negative_alpha``; 0 = uniform, 1 = as in-batch, 0.75 as word2vec's
  unigram^0.75), with replacement. Items without training interactions have pop 0 and are
  never drawn for alpha > 0.

With extra negatives the candidate set of a row is a draw of ``B`` items from ``q_b`` (the
batch) plus ``n`` items from ``q_n``; item ``i``'s expected count in it is
``c(i) = B q_b(i) + n q_n(i)``, and with ``loss.logq`` every column ``j`` (positive included,
in-batch or sampled) is lowered by ``log c(item_j)``: the sampled-softmax correction for a
sample from that mixture (Bengio & Senecal 2008; Yi et al. 2019 for the in-batch part). A
sampled negative equal to a row's own positive is masked (-inf) for that row, like duplicates
in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec.errors import ConfigError
from divrec.losses.relevance import duplicate_mask

NEGATIVE_SAMPLERS = ("in_batch", "uniform", "popularity")


def negative_distribution(popularity: Tensor, name: str, alpha: float = 0.75) -> Tensor:
    """``q_n: [N]`` float64 sampling probabilities of the extra negatives (``name`` != in_batch)."""
    if name not in NEGATIVE_SAMPLERS or name == "in_batch":
        raise ConfigError(
            f"loss.negatives: {name!r} draws no extra negatives; use uniform or popularity"
        )
    if name == "uniform":
        return torch.full(popularity.shape, 1.0 / popularity.numel(), dtype=torch.float64)
    w = popularity.double().clamp_min(0.0) ** float(alpha)
    if alpha > 0:
        w = torch.where(popularity > 0, w, torch.zeros_like(w))
    total = w.sum()
    if not total > 0:
        raise ConfigError("loss.negatives=popularity: no item has a training interaction")
    return w / total


def mixture_log_count(log_q_batch: Tensor, q_neg: Tensor, batch_size: int, n: int) -> Tensor:
    """``log c: [N]`` with ``c(i) = batch_size * exp(log_q_batch[i]) + n * q_neg[i]``."""
    c = batch_size * log_q_batch.double().exp() + n * q_neg.double()
    return torch.log(c)


def check_negatives(name: str, n: int, alpha: float, relevance: str) -> None:
    """One ConfigError for a bad ``loss.negatives`` / ``n_negatives`` / ``negative_alpha``."""
    if name not in NEGATIVE_SAMPLERS:
        raise ConfigError(
            f"loss.negatives: {name!r} unknown; choose one of {list(NEGATIVE_SAMPLERS)}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"loss.n_negatives must be an int >= 0, got {n!r}")
    if not float(alpha) >= 0:
        raise ConfigError(f"loss.negative_alpha must be >= 0, got {alpha!r}")
    if name != "in_batch" and n < 1:
        raise ConfigError(f"loss.negatives={name} needs loss.n_negatives >= 1")
    if name != "in_batch" and relevance != "softmax":
        raise ConfigError(f"loss.negatives={name} needs loss.relevance=softmax, got {relevance}")


def mixed_softmax_loss(
    user: Tensor,
    item: Tensor,
    item_idx: Tensor,
    neg: Tensor,
    neg_idx: Tensor,
    temperature: float | Tensor,
    log_count: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Softmax over the batch's items plus shared sampled negatives.

    ``user, item: [B, d]``, ``item_idx: [B]``, ``neg: [n, d]`` vectors of the sampled items
    ``neg_idx: [n]``; ``log_count: [N]`` (:func:`mixture_log_count`) or None (no correction).
    Returns ``(mean over rows of -log softmax(logits_i)[i], logits: [B, B + n])``.
    """
    logits = torch.cat([user @ item.T, user @ neg.T], dim=1) / temperature
    cols = torch.cat([item_idx, neg_idx])
    if log_count is not None:
        logits = logits - log_count[cols].to(logits.dtype).unsqueeze(0)
    hit = neg_idx.unsqueeze(0) == item_idx.unsqueeze(1)  # [B, n]: a row's own positive
    logits = logits.masked_fill(torch.cat([duplicate_mask(item_idx), hit], dim=1), float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target), logits
