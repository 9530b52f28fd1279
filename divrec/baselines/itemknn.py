"""Item-based k-nearest-neighbours with shrunk cosine similarity (as RecBole's ItemKNN)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from divrec.baselines.base import (
    Baseline,
    check_train,
    csr_tensors,
    fixed_width_csr,
    is_int,
    is_number,
    require,
    rows_to_dense,
)
from divrec.rerank.candidates import select_candidates
from divrec.rerank.kernels import cpu_threads
from divrec.utils.budget import Estimate, check_budget, parse_budget

# Each similarity block [b, A] stays under ~2M cells: its temporaries (the sparse product, its
# dense copy, the denominators, top-k's work) peak at ~50 MB instead of ~200 MB at 8M cells,
# for the same speed (the sparse product's cost is per row, not per block).
_BLOCK_ELEMENTS = 1 << 21


class ItemKNN(Baseline):
    """score(u, j) = Σ_{i ∈ H_u, i ∈ nn_k(j)} sim(i, j).

    sim(i, j) = <r_i, r_j> / (|r_i| |r_j| + shrink) over the columns r of the 0/1 training
    matrix, sim(j, j) = 0 (0 where the denominator is 0, i.e. an item with no interactions).
    Direction as RecBole's ItemKNN: for each target item j (a column of W) we keep its k most
    similar items i; ties go to the lower item index. Only the ``A`` items with training
    interactions take part: any other item has sim 0 with every item, so it scores 0 and adds
    nothing as a neighbour, exactly as in the full computation (and RecBole's). Stored as
    neighbour lists ``knn_idx``/``knn_sim`` [A, k] over active positions (row j holds j's
    neighbours), never a dense [N, N] matrix; the similarity is computed in blocks of target
    items (dot products with scipy on the CPU, the rest on the module's device), so a fit
    holds one [b, A] block (b·A <= 8M cells) and the [A, k] lists; a fit whose peak
    (:func:`memory_estimate`) exceeds ``max_memory_gb`` ("auto": what is available) is
    refused in one line before it starts.
    """

    needs_training = False

    def __init__(
        self, k: int = 100, shrink: float = 0.0, max_memory_gb: float | str = "auto"
    ) -> None:
        super().__init__()
        require(is_int(k) and k >= 1, f"ItemKNN: k must be an integer >= 1, got {k!r}")
        require(
            is_number(shrink) and shrink >= 0,
            f"ItemKNN: shrink must be a number >= 0, got {shrink!r}",
        )
        self.k = int(k)
        self.shrink = float(shrink)
        parse_budget(max_memory_gb, "ItemKNN")
        self.max_memory_gb = max_memory_gb
        self.register_buffer("knn_idx", torch.empty(0, 0, dtype=torch.long))  # [A, k]
        self.register_buffer("knn_sim", torch.empty(0, 0))  # [A, k]
        self.register_buffer("active", torch.empty(0, dtype=torch.long))  # item indices [A]
        self.register_buffer("n_cols", torch.zeros((), dtype=torch.long))  # N
        self.register_buffer("train_indptr", torch.empty(0, dtype=torch.long))  # [U+1]
        self.register_buffer("train_indices", torch.empty(0, dtype=torch.long))  # [nnz] in [0, A)

    def fit(self, train: sp.csr_matrix) -> None:
        """Compute each item's top-k neighbours from the [U, N] training matrix."""
        x = check_train(train, self.expected_shape)
        device = self.buffer_device
        with cpu_threads(device):  # mid-sized ops: 2 threads on a busy CPU cost 1.2-1.8x
            self._fit(x, device)

    def _fit(self, x: sp.csr_matrix, device: torch.device) -> None:
        """fit on the checked binary CSR ``x`` [U, N]."""
        active = np.flatnonzero(np.diff(x.tocsc().indptr))  # items with interactions [A]
        xa = x[:, active].tocsr()  # [U, A]; active keeps the item order, so ties are unchanged
        n_active = xa.shape[1]
        k = min(self.k, n_active)
        check_budget(
            memory_estimate(x, n_active, k, device),
            self.max_memory_gb,
            f"ItemKNN: {k} neighbours of {n_active:,} items",
            "lower model.options.k, shrink the catalogue (data.preprocess.kcore_item), or "
            "raise model.options.max_memory_gb",
            device,
        )
        xt = xa.T.tocsr()  # [A, U]; row j is the item column r_j
        norms = torch.from_numpy(np.sqrt(np.diff(xt.indptr)).astype(np.float32)).to(device)  # [A]
        # Row j of knn_idx lists j's neighbours in increasing item order (CSR rows of Wᵀ).
        knn_idx = torch.empty(n_active, k, dtype=torch.long, device=device)
        knn_sim = torch.empty(n_active, k, device=device)
        block = block_rows(n_active)
        for start in range(0, n_active, block):
            end = min(start + block, n_active)
            # Sparse x sparse on the CPU costs sum over users of deg², far below A x nnz.
            dots = torch.from_numpy((xt[start:end] @ xa).toarray()).to(device)  # [b, A]
            targets = torch.arange(start, end, device=device)  # [b]
            denom = (norms[targets].unsqueeze(1) * norms.unsqueeze(0)).add_(self.shrink)
            sim = dots.div_(denom)
            del denom  # every active norm is >= 1, so denom > 0
            sim[torch.arange(end - start, device=device), targets] = 0.0
            knn_idx[start:end], knn_sim[start:end] = neighbours(sim, k)
        self.knn_idx, self.knn_sim = knn_idx, knn_sim
        self.active = torch.from_numpy(active.astype(np.int64)).to(device)
        self.n_cols = torch.tensor(x.shape[1], device=device)
        self.train_indptr, self.train_indices = csr_tensors(xa, device)  # X [U, A]

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> X_u [B, A] @ W [A, A] (W[i, j] = kept sim(i, j)) -> scores [B, N],
        0 for items without training interactions."""
        self._check_fitted(self.knn_sim)
        n_active = len(self.active)
        x_u = rows_to_dense(self.train_indptr, self.train_indices, user_idx, n_active)  # [B, A]
        w_t = fixed_width_csr(self.knn_idx, self.knn_sim, n_active)  # Wᵀ: row j = j's neighbours
        out = x_u.new_zeros(len(x_u), int(self.n_cols))
        with cpu_threads(x_u.device):  # sparse @ dense: 0.15 s on 1 thread, 0.5 s on 2 (busy)
            out[:, self.active] = (w_t @ x_u.T).T
        return out


def neighbours(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k most similar columns (ties to the lower index, the re-rankers' rule).

    sim: [b, N] -> (indices Long[b, k], values [b, k]), each row sorted by column index as
    :func:`~divrec.baselines.base.fixed_width_csr` needs.
    """
    idx, vals, _ = select_candidates(sim, k)
    idx, order = idx.sort(dim=1)
    return idx, vals.gather(1, order)


def block_rows(n_active: int) -> int:
    """Target items per similarity block: [b, A] stays under ``_BLOCK_ELEMENTS`` cells."""
    return max(1, min(n_active, _BLOCK_ELEMENTS // n_active))


def memory_estimate(x: sp.csr_matrix, n_active: int, k: int, device: torch.device) -> Estimate:
    """Bytes ``ItemKNN.fit`` holds at once for the checked [U, N] float32 CSR ``x``.

    Three CSR copies of X (CSC, active columns, transposed: 8 bytes per non-zero each, + 16
    in the block product), the neighbour lists [A, k] (int64 + float32) and one block
    [b, A]: its sparse dot products (at most b·A non-zeros, 8 bytes each), their dense
    float32 copy, the denominator, and the top-k selection (int64 indices + float32 values).
    """
    cells = block_rows(n_active) * n_active
    host = 40 * x.nnz + 12 * cells  # CSR copies, the sparse block and its dense copy
    dev = 12 * n_active * k + 20 * cells  # lists; dense block, denominator, top-k
    e = Estimate()
    phase = "CSR copies of X, one similarity block [b, A], neighbour lists [A, k]"
    if device.type == "cuda":
        e.add(phase, host)
        e.add(phase, dev, "cuda")
    else:
        e.add(phase, host + dev - 4 * cells)  # the dense block is not copied
    return e
