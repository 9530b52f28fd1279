"""``EpochLog``: one log line per validation epoch, readable without a terminal.

A progress bar shows nothing in a log file, CI or a SLURM job; this callback logs, through the
``divrec`` logger, after each validation of ``fit`` (never the sanity check)::

    epoch 2/8 step 78: val/ndcg@10=0.0412 val/recall@10=0.0803 val/ild_cat@10=0.912 |
    early stop: best 0.0412, wait 0/3 | kept: epoch001.ckpt (val/ndcg@10=0.0412)

Early stopping and checkpointing update their state at the end of the training epoch, after
validation; the line is therefore written at the next hook that follows them (the next
training batch, or the end of training), so that it shows their state for this epoch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.model_summary import get_human_readable_count

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("val/ndcg@10", "val/recall@10", "val/ild_cat@10", "val/ild_emb@10")


class EpochLog(Callback):
    """Logs epoch, step, ``metrics`` (those present), early-stopping state and kept checkpoint.

    ``metrics``: keys of ``trainer.callback_metrics`` to show, in this order; missing ones are
    skipped. ``model_line``: also log one line of parameter counts when fit starts.
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, model_line: bool = True) -> None:
        self.metrics = list(metrics)
        self.model_line = model_line
        self._pending: tuple[int, int, dict[str, float]] | None = None

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.model_line:
            return
        params = list(pl_module.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        log.info(
            "model: %s trainable of %s parameters",
            get_human_readable_count(trainable).strip(),
            get_human_readable_count(total).strip(),
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        got = trainer.callback_metrics
        values = {k: _number(got[k]) for k in self.metrics if k in got}
        self._pending = (trainer.current_epoch, trainer.global_step, values)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._flush(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)

    def _flush(self, trainer: pl.Trainer) -> None:
        if self._pending is None:
            return
        epoch, step, values = self._pending
        self._pending = None
        if trainer.is_global_zero:
            log.info(epoch_line(trainer, epoch, step, values))


def epoch_line(trainer: pl.Trainer, epoch: int, step: int, values: dict[str, float]) -> str:
    """The one line for ``epoch`` (0-based): position, metrics, early stopping, checkpoint."""
    total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
    shown = " ".join(f"{k}={_fmt(v)}" for k, v in values.items() if not math.isnan(v))
    parts = [f"epoch {epoch + 1}/{total} step {step}: {shown or '(no metrics)'}"]
    stop = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if stop is not None:
        best = _number(stop.best_score)
        best_txt = _fmt(best) if math.isfinite(best) else "none yet"
        parts.append(f"early stop: best {best_txt}, wait {stop.wait_count}/{stop.patience}")
    ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt is not None and ckpt.best_model_path:
        score = _number(ckpt.best_model_score)
        name = Path(ckpt.best_model_path).name
        parts.append(f"kept: {name} ({ckpt.monitor}={_fmt(score)})" if ckpt.monitor else name)
    return " | ".join(parts)


def _number(value: Any) -> float:
    """A metric (tensor, number or None) as a float; NaN when absent."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: float) -> str:
    return f"{value:.4g}"
