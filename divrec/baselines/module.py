"""``BaselineModule``: :class:`~divrec.baselines.core.BaselineCore` as a LightningModule.

What a Lightning ``Trainer`` runs: the pairwise baselines' training (bpr, lightgcn, on the
same (user, item) pairs as the two-tower) and any baseline evaluated from a checkpoint.
"""

from __future__ import annotations

import torch

from divrec.baselines.core import BaselineCore, training_matrix
from divrec.evaluation.module import RankingModule

__all__ = ["BaselineModule", "training_matrix"]


class BaselineModule(BaselineCore, RankingModule):
    """Wraps a :class:`~divrec.baselines.base.Baseline` named by ``model.name``."""

    def __init__(
        self,
        name: str,
        n_items: int,
        n_users: int,
        options: dict | None,
        evaluation: dict,
        rerank_cfg: dict | None = None,
    ) -> None:
        super().__init__(name, n_items, n_users, options, evaluation, rerank_cfg)
        self.save_hyperparameters()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # The pairwise loss directly: the inner module's own self.log would be rejected (its
        # trainer is ours, but it is not the module Lightning's loop is running).
        b = self.baseline
        users, pos = batch["user_idx"].long(), batch["item_idx"].long()
        loss = b.pairwise_loss(users, pos, b.sample_negatives(users, b.n_negatives))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["user_idx"]))
        return loss

    def configure_optimizers(self):
        return self.baseline.configure_optimizers()
