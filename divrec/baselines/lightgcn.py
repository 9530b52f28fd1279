"""LightGCN (He et al. 2020): embeddings smoothed over the user-item graph, BPR-trained."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from divrec.baselines.base import check_train, is_int, is_number, require, sorted_coo
from divrec.baselines.bpr import PairwiseBaseline, bpr_loss


class LightGCN(PairwiseBaseline):
    """E = mean_{l=0..L} Âˡ E⁰ over the (U+N)-node bipartite graph; s(u, i) = e_u · e_i.

    Â = D^{-1/2} A D^{-1/2} with A = [[0, R], [Rᵀ, 0]] built from the training matrix R at
    ``fit`` time (buffers ``adj_rows``/``adj_cols``/``adj_vals``, sorted COO). Loss as the
    official implementation: BPR on the propagated embeddings plus
    reg · (|e⁰_u|² + |e⁰_i|² + mean_n |e⁰_j|²) / (2B) on the layer-0 embeddings of the batch.
    One uniform negative per positive, filtered as in ``PairwiseBaseline``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        layers: int = 3,
        lr: float = 1e-3,
        reg: float = 1e-4,
    ) -> None:
        super().__init__(n_users, n_items, lr, weight_decay=0.0, n_negatives=1)
        require(is_int(dim) and dim >= 1, f"LightGCN: dim must be an integer >= 1, got {dim!r}")
        require(
            is_int(layers) and layers >= 0,
            f"LightGCN: layers must be an integer >= 0, got {layers!r}",
        )
        require(is_number(reg) and reg >= 0, f"LightGCN: reg must be a number >= 0, got {reg!r}")
        self.save_hyperparameters()
        self.layers, self.reg = int(layers), float(reg)
        self.embedding = nn.Embedding(self.n_users + self.n_items, int(dim))  # users, then items
        nn.init.xavier_normal_(self.embedding.weight)
        self.register_buffer("adj_rows", torch.empty(0, dtype=torch.long))  # [2 nnz]
        self.register_buffer("adj_cols", torch.empty(0, dtype=torch.long))  # [2 nnz]
        self.register_buffer("adj_vals", torch.empty(0))  # [2 nnz]
        self._cache: tuple[tuple[int, int, torch.device], torch.Tensor] | None = None

    def fit(self, train: sp.csr_matrix) -> None:
        """Store the training matrix and the symmetric-normalised adjacency Â."""
        x = check_train(train, self.expected_shape)
        self._store_train(x)
        adj = sp.bmat([[None, x], [x.T, None]], format="csr", dtype=np.float32)  # [U+N, U+N]
        adj.sort_indices()
        deg = np.asarray(adj.sum(axis=1)).ravel()
        inv_sqrt = np.zeros_like(deg)
        inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
        coo = adj.tocoo()
        vals = inv_sqrt[coo.row] * inv_sqrt[coo.col]
        device = self.buffer_device
        self.adj_rows = torch.from_numpy(coo.row.astype(np.int64)).to(device)
        self.adj_cols = torch.from_numpy(coo.col.astype(np.int64)).to(device)
        self.adj_vals = torch.from_numpy(vals.astype(np.float32)).to(device)
        self._cache = None

    def propagate(self) -> torch.Tensor:
        """Final embeddings [U+N, d]: mean over layers 0..L of Âˡ E⁰ (differentiable)."""
        if self.adj_vals.numel() == 0:
            raise RuntimeError("LightGCN: call fit(train) before training or scoring")
        n = self.n_users + self.n_items
        adj = sorted_coo(self.adj_rows, self.adj_cols, self.adj_vals, (n, n))
        layer = self.embedding.weight
        total = layer
        for _ in range(self.layers):
            layer = torch.sparse.mm(adj, layer)
            total = total + layer
        return total / (self.layers + 1)

    def pairwise_loss(
        self, user_idx: torch.Tensor, pos_idx: torch.Tensor, neg_idx: torch.Tensor
    ) -> torch.Tensor:
        final = self.propagate()
        pos_nodes, neg_nodes = pos_idx + self.n_users, neg_idx + self.n_users
        u = final[user_idx]  # [B, d]
        pos = (u * final[pos_nodes]).sum(-1)  # [B]
        neg = torch.einsum("bd,bnd->bn", u, final[neg_nodes])  # [B, n]
        e0 = self.embedding.weight
        reg = (
            e0[user_idx].pow(2).sum()
            + e0[pos_nodes].pow(2).sum()
            + e0[neg_nodes].pow(2).sum() / neg_idx.shape[1]
        ) / (2 * user_idx.numel())
        return bpr_loss(pos, neg) + self.reg * reg

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> e_u [B, d] @ e_itemsᵀ [d, N] -> scores [B, N].

        The propagation is cached until the embedding table changes (in-place optimiser
        steps and state-dict loads bump its version; ``.to`` makes a new tensor).
        """
        weight = self.embedding.weight
        key = (weight._version, weight.data_ptr(), weight.device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.propagate())
        final = self._cache[1]
        u = final[user_idx.to(weight.device).long()]
        return u @ final[self.n_users :].T
