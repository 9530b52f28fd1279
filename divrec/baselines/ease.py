"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): closed-form item-item model."""

from __future__ import annotations

import os

import numpy as np
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
from divrec.rerank.kernels import cpu_threads


class EASE(Baseline):
    """score(u) = X_u · B with B the ridge item-item weights with a zero diagonal.

    G = XᵀX + λI, P = G⁻¹, B_ij = −P_ij / P_jj (each column divided by its diagonal entry),
    B_jj = 0. An item without training interactions has a zero row and column in XᵀX, so G is
    block diagonal and its row and column of B are exactly 0: the solve runs on the ``A``
    items that have interactions only (6,695 of 9,742 on ml-latest-small: a third of the
    cubic cost) and the others score 0, as in the full solve (and in RecBole's EASE). The
    solve is a Cholesky factorisation and the inverse from it (LAPACK potrf + potri, n³
    flops; ``np.linalg.inv`` costs 2n³), in float64 on the module's device (a float32 solve
    moves scores by ~1e-6 on ml-latest-small); B is stored float32 [A, A], so call
    ``.to(device)`` before ``fit`` to solve on a GPU. A solve that cannot fit in memory is
    refused before it starts.
    """

    needs_training = False

    def __init__(self, l2: float = 500.0) -> None:
        super().__init__()
        require(is_number(l2) and l2 > 0, f"EASE: l2 must be a number > 0, got {l2!r}")
        self.l2 = float(l2)
        self.register_buffer("weights", torch.empty(0, 0))  # B over active items: [A, A]
        self.register_buffer("active", torch.empty(0, dtype=torch.long))  # item indices [A]
        self.register_buffer("n_cols", torch.zeros((), dtype=torch.long))  # N
        self.register_buffer("train_indptr", torch.empty(0, dtype=torch.long))  # [U+1]
        self.register_buffer("train_indices", torch.empty(0, dtype=torch.long))  # [nnz] in [0, A)

    def fit(self, train: sp.csr_matrix) -> None:
        """Solve the closed form on the [U, N] training matrix and keep X for scoring."""
        x = check_train(train, self.expected_shape)
        device = self.buffer_device
        active = np.flatnonzero(np.diff(x.tocsc().indptr))  # items with interactions
        if len(active) == 0:
            raise DataError("EASE: the training matrix has no interactions")
        _check_memory(len(active), device)
        xa = x[:, active].astype(np.float64)
        gram = torch.from_numpy((xa.T @ xa).toarray()).to(device)  # [A, A] float64
        gram.diagonal().add_(self.l2)
        chol, info = torch.linalg.cholesky_ex(gram)
        del gram
        if int(info) != 0:  # cannot happen for l2 > 0 unless the numbers overflow
            raise DataError(f"EASE: XᵀX + {self.l2}·I is not positive definite")
        with cpu_threads(device):  # potri's barriers spin on a busy CPU (4x the CPU time)
            p = torch.cholesky_inverse(chol)  # P = G⁻¹ [A, A]
        del chol
        b = p.div_(-p.diagonal().clone().unsqueeze(0))  # B_ij = −P_ij / P_jj, in place
        b.fill_diagonal_(0.0)
        self.weights = b.to(torch.float32)
        self.active = torch.from_numpy(active.astype(np.int64)).to(device)
        self.n_cols = torch.tensor(x.shape[1], device=device)
        self.train_indptr, self.train_indices = csr_tensors(xa, device)  # X [U, A]

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> X_u [B, A] @ B [A, A] -> scores [B, N] (0 for inactive items)."""
        self._check_fitted(self.weights)
        x_u = rows_to_dense(self.train_indptr, self.train_indices, user_idx, len(self.active))
        out = x_u.new_zeros(len(x_u), int(self.n_cols))
        out[:, self.active] = x_u @ self.weights  # [B, A] @ [A, A]
        return out


def _check_memory(n_active: int, device: torch.device) -> None:
    """DataError when the float64 solve over ``n_active`` items cannot fit in memory.

    Peak: two float64 [A, A] matrices at a time (G and its Cholesky factor, then the factor
    and P), 16 bytes per entry. Only checked on the CPU (available RAM from the OS).
    """
    need = 16 * n_active**2
    if device.type != "cpu":
        return
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no estimate, no refusal
        return
    if need > avail:
        raise DataError(
            f"EASE: the closed form over {n_active:,} items needs about {need / 2**30:.1f} GiB "
            f"of memory, {avail / 2**30:.1f} GiB are available; shrink the catalogue "
            "(data.preprocess.kcore_item) or use model=itemknn"
        )
