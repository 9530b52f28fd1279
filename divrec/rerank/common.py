"""Shared pieces of the batched re-rankers: input checks, candidate selection, similarities.

Tie rule (used by every re-ranker, so a per-user reference loop can match exactly): each
user's candidates are ordered by score descending, equal scores by item index ascending;
every greedy step takes the first maximum in that order, i.e. the more relevant candidate,
then the lower item index, wins a tie.

Speed (CPU and GPU alike): the candidate embeddings of a block of users are gathered once and
the cosine similarities between each user's top-``T`` candidates and all of their ``M``
candidates are computed by one batched GEMM (``T = speculative_rows(k, M)``). Greedy picks
almost always fall in the top ``T``; a pick beyond it gets its similarity row from a batched
matvec over the (re-gathered) candidates of just those users, so results never depend on ``T``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from divrec.errors import ConfigError, DataError

# Bytes of gathered candidate embeddings per GEMM block: fits the L2/L3 of a small CPU; large
# on GPU where one big batched GEMM is best.
_CPU_BLOCK_BYTES = 12 << 20
_GPU_BLOCK_BYTES = 1 << 30
# Bytes of per-chunk state ([users, T, M] similarities etc.) before users are split in chunks.
_CPU_CHUNK_BYTES = 256 << 20
_GPU_CHUNK_BYTES = 4 << 30

# Intra-op threads on CPU while a re-ranker runs (None: keep torch's setting). The re-rankers
# issue hundreds of mid-sized parallel ops; with 2 threads on a busy 2-core machine each op's
# barrier can wait a scheduler time slice (measured 0.17 s idle -> 2-3 s under load), while one
# thread is ~1.5x slower when idle but degrades gracefully. Raise it on a dedicated machine.
CPU_THREADS: int | None = 1


@contextlib.contextmanager
def cpu_threads(device: torch.device) -> Iterator[None]:
    """Cap torch's intra-op threads at ``CPU_THREADS`` on CPU for the duration (restored)."""
    before = torch.get_num_threads()
    if device.type != "cpu" or CPU_THREADS is None or before <= CPU_THREADS:
        yield
        return
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_F = TypeVar("_F", bound=Callable[..., Tensor])


