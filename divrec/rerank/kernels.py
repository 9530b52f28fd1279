"""Speed tricks of the re-rankers, kept apart from what they compute.

Each trick says what it buys, measured by ``make bench`` (``experiments/benchmarks``) on the
2-core CPU this project is developed on; results never depend on any of them.

- ``CandidateSims``: the cosine similarities between each user's top-``T`` candidates and all
  ``M`` candidates come from one batched GEMM per block of users (``T = speculative_rows``);
  a greedy pick beyond ``T`` gets its row from a batched matvec instead. This is what makes
  the batched MMR/DPP 2.3-2.6x faster than a per-user numpy loop (pyversity) with identical
  picks; a plain einsum over ``[B, M, d]`` at every step was 2-5x slower than that loop.
- Block and chunk budgets: the gathered candidate embeddings of one GEMM block fit a small
  CPU's L2/L3 (12 MiB) and the per-chunk state stays under 256 MiB (GPU: 1 GiB / 4 GiB).
- ``CPU_THREADS``: one intra-op thread while a re-ranker runs on the CPU (see below).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import Tensor

from divrec.errors import DataError
from divrec.rerank.checks import compute_dtype

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


def greedy_in_chunks(
    positions: Callable[..., Tensor],
    vals: Tensor,
    valid: Tensor,
    embeddings: Tensor,
    idx: Tensor,
    k: int,
    knob: float,
    state_rows: int,
) -> Tensor:
    """Run an embedding re-ranker's greedy ``positions(vals, valid, emb, idx, k, knob)`` over
    chunks of users whose state (``speculative_rows + state_rows`` rows of ``[M]`` per user)
    fits the device budget; ``vals, valid, idx: [B, M]``; returns item indices ``[B, k]``."""
    dtype = compute_dtype(vals, embeddings)
    m = idx.shape[1]
    per_user = (speculative_rows(k, m) + state_rows) * m * (torch.finfo(dtype).bits // 8)
    out = []
    for chunk in user_chunks(idx.shape[0], per_user, idx.device):
        emb = embeddings if embeddings.dim() == 2 else embeddings[chunk]
        pos = positions(vals[chunk].to(dtype), valid[chunk], emb, idx[chunk], k, knob)
        out.append(idx[chunk].gather(1, pos))
    return torch.cat(out) if out else idx[:, :k]
