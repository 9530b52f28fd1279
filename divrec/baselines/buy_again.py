"""Buy-again baseline: a user's own most frequent items first, then the popular ones."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from divrec.baselines.base import Baseline, check_train, csr_tensors, require, rows_to_dense

WEIGHTS = ("rows", "rating")


class BuyAgain(Baseline):
    """score(u, j) = c(u, j) + pop(j) / (max pop + 1).

    ``c(u, j)``: how often u interacted with j in training: its number of training rows
    (``weight="rows"``) or their summed ``rating`` (``"rating"``, e.g. the transactions
    source's line counts or quantities). ``pop(j)``: the number of training users of j (what
    ``model=pop`` ranks by). The bonus is < 1, so with integer counts a user's items come first,
    most frequent first, equal counts break by popularity, and unseen items follow by
    popularity (remaining ties: lower item index). With ``eval.mask_seen=true`` the user's own
    items are masked and the lists are ``model=pop``'s: run it with ``eval.mask_seen=false``.
    """

    needs_training = False
    uses_counts = True

    def __init__(self, weight: str = "rows") -> None:
        super().__init__()
        require(
            weight in WEIGHTS, f"BuyAgain: weight must be one of {list(WEIGHTS)}, got {weight!r}"
        )
        self.weight = weight
        self.register_buffer("bonus", torch.empty(0))  # [N] pop / (max pop + 1)
        self.register_buffer("train_indptr", torch.empty(0, dtype=torch.long))  # [U+1]
        self.register_buffer("train_indices", torch.empty(0, dtype=torch.long))  # [nnz]
        self.register_buffer("train_counts", torch.empty(0))  # [nnz] c(u, j)

    def row_weights(self, ratings: np.ndarray) -> np.ndarray:
        """Per training row: 1 (``rows``) or its rating (``rating``)."""
        if self.weight == "rows":
            return np.ones(len(ratings), np.float32)
        return np.asarray(ratings, np.float32)

    def fit(self, train: sp.csr_matrix) -> None:
        """Keep the [U, N] count matrix (summed row weights) and each item's popularity."""
        x = check_train(train, self.expected_shape, binary=False)
        device = self.buffer_device
        pop = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64)  # users per item
        self.bonus = torch.from_numpy(pop / (pop.max() + 1.0)).float().to(device)
        self.train_indptr, self.train_indices = csr_tensors(x, device)
        self.train_counts = torch.from_numpy(x.data.astype(np.float32)).to(device)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> scores [B, N] (a fresh tensor: callers may mask it in place)."""
        self._check_fitted(self.bonus)
        n_items = self.bonus.shape[0]
        counts = rows_to_dense(
            self.train_indptr, self.train_indices, user_idx, n_items, self.train_counts
        )
        return counts + self.bonus.unsqueeze(0)