def limit_cpu_threads(fn: _F) -> _F:
    """Decorator: run a re-ranker (first argument ``scores``) under :func:`cpu_threads`."""

    @functools.wraps(fn)
    def wrapper(scores, *args, **kwargs):
        device = scores.device if isinstance(scores, Tensor) else torch.device("cpu")
        with cpu_threads(device):
            return fn(scores, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


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


def _canonical_order(idx: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder each row to score descending, then item index ascending (the tie rule)."""
    idx, perm = torch.sort(idx, dim=1)
    vals = vals.gather(1, perm)
    vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
    return idx.gather(1, perm), vals


def _exact_top(scores: Tensor, m: int) -> Tensor:
    """Item indices of the top-``m`` per row, boundary ties going to the lowest index.

    Slow path (a few passes over ``[rows, items]``) for rows whose m-th and (m+1)-th scores tie.
    """
    thr = torch.topk(scores, m, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = scores > thr
    need = m - above.sum(dim=1, keepdim=True)
    at = scores == thr
    take = above | (at & (at.cumsum(dim=1) <= need))
    return take.nonzero()[:, 1].view(scores.shape[0], m)


def _top_sorted(scores: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Values and indices of the ``m`` largest scores per row, descending (ties unordered).

    On CPU numpy's argpartition + argsort is 2-4x faster than ``torch.topk`` for this shape.
    NaN counts as largest in both, so it lands at the head.
    """
    if scores.device.type != "cpu":
        return torch.topk(scores, m, dim=1)
    arr = scores.detach()
    if arr.dtype not in (torch.float32, torch.float64):
        arr = arr.float()
    arr = arr.numpy()
    n_items = arr.shape[1]
    idx = np.argpartition(arr, n_items - m, axis=1)[:, n_items - m :]
    vals = np.take_along_axis(arr, idx, axis=1)
    order = np.argsort(-vals, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    return torch.from_numpy(vals).to(scores.dtype), torch.from_numpy(idx)


def _check_finite_head(vals: Tensor) -> None:
    """DataError on NaN or +inf among the selected top scores ``vals: [B, m]``.

    Selection treats NaN and +inf as the largest values, so they always land in ``vals``.
    """
    bad = torch.isnan(vals) | (vals == math.inf)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise DataError(f"rerank: scores contain NaN or +inf (user row {row})")


def select_candidates(scores: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each user's top-``m`` items in tie-rule order.

    Returns ``idx: [B, m]`` item indices, ``vals: [B, m]`` their scores and ``valid: [B, m]``
    (score > -inf; seen items carry -inf and never enter). DataError on NaN or +inf scores.
    """
    n_users, n_items = scores.shape
    if m >= n_items:
        vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
        _check_finite_head(vals)
    else:
        # One extra: if the m-th and (m+1)-th scores differ there is no tie at the boundary.
        vals, idx = _top_sorted(scores, m + 1)
        _check_finite_head(vals)
        boundary = vals[:, m - 1] == vals[:, m]
        vals, idx = vals[:, :m], idx[:, :m]
        if bool(boundary.any()):
            rows = boundary.nonzero()[:, 0]
            idx = idx.clone()
            idx[rows] = _exact_top(scores[rows], m)
            vals = scores.gather(1, idx)
        # topk orders equal scores arbitrarily: restore the tie rule in rows that have any.
        fix = boundary | (vals[:, 1:] == vals[:, :-1]).any(dim=1)
        if bool(fix.any()):
            rows = fix.nonzero()[:, 0]
            idx, vals = idx.clone(), vals.clone()
            idx[rows], vals[rows] = _canonical_order(idx[rows], vals[rows])
    return idx, vals, vals > -math.inf


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


@limit_cpu_threads
def top_k(scores: Tensor, k: int, candidates: int | None = None) -> Tensor:
    """Plain relevance order: ``[B, k]`` item indices of the highest scores (tie rule applies).

    ``candidates`` is accepted for a uniform signature; it cannot change the top-k.
    """
    k, _ = check_scores(scores, k, candidates)
    idx, _, valid = select_candidates(scores, k)
    require_valid(valid, k)
    return idx


def user_chunks(n_users: int, per_user_bytes: int, device: torch.device) -> list[slice]:
    """Split users into chunks whose working state stays within a device-dependent budget."""
    budget = _GPU_CHUNK_BYTES if device.type == "cuda" else _CPU_CHUNK_BYTES
    size = max(1, budget // max(1, per_user_bytes))
    return [slice(s, min(s + size, n_users)) for s in range(0, n_users, size)]


def speculative_rows(k: int, m: int) -> int:
    """Number of top candidate positions whose similarity rows are precomputed by GEMM.

    About 1.5 k, rounded up to a multiple of 16 (one AVX-512 register of float32: on CPU a
    GEMM of 16 columns costs the same as one of 10).
    """
    return min(m, 16 * math.ceil(1.5 * k / 16))


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


def _unit_rows(x: Tensor) -> Tensor:
    """L2-normalise the rows of ``x: [n, d]``; a zero row stays zero."""
    return torch.nn.functional.normalize(x, dim=1, eps=torch.finfo(x.dtype).tiny)


class CandidateSims:
    """Cosine similarities among each user's candidates, one similarity row per greedy pick.

    ``embeddings: [N, d]`` (shared) or ``[B, N, d]`` (per user), ``idx: [B, M]`` candidate item
    indices. Rows are L2-normalised (a zero vector stays zero: similarity 0 to everything,
    itself included). Cosines are not clipped, so the similarity matrix is a Gram matrix (PSD).
    """

    def __init__(
        self, embeddings: Tensor, idx: Tensor, k: int, dtype: torch.dtype, self_sim: bool = False
    ):
        device = idx.device
        self.idx = idx
        self.n_users, self.m = idx.shape
        self.shared = embeddings.dim() == 2
        emb = embeddings.to(device=device, dtype=dtype)
        self.emb = _unit_rows(emb) if self.shared else emb
        self.d = emb.shape[-1]
        self.t = speculative_rows(k, self.m)
        self.misses = 0  # picks served by the matvec fallback (for benchmarking)
        budget = _GPU_BLOCK_BYTES if device.type == "cuda" else _CPU_BLOCK_BYTES
        block = max(1, min(self.n_users, budget // (self.m * self.d * emb.element_size())))
        # ``head: [B, M, T]``: similarity of every candidate to each of the user's top T.
        self.head = torch.empty(self.n_users, self.m, self.t, dtype=dtype, device=device)
        # ``self_sim: [B, M]``: exactly 1 for non-zero embeddings, 0 for zero ones (DPP only).
        self.self_sim: Tensor | None = None
        if self_sim and self.shared:
            self.self_sim = (self.emb != 0).any(dim=1).to(dtype)[idx]
        elif self_sim:
            self.self_sim = torch.empty(self.n_users, self.m, dtype=dtype, device=device)
        buf = torch.empty(block * self.m, self.d, dtype=dtype, device=device)
        for s in range(0, self.n_users, block):
            users = torch.arange(s, min(s + block, self.n_users), device=device)
            cand, nonzero = self._gather(users, buf)
            top = cand[:, : self.t].transpose(1, 2)
            torch.bmm(cand, top, out=self.head[s : s + len(users)])
            if self.self_sim is not None and nonzero is not None:
                self.self_sim[s : s + len(users)] = nonzero

    def _gather(self, users: Tensor, buf: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Normalised candidate embeddings ``[n, M, d]`` of user rows ``users: [n]``.

        Per-user embeddings also return ``[n, M]`` "row is non-zero" (None when shared).
        """
        n = len(users)
        out = None if buf is None else buf[: n * self.m]
        if self.shared:
            flat = torch.index_select(self.emb, 0, self.idx[users].reshape(-1), out=out)
            return flat.view(n, self.m, self.d), None
        rows = (users[:, None] * self.emb.shape[1] + self.idx[users]).reshape(-1)
        flat = torch.index_select(self.emb.reshape(-1, self.d), 0, rows, out=out)
        if not bool(torch.isfinite(flat.sum())) and not bool(torch.isfinite(flat).all()):
            raise DataError("rerank: per-user embeddings contain NaN or inf")
        norm = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
        nonzero = (norm > 0).view(n, self.m)
        flat.div_(norm.clamp_(min=torch.finfo(flat.dtype).tiny))
        return flat.view(n, self.m, self.d), nonzero

    def rows(self, pos: Tensor) -> Tensor:
        """``[B, M]`` cosine similarity of each user's candidate at position ``pos: [B]``."""
        users = torch.arange(self.n_users, device=pos.device)
        out = self.head[users, :, pos.clamp(max=self.t - 1)]
        miss = pos >= self.t
        if bool(miss.any()):
            rows = miss.nonzero()[:, 0]
            self.misses += len(rows)
            cand, _ = self._gather(rows)
            picked = cand[torch.arange(len(rows), device=pos.device), pos[rows]]
            out[rows] = torch.bmm(cand, picked.unsqueeze(2)).squeeze(2)
        return out
