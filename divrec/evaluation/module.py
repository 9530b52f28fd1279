"""``RankingModule``: :class:`~divrec.evaluation.ranking.RankingCore` run by Lightning.

Lightning's val/test hooks call the core's passes (``begin_pass``, ``eval_step``,
``end_pass``) and log their values; training hooks keep each step's randomness a function of
(seed, step) and drop the score cache. A closed-form baseline's run uses the core without
Lightning (:mod:`divrec.run.closed_form`): the same steps, the same numbers.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist

from divrec.evaluation.ranking import RankingCore
from divrec.utils.memory import TRIM_EVERY_STEPS, release_freed_memory


class RankingModule(RankingCore, pl.LightningModule):
    """Evaluation loop shared by all models trained or evaluated by a Lightning ``Trainer``."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Randomness inside a step (dropout, sampled negatives) depends only on (seed, step),
        # so a resumed run draws what an uninterrupted one would.
        torch.manual_seed((self.step_seed * 1_000_003 + self.global_step) % (1 << 63))
        self.invalidate_scores()  # this step changes the weights
        self.because = []

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx % TRIM_EVERY_STEPS == 0:  # freed step tensors otherwise pile up in RSS
            release_freed_memory()

    def on_validation_epoch_start(self) -> None:
        self.begin_pass(self.device, keep=False)

    def on_test_epoch_start(self) -> None:
        self.begin_pass(self.device, keep=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.eval_step(batch, "val", batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.eval_step(batch, "test", batch_idx)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.end_pass("val"))

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.end_pass("test"))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Every rank holds the lists of its own users: gather them for the run artefacts.
            parts: list = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (self.recommendations, self.because))
            self.recommendations = [r for p in parts for r in p[0]]
            self.because = [b for p in parts for b in p[1]]
