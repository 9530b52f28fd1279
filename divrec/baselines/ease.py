"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): closed-form item-item model."""

from __future__ import annotations

import scipy.sparse as sp
import torch

from divrec.baselines.base import (
    Baseline,
    check_train,
    csr_tensors,
    is_number,
    require,
    rows_to_dense,
)
from divrec.errors import DataError


class EASE(Baseline):
    """score(u) = X_u · B with B the ridge item-item weights with a zero diagonal.

    G = XᵀX + λI, P = G⁻¹, B_ij = −P_ij / P_jj (each column divided by its diagonal entry),
    B_jj = 0. The solve runs in float64 on the module's device; B is stored float32 [N, N]
    (400 MB for N = 10k), so call ``.to(device)`` before ``fit`` to solve on a GPU.
    """

    needs_training = False

    def __init__(self, l2: float = 500.0) -> None:
        super().__init__()
        require(is_number(l2) and l2 > 0, f"EASE: l2 must be a number > 0, got {l2!r}")
        self.l2 = float(l2)
        self.register_buffer("weights", torch.empty(0, 0))  # B: [N, N]
        self.register_buffer("train_indptr", torch.empty(0, dtype=torch.long))  # [U+1]
        self.register_buffer("train_indices", torch.empty(0, dtype=torch.long))  # [nnz]

    def fit(self, train: sp.csr_matrix) -> None:
        """Solve the closed form on the [U, N] training matrix and keep X for scoring."""
        x = check_train(train, self.expected_shape)
        device = self.buffer_device
        gram = torch.from_numpy((x.T @ x).toarray()).to(device, torch.float64)  # [N, N]
        gram.diagonal().add_(self.l2)
        chol, info = torch.linalg.cholesky_ex(gram)
        del gram
        if int(info) != 0:  # cannot happen for l2 > 0 unless the numbers overflow
            raise DataError(f"EASE: XᵀX + {self.l2}·I is not positive definite")
        # P = G⁻¹ by triangular solves against I: ~2x faster than cholesky_inverse on CPU.
        eye = torch.eye(chol.shape[0], dtype=torch.float64, device=device)
        p = torch.cholesky_solve(eye, chol)
        del chol, eye
        b = p.div_(-p.diagonal().clone().unsqueeze(0))  # B_ij = −P_ij / P_jj, in place
        b.fill_diagonal_(0.0)
        self.weights = b.to(torch.float32)
        self.train_indptr, self.train_indices = csr_tensors(x, device)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> X_u [B, N] @ B [N, N] -> scores [B, N]."""
        self._check_fitted(self.weights)
        x_u = rows_to_dense(self.train_indptr, self.train_indices, user_idx, self.weights.shape[0])
        return x_u @ self.weights
