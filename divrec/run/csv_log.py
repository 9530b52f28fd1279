"""``CSVLog``: the files of Lightning's ``CSVLogger`` without importing Lightning.

A closed-form baseline's run (:mod:`divrec.run.closed_form`) logs through this when the config
names ``lightning.pytorch.loggers.CSVLogger``: ``<save_dir>/<name>/version_<n>/metrics.csv``
(one row per ``log_metrics`` call, a ``step`` column, columns sorted, blanks where a row has no
value) and ``hparams.yaml`` (every ``log_hyperparams`` dict merged), as Lightning writes them.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

LIGHTNING_CSV = "lightning.pytorch.loggers.CSVLogger"


class CSVLog:
    """Lightning ``CSVLogger``'s arguments, files and methods (``log_hyperparams``,
    ``log_metrics``, ``save``, ``finalize``)."""

    def __init__(
        self,
        save_dir: str | Path,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        root = Path(save_dir) / (name or "")
        if version is None:
            version = _next_version(root)
        self.log_dir = root / (version if isinstance(version, str) else f"version_{version}")
        self.prefix = prefix
        self.hparams: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(self.hparams), self.log_dir / "hparams.yaml")

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        row = {f"{self.prefix}-{k}" if self.prefix else k: _plain(v) for k, v in metrics.items()}
        row["step"] = len(self.rows) if step is None else step
        self.rows.append(row)

    def save(self) -> None:
        if not self.rows:
            return
        keys = sorted(set().union(*self.rows))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)

    def finalize(self, status: str) -> None:
        self.save()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _next_version(root: Path) -> int:
    """1 + the largest ``version_<n>`` folder under ``root`` (0 when none)."""
    found = [
        int(m.group(1))
        for d in (root.iterdir() if root.is_dir() else [])
        if d.is_dir() and (m := re.fullmatch(r"version_(\d+)", d.name))
    ]
    return max(found) + 1 if found else 0
