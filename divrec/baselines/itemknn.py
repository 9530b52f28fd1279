"""Item-based k-nearest-neighbours with shrunk cosine similarity (as RecBole's ItemKNN)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from divrec.baselines.base import (
    Baseline,
    check_train,
    csr_tensors,
    is_int,
    is_number,
    require,
    rows_to_dense,
    sorted_coo,
)

_BLOCK_ELEMENTS = 1 << 23  # similarity block [N, b] and dense slice [b, U] stay under ~8M cells


class ItemKNN(Baseline):
    """score(u, j) = Σ_{i ∈ H_u, i ∈ nn_k(j)} sim(i, j).

    sim(i, j) = <r_i, r_j> / (|r_i| |r_j| + shrink) over the columns r of the 0/1 training
    matrix, sim(j, j) = 0 (0 where the denominator is 0, i.e. an item with no interactions).
    Direction as RecBole's ItemKNN: for each target item j (a column of W) we keep its k most
    similar items i; ties go to the lower item index. Stored as neighbour lists
    ``knn_idx``/``knn_sim`` [N, k] (row j holds j's neighbours), never a dense [N, N] matrix;
    the similarity is computed in blocks of target items on the module's device.
    """

    needs_training = False

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        super().__init__()
        require(is_int(k) and k >= 1, f"ItemKNN: k must be an integer >= 1, got {k!r}")
        require(
            is_number(shrink) and shrink >= 0,
            f"ItemKNN: shrink must be a number >= 0, got {shrink!r}",
        )
        self.k = int(k)
        self.shrink = float(shrink)
        self.register_buffer("knn_idx", torch.empty(0, 0, dtype=torch.long))  # [N, k]
        self.register_buffer("knn_sim", torch.empty(0, 0))  # [N, k]
        self.register_buffer("train_indptr", torch.empty(0, dtype=torch.long))  # [U+1]
        self.register_buffer("train_indices", torch.empty(0, dtype=torch.long))  # [nnz]

    def fit(self, train: sp.csr_matrix) -> None:
        """Compute each item's top-k neighbours from the [U, N] training matrix."""
        x = check_train(train, self.expected_shape)
        device = self.buffer_device
        n_users, n_items = x.shape
        k = min(self.k, n_items)
        xt = x.T.tocsr()  # [N, U]; rows are item columns r_i
        xt.sort_indices()
        t_indptr, t_indices = csr_tensors(xt, device)
        t_rows = torch.repeat_interleave(torch.arange(n_items, device=device), t_indptr.diff())
        xt_sparse = sorted_coo(t_rows, t_indices, torch.ones(xt.nnz, device=device), xt.shape)
        norms = torch.from_numpy(np.sqrt(np.diff(xt.indptr)).astype(np.float32)).to(device)  # [N]
        knn_idx = torch.empty(n_items, k, dtype=torch.long, device=device)
        knn_sim = torch.empty(n_items, k, device=device)
        block = max(1, min(n_items, _BLOCK_ELEMENTS // max(n_items, n_users)))
        for start in range(0, n_items, block):
            targets = torch.arange(start, min(start + block, n_items), device=device)  # [b]
            r_j = rows_to_dense(t_indptr, t_indices, targets, n_users)  # [b, U]
            dots = torch.sparse.mm(xt_sparse, r_j.T)  # [N, b]: <r_i, r_j>
            denom = norms.unsqueeze(1) * norms[targets].unsqueeze(0) + self.shrink
            sim = torch.where(denom > 0, dots / denom.clamp_min(1e-30), torch.zeros_like(dots))
            sim[targets, torch.arange(targets.numel(), device=device)] = 0.0
            vals, idx = torch.sort(sim, dim=0, descending=True, stable=True)  # ties: lower i
            knn_idx[targets] = idx[:k].T
            knn_sim[targets] = vals[:k].T
        # Sort each neighbour list by item index so Wᵀ's entries are sorted for scoring.
        order = torch.argsort(knn_idx, dim=1)
        self.knn_idx = torch.gather(knn_idx, 1, order)
        self.knn_sim = torch.gather(knn_sim, 1, order)
        self.train_indptr, self.train_indices = csr_tensors(x, device)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> scores [B, N] = X_u [B, N] @ W [N, N] with W[i, j] = kept sim(i, j)."""
        self._check_fitted(self.knn_sim)
        n_items, k = self.knn_idx.shape
        x_u = rows_to_dense(self.train_indptr, self.train_indices, user_idx, n_items)
        device = self.knn_idx.device
        # Wᵀ: row j lists j's neighbours i with sim(i, j), sorted by i.
        rows = torch.arange(n_items, device=device).repeat_interleave(k)
        w_t = sorted_coo(
            rows, self.knn_idx.reshape(-1), self.knn_sim.reshape(-1), (n_items, n_items)
        )
        return torch.sparse.mm(w_t, x_u.T).T.contiguous()
