"""Relevance losses for a two-tower model trained with in-batch negatives.

A train batch holds B (user, positive item) pairs. Row ``i`` of the [B, B] score matrix scores
user ``i`` against every item of the batch: the diagonal holds the positives, the off-diagonal
columns serve as sampled negatives.

Two corrections are applied to the scores:

* **logQ correction** (Yi et al. 2019, "Sampling-bias-corrected neural modeling for large corpus
  item recommendations"): in-batch negatives are drawn proportionally to item popularity, so
  the score of column ``j`` is lowered by ``log_q[item_idx[j]]`` (for every row, positive
  included). Without it popular items are over-penalised as negatives.
* **Duplicate masking**: when the same item appears more than once in a batch, the other
  columns holding a row's own positive item are set to ``-inf`` for that row, so the positive
  is never also counted as a negative. The diagonal is always kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec.errors import ConfigError, DataError

RelevanceLoss = Callable[..., tuple[Tensor, Tensor]]


def _check_inputs(
    user: Tensor, item: Tensor, item_idx: Tensor, temperature: float | Tensor, log_q: Tensor | None
) -> None:
    """Raise a one-line DataError/ConfigError on inconsistent batch tensors."""
    if user.ndim != 2 or item.ndim != 2 or user.shape != item.shape:
        raise DataError(
            f"relevance loss: user and item must both be [B, d], got {tuple(user.shape)} "
            f"and {tuple(item.shape)}"
        )
    if item_idx.shape != (user.shape[0],):
        raise DataError(
            f"relevance loss: item_idx must be [B]={user.shape[0]}, got {tuple(item_idx.shape)}"
        )
    if item_idx.dtype.is_floating_point or item_idx.dtype == torch.bool:
        raise DataError(f"relevance loss: item_idx must be an integer tensor, got {item_idx.dtype}")
    if log_q is not None and log_q.ndim != 1:
        raise DataError(f"relevance loss: log_q must be [N], got {tuple(log_q.shape)}")
    if not isinstance(temperature, Tensor) and not temperature > 0:
        raise ConfigError(f"relevance loss: temperature must be > 0, got {temperature}")


def duplicate_mask(item_idx: Tensor) -> Tensor:
    """``mask: [B, B]`` bool, True where column j holds row i's positive item and j != i."""
    same = item_idx.unsqueeze(1) == item_idx.unsqueeze(0)
    return same & ~torch.eye(item_idx.shape[0], dtype=torch.bool, device=item_idx.device)


def in_batch_logits(
    user: Tensor,
    item: Tensor,
    item_idx: Tensor,
    temperature: float | Tensor,
    log_q: Tensor | None = None,
) -> Tensor:
    """In-batch scores ``logits: [B, B] = user @ item.T / temperature`` (row = user, col = item).

    With ``log_q: [N]`` given, ``log_q[item_idx[j]]`` is subtracted from column j. Duplicate
    columns of each row's own positive are ``-inf`` (see module docstring). Pass
    ``log_q=None`` to get the model's uncorrected (serving) scores, e.g. for diversity terms.
    """
    _check_inputs(user, item, item_idx, temperature, log_q)
    logits = user @ item.T / temperature
    if log_q is not None:
        logits = logits - log_q[item_idx].to(logits.dtype).unsqueeze(0)
    return logits.masked_fill(duplicate_mask(item_idx), float("-inf"))


def sampled_softmax_loss(
    user: Tensor,
    item: Tensor,
    item_idx: Tensor,
    temperature: float | Tensor,
    log_q: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """In-batch sampled softmax: mean over rows of ``-log softmax(logits_i)[i]``.

    user, item: [B, d]; item_idx: [B] catalogue indices (duplicates allowed); log_q: [N] log
    sampling probability per catalogue item. Returns ``(loss scalar, logits: [B, B])`` where the
    logits are the logQ-corrected, duplicate-masked scores the loss was computed on.
    """
    logits = in_batch_logits(user, item, item_idx, temperature, log_q)
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target), logits


def bpr_loss(
    user: Tensor,
    item: Tensor,
    item_idx: Tensor,
    temperature: float | Tensor,
    log_q: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """BPR with in-batch negatives: mean of ``-log sigmoid(s_ii - s_ij)`` over valid pairs.

    Valid pairs are (i, j) with j != i and item_idx[j] != item_idx[i]; ``s`` are the same
    logQ-corrected, masked logits as :func:`sampled_softmax_loss`. A batch with no valid pair
    (B = 1 or one repeated item) gives a zero loss that is still attached to the graph.
    Returns ``(loss scalar, logits: [B, B])``.
    """
    logits = in_batch_logits(user, item, item_idx, temperature, log_q)
    valid = item_idx.unsqueeze(1) != item_idx.unsqueeze(0)  # excludes the diagonal as well
    pos = logits.diagonal().unsqueeze(1)
    # where() before softplus keeps -inf entries (masked duplicates) out of the gradient.
    diff = torch.where(valid, logits - pos, torch.zeros_like(logits))
    pair_loss = F.softplus(diff)  # -log sigmoid(s_ii - s_ij) == softplus(s_ij - s_ii)
    n_valid = valid.sum().clamp_min(1)
    loss = (pair_loss * valid).sum() / n_valid
    return loss, logits


RELEVANCE_LOSSES: dict[str, RelevanceLoss] = {
    "softmax": sampled_softmax_loss,
    "bpr": bpr_loss,
}


def get_relevance_loss(name: str) -> RelevanceLoss:
    """Look up a relevance loss by config name; ConfigError lists the known names."""
    try:
        return RELEVANCE_LOSSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown relevance loss {name!r}; choose one of {sorted(RELEVANCE_LOSSES)}"
        ) from None
