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

_BLOCK_ELEMENTS = 1 << 23  # each similarity block [N, b] stays under ~8M cells


class ItemKNN(Baseline):
    """score(u, j) = Σ_{i ∈ H_u, i ∈ nn_k(j)} sim(i, j).

    sim(i, j) = <r_i, r_j> / (|r_i| |r_j| + shrink) over the columns r of the 0/1 training
    matrix, sim(j, j) = 0 (0 where the denominator is 0, i.e. an item with no interactions).
    Direction as RecBole's ItemKNN: for each target item j (a column of W) we keep its k most
    similar items i; ties go to the lower item index. Stored as neighbour lists
    ``knn_idx``/``knn_sim`` [N, k] (row j holds j's neighbours), never a dense [N, N] matrix;
    the similarity is computed in blocks of target items (dot products with scipy on the CPU,
    the rest on the module's device).
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
        n_items = x.shape[1]
        k = min(self.k, n_items)
        xt = x.T.tocsr()  # [N, U]; row j is the item column r_j
        norms = torch.from_numpy(np.sqrt(np.diff(xt.indptr)).astype(np.float32)).to(device)  # [N]
        # Row j of knn_idx lists j's neighbours in increasing item order (CSR rows of Wᵀ).
        knn_idx = torch.empty(n_items, k, dtype=torch.long, device=device)
        knn_sim = torch.empty(n_items, k, device=device)
        block = max(1, min(n_items, _BLOCK_ELEMENTS // n_items))
        for start in range(0, n_items, block):
            end = min(start + block, n_items)
            # Sparse x sparse on the CPU costs sum over users of deg², far below N x nnz.
            dots = torch.from_numpy((xt[start:end] @ x).toarray()).to(device)  # [b, N]: <r_j, r_i>
            targets = torch.arange(start, end, device=device)  # [b]
            denom = norms[targets].unsqueeze(1) * norms.unsqueeze(0) + self.shrink
            sim = torch.where(denom > 0, dots / denom.clamp_min(1e-30), torch.zeros_like(dots))
            sim[torch.arange(end - start, device=device), targets] = 0.0
            knn_idx[start:end], knn_sim[start:end] = neighbours(sim, k)
        self.knn_idx, self.knn_sim = knn_idx, knn_sim
        self.train_indptr, self.train_indices = csr_tensors(x, device)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> scores [B, N] = X_u [B, N] @ W [N, N] with W[i, j] = kept sim(i, j)."""
        self._check_fitted(self.knn_sim)
        n_items = self.knn_idx.shape[0]
        x_u = rows_to_dense(self.train_indptr, self.train_indices, user_idx, n_items)
        w_t = fixed_width_csr(self.knn_idx, self.knn_sim, n_items)  # Wᵀ: row j = j's neighbours
        return (w_t @ x_u.T).T.contiguous()


def neighbours(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k most similar columns (ties to the lower index, the re-rankers' rule).

    sim: [b, N] -> (indices Long[b, k], values [b, k]), each row sorted by column index as
    :func:`~divrec.baselines.base.fixed_width_csr` needs.
    """
    idx, vals, _ = select_candidates(sim, k)
    idx, order = idx.sort(dim=1)
    return idx, vals.gather(1, order)
