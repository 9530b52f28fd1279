"""Input checks shared by the batched re-rankers: scores, k, candidates, diversity, embeddings.

Each raises one clear ``ConfigError`` (a bad knob) or ``DataError`` (bad tensors) instead of a
failure deep inside a kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.errors import ConfigError, DataError


def check_diversity(diversity: float) -> float:
    """Return ``diversity`` as float; ConfigError unless it is a number in [0, 1]."""
    try:
        value = float(diversity)
    except (TypeError, ValueError):
        raise ConfigError(
            f"rerank.diversity must be a number in [0, 1], got {diversity!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"rerank.diversity must be in [0, 1], got {diversity!r}")
    return value


def check_scores(scores: Tensor, k: int, candidates: int | None) -> tuple[int, int]:
    """Validate ``scores: [users, items]``, ``k`` and ``candidates``; return ``(k, M)``.

    ``M`` (candidates per user) is ``candidates`` clipped to the number of items; None = all.
    """
    if not isinstance(scores, Tensor) or scores.dim() != 2 or not scores.is_floating_point():
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise DataError(f"rerank: scores must be a float [users, items] tensor, got {shape}")
    n_items = scores.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"rerank.k must be a positive int, got {k!r}")
    if k > n_items:
        raise ConfigError(f"rerank.k={k} exceeds the number of items ({n_items})")
    if candidates is None:
        return k, n_items
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < k:
        raise ConfigError(f"rerank.candidates must be None or an int >= k={k}, got {candidates!r}")
    return k, min(candidates, n_items)


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32 (half precision is upcast)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def require_valid(valid: Tensor, k: int) -> None:
    """DataError if a user has fewer than ``k`` unseen (finite-score) candidates."""
    counts = valid.sum(dim=1)
    short = counts < k
    if bool(short.any()):
        row = int(short.nonzero()[0, 0])
        raise DataError(
            f"rerank: user row {row} has only {int(counts[row])} unseen candidate items, "
            f"fewer than k={k}"
        )


def check_embeddings(embeddings: Tensor, n_users: int, n_items: int) -> None:
    """DataError unless ``embeddings`` is ``[items, d]`` or ``[users, items, d]`` and finite."""
    ok_shape = isinstance(embeddings, Tensor) and (
        (embeddings.dim() == 2 and embeddings.shape[0] == n_items)
        or (embeddings.dim() == 3 and embeddings.shape[:2] == (n_users, n_items))
    )
    if not ok_shape:
        shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings)
        raise DataError(
            f"rerank: embeddings must be [items={n_items}, d] or "
            f"[users={n_users}, items={n_items}, d], got {shape}"
        )
    # A finite sum proves finite entries (cheap); the exact test only runs when it is not.
    if embeddings.dim() == 2 and not bool(torch.isfinite(embeddings.sum())):
        if not bool(torch.isfinite(embeddings).all()):
            raise DataError("rerank: embeddings contain NaN or inf")
