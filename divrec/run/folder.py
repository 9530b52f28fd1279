"""A run folder holds one run: a finished one is never overwritten by another attempt.

- :func:`refuse_finished_run`: a folder whose ``metrics.json`` says ``status: ok`` is refused
  unless ``overwrite=true``; :class:`KeepFinishedRuns` does the same as a Hydra callback,
  before Hydra rewrites ``.hydra/config.yaml``.
- :func:`prepare_run_folder`: checks ``ckpt_path`` before data loads and, when a run trains
  from the start, removes the checkpoints of an earlier attempt (so ``ckpt_path=last`` and
  ``divrec-recommend RUN`` only ever see this run's files).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from divrec.errors import ConfigError
from divrec.run.checkpoints import check_ckpt_path
from divrec.utils.io import disk_error

log = logging.getLogger(__name__)


class FinishedRunError(ConfigError):
    """The run folder already holds a finished run."""


def finished(folder: str | os.PathLike) -> bool:
    """Whether ``folder/metrics.json`` records a finished run (``meta.status == "ok"``)."""
    try:
        meta = json.loads((Path(folder) / "metrics.json").read_text()).get("meta") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(meta, dict) and meta.get("status") == "ok"


def refuse_finished_run(folder: str | os.PathLike, overwrite: Any) -> None:
    """Raise FinishedRunError when ``folder`` holds a finished run and ``overwrite`` is off."""
    if finished(folder) and not overwrite:
        raise FinishedRunError(
            f"{folder} holds a finished run (metrics.json status ok); its results are kept. "
            "Pass overwrite=true to replace it, or pick another folder (hydra.run.dir=...)"
        )


def _is_rank_zero() -> bool:
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def prepare_run_folder(cfg: Any, out: Path) -> None:
    """Check ``ckpt_path``, create ``out`` (one line if it cannot be); remove an earlier attempt's checkpoints when training afresh."""
    check_ckpt_path(cfg.get("ckpt_path"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(out, e) from None
    ckpt_dir = out / "checkpoints"
    if not cfg.get("train", True) or cfg.get("ckpt_path") not in (None, ""):
        return
    if not ckpt_dir.is_dir() or not _is_rank_zero():
        return
    stale = sorted(p for p in ckpt_dir.iterdir() if p.is_file())
    if stale:
        log.warning(
            "%s: removing %d checkpoint(s) of an earlier attempt (%s); resume with "
            "ckpt_path=last to continue it instead",
            ckpt_dir,
            len(stale),
            ", ".join(p.name for p in stale[:5]),
        )
        for p in stale:
            p.unlink(missing_ok=True)


class KeepFinishedRuns(Callback):
    """Hydra callback: refuse a run/sweep folder holding a finished run before Hydra writes
    ``.hydra/`` there (one line, exit code 1)."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check([Path(str(config.hydra.run.dir))], config)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        root = Path(str(config.hydra.sweep.dir))
        if root.is_dir():
            self._check([p.parent for p in root.rglob("metrics.json")], config)

    @staticmethod
    def _check(folders: list[Path], config: Any) -> None:
        try:
            for folder in folders:
                refuse_finished_run(folder, config.get("overwrite", False))
        except FinishedRunError as e:
            raise SystemExit(f"error: {e}") from None
