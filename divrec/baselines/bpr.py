"""BPR matrix factorisation, and the Lightning plumbing shared with LightGCN."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from divrec.baselines.base import Baseline, check_train, is_int, is_number, require


class PairwiseBaseline(pl.LightningModule, Baseline):
    """Embedding model trained on positive (user, item) pairs with sampled negatives.

    Negatives are drawn inside ``training_step``, uniformly from the items that are *not*
    training positives of the user (as RecBole's default sampler, which filters positives),
    exactly and without rejection loops: with the user's sorted positives p_0 < p_1 < ...,
    draw r uniform in [0, N - n_u) and return the r-th non-positive item, r + #{m : p_m - m <= r}
    (one ``searchsorted`` on the device). A user with every item as a positive gets uniform
    negatives. ``fit(train)`` stores what this needs as buffers: ``train_indptr`` [U+1] and
    ``train_gap_keys`` [nnz] = u * (N+1) + (p_m - m), sorted. Subclasses implement
    ``pairwise_loss`` and ``score``.
    """

    needs_training = True

    def __init__(
        self, n_users: int, n_items: int, lr: float, weight_decay: float, n_negatives: int
    ) -> None:
        super().__init__()
        name = type(self).__name__
        require(is_int(n_users) and n_users >= 1, f"{name}: n_users must be >= 1, got {n_users!r}")
        require(is_int(n_items) and n_items >= 1, f"{name}: n_items must be >= 1, got {n_items!r}")
        require(is_number(lr) and lr > 0, f"{name}: lr must be a number > 0, got {lr!r}")
        require(
            is_number(weight_decay) and weight_decay >= 0,
            f"{name}: weight_decay must be a number >= 0, got {weight_decay!r}",
        )
        require(
            is_int(n_negatives) and n_negatives >= 1,
            f"{name}: n_negatives must be an integer >= 1, got {n_negatives!r}",
        )
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.expected_shape = (self.n_users, self.n_items)
        self.lr, self.weight_decay, self.n_negatives = (
            float(lr),
            float(weight_decay),
            int(n_negatives),
        )
        self.register_buffer("train_indptr", torch.empty(0, dtype=torch.long))  # [U+1]
        self.register_buffer("train_gap_keys", torch.empty(0, dtype=torch.long))  # [nnz]

    def fit(self, train: sp.csr_matrix) -> None:
        """Store the [U, N] training matrix (for negative sampling); training is the Trainer's."""
        self._store_train(check_train(train, self.expected_shape))

    def _store_train(self, x: sp.csr_matrix) -> None:
        """Keep a checked training matrix in the form ``sample_negatives`` searches."""
        indptr = x.indptr.astype(np.int64)
        rows = np.repeat(np.arange(x.shape[0], dtype=np.int64), np.diff(indptr))
        rank = np.arange(x.nnz, dtype=np.int64) - indptr[rows]  # m: position within the row
        gap_keys = rows * (self.n_items + 1) + (x.indices.astype(np.int64) - rank)
        device = self.buffer_device
        self.train_indptr = torch.from_numpy(indptr).to(device)
        self.train_gap_keys = torch.from_numpy(gap_keys).to(device)

    def sample_negatives(self, user_idx: torch.Tensor, n: int) -> torch.Tensor:
        """Uniform non-positive item ids per user: user_idx [B] -> Long[B, n]."""
        if self.train_indptr.numel() == 0:
            raise RuntimeError(f"{type(self).__name__}: call fit(train) before training")
        device = self.train_indptr.device
        users = user_idx.to(device).long().unsqueeze(1).expand(-1, n)  # [B, n]
        start = self.train_indptr[users]
        n_pos = self.train_indptr[users + 1] - start
        n_free = self.n_items - n_pos
        r = (torch.rand(users.shape, device=device) * n_free).long().clamp_max(n_free - 1)
        base = users * (self.n_items + 1)
        below = torch.searchsorted(self.train_gap_keys, (base + r).reshape(-1), right=True)
        neg = r + below.reshape(users.shape) - start
        uniform = torch.randint(0, self.n_items, users.shape, device=device)
        return torch.where(n_free > 0, neg, uniform)

    def pairwise_loss(
        self, user_idx: torch.Tensor, pos_idx: torch.Tensor, neg_idx: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss for users [B], positives [B] and negatives [B, n]."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int = 0) -> torch.Tensor:
        """batch: {"user_idx": Long[B], "item_idx": Long[B]} positive training pairs."""
        for key in ("user_idx", "item_idx"):
            if key not in batch:
                raise KeyError(f"{type(self).__name__}.training_step: batch lacks '{key}'")
        device = self.train_indptr.device
        users, pos = batch["user_idx"].to(device).long(), batch["item_idx"].to(device).long()
        loss = self.pairwise_loss(users, pos, self.sample_negatives(users, self.n_negatives))
        if self._trainer is not None:
            self.log("train/loss", loss, prog_bar=True, batch_size=users.numel())
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Mean of −log σ(s⁺ − s⁻): pos_scores [B], neg_scores [B, n] -> scalar."""
    return -F.logsigmoid(pos_scores.unsqueeze(1) - neg_scores).mean()


class BPR(PairwiseBaseline):
    """Matrix factorisation s(u, i) = p_u · q_i trained with the BPR loss (Rendle et al. 2009).

    Embeddings start Xavier-normal (as RecBole); L2 regularisation is Adam's ``weight_decay``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        n_negatives: int = 1,
    ) -> None:
        super().__init__(n_users, n_items, lr, weight_decay, n_negatives)
        require(is_int(dim) and dim >= 1, f"BPR: dim must be an integer >= 1, got {dim!r}")
        self.save_hyperparameters()
        self.user_emb = nn.Embedding(self.n_users, int(dim))
        self.item_emb = nn.Embedding(self.n_items, int(dim))
        nn.init.xavier_normal_(self.user_emb.weight)
        nn.init.xavier_normal_(self.item_emb.weight)

    def pairwise_loss(
        self, user_idx: torch.Tensor, pos_idx: torch.Tensor, neg_idx: torch.Tensor
    ) -> torch.Tensor:
        u = self.user_emb(user_idx)  # [B, d]
        pos = (u * self.item_emb(pos_idx)).sum(-1)  # [B]
        neg = torch.einsum("bd,bnd->bn", u, self.item_emb(neg_idx))  # [B, n]
        return bpr_loss(pos, neg)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> p_u [B, d] @ Qᵀ [d, N] -> scores [B, N]."""
        u = self.user_emb(user_idx.to(self.user_emb.weight.device).long())
        return u @ self.item_emb.weight.T
