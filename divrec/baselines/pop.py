"""Most-popular baseline: every user gets the same item scores."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from divrec.baselines.base import Baseline, check_train


class Pop(Baseline):
    """score(u, j) = number of training interactions of item j.

    Every interaction is counted (unlike RecBole's Pop, which counts once per batch); ties are
    left to the harness's top-K (lower item index first).
    """

    needs_training = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("counts", torch.empty(0))  # [N], float32

    def fit(self, train: sp.csr_matrix) -> None:
        """Count each item's interactions in the [U, N] training matrix."""
        x = check_train(train, self.expected_shape)
        counts = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float32)
        self.counts = torch.from_numpy(counts).to(self.buffer_device)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> scores [B, N] (a fresh tensor: callers may mask it in place)."""
        self._check_fitted(self.counts)
        return self.counts.unsqueeze(0).repeat(user_idx.numel(), 1)
