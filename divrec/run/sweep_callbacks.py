"""Hydra callbacks: write the divrec report of a sweep when the multirun ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ReportOnSweepEnd(Callback):
    """``divrec-report`` over the sweep folder (table, Pareto set on ``x`` vs ``y``, plot)."""

    def __init__(self, x: str = "test/ndcg@10", y: str = "test/ild_cat@10") -> None:
        self.x, self.y = x, y

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from divrec.errors import DivrecError
        from divrec.reports.cli import make_report

        folder = Path(config.hydra.sweep.dir)
        try:
            result = make_report(folder, x=self.x, y=self.y)
        except DivrecError as e:  # e.g. every trial failed: say so, never crash the sweep
            log.error("no report for %s: %s", folder, e)
            return
        front = result["df"]
        log.info(
            "report: %s (%d runs on the Pareto front)",
            result["markdown"],
            int(front["pareto"].sum()),
        )
