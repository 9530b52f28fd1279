"""Shared plain-Python reference pieces for the re-ranker tests (independent of divrec code)."""

from __future__ import annotations

import numpy as np
import torch


def ref_candidates(row: np.ndarray, m: int) -> list[int]:
    """Top-``m`` items of one user by (score desc, index asc), seen (-inf) items dropped."""
    order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:m]
    return [i for i in order if row[i] > -np.inf]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.finfo(x.dtype).tiny)


def random_case(
    seed: int,
    n_users: int = 8,
    n_items: int = 50,
    dim: int = 6,
    per_user: bool = False,
    n_seen: int = 10,
    nonneg: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``scores: [B, N]`` with ``n_seen`` -inf items per user, and embeddings."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(n_users, n_items, generator=gen, dtype=torch.float64)
    for u in range(n_users):
        seen = torch.randperm(n_items, generator=gen)[:n_seen]
        scores[u, seen] = -torch.inf
    shape = (n_users, n_items, dim) if per_user else (n_items, dim)
    emb = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return scores, emb.abs() if nonneg else emb


def user_embeddings(emb: torch.Tensor, u: int) -> np.ndarray:
    """``[N, d]`` embeddings seen by user ``u`` (shared or per-user input)."""
    return (emb if emb.dim() == 2 else emb[u]).numpy()
