"""Checkpoints a run may load: its own, written atomically, or the one the user named.

- :class:`AtomicCheckpoint` (``conf/callbacks/default.yaml``): Lightning's ModelCheckpoint
  whose files are written to a temporary name in their own folder, fsynced and renamed into
  place (never staged in ``$TMPDIR``), so a full disk or a kill never leaves a half-written
  file under a ``.ckpt`` name; a "best" path restored from a resumed checkpoint that points
  outside this run's folder is dropped.
- :func:`check_ckpt_path`: remote checkpoints are refused (Lightning unpickles a URL with
  ``weights_only=False``, which runs whatever code the file holds).
- :func:`resume_path`: the file behind ``ckpt_path``; ``last`` is the newest intact
  checkpoint of the run folder, and the log says which.

The Lightning classes live in :mod:`divrec.run.atomic_checkpoint` and are imported on first
use (``divrec.run.checkpoints.AtomicCheckpoint`` still names them): the checks here run in
Hydra's start-up callback, before a run needs Lightning.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

from divrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def inside(path: str | os.PathLike, folder: str | os.PathLike | None) -> bool:
    """Whether ``path`` lies inside ``folder`` (resolved; False when ``folder`` is None)."""
    if not folder or not path:
        return False
    return Path(folder).resolve() in Path(path).resolve().parents


def own_checkpoint(path: str | None, out: Path) -> str:
    """``path`` when it lies inside the run folder ``out``, else ``""``."""
    return path if path and inside(path, out) else ""


def check_ckpt_path(value: Any) -> None:
    """Refuse a remote ``ckpt_path`` and a named file that does not exist (before data loads)."""
    if value in (None, "", "last"):
        return
    text = str(value)
    if _URL.match(text) or text.startswith("http"):
        raise ConfigError(
            f"ckpt_path={text}: remote checkpoints are refused (loading one unpickles code "
            "from the network); download it, check where it comes from, and pass the local file"
        )
    if not Path(text).is_file():
        raise ConfigError(f"ckpt_path={text}: no such checkpoint file")


def damaged(path: Path) -> str | None:
    """Why ``path`` is not a complete torch checkpoint (zip CRCs, data.pkl), or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = zf.namelist()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        return f"truncated or not a checkpoint ({e})"
    if bad is not None:
        return f"CRC error in {bad}"
    if not any(n.endswith("data.pkl") for n in names):
        return "not a torch checkpoint (no data.pkl)"
    return None


def newest_intact(folder: Path) -> str | None:
    """The newest intact ``*.ckpt`` in ``folder`` (``last.ckpt`` first on equal times)."""
    ckpts = sorted(
        folder.glob("*.ckpt"),
        key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")),
        reverse=True,
    )
    if not ckpts:
        log.warning("ckpt_path=last: no checkpoint in %s; training from the start", folder)
        return None
    problems = []
    for ckpt in ckpts:
        problem = damaged(ckpt)
        if problem is None:
            how = log.warning if problems else log.info
            how("ckpt_path=last: resuming from %s", ckpt)
            return str(ckpt)
        problems.append(f"{ckpt.name}: {problem}")
        log.warning("ckpt_path=last: %s is damaged (%s); trying an older one", ckpt, problem)
    raise DataError(
        f"{folder}: no intact checkpoint to resume from ({'; '.join(problems)}); "
        "train from the start without ckpt_path"
    )


def resume_path(cfg: Any, out: Path) -> str | None:
    """The checkpoint file behind ``cfg.ckpt_path`` for the run folder ``out`` (or None)."""
    value = cfg.get("ckpt_path")
    if value in (None, ""):
        return None
    if value == "last":
        return newest_intact(out / "checkpoints")
    check_ckpt_path(value)
    return str(value)


def __getattr__(name: str) -> Any:
    """``AtomicCheckpoint`` / ``AtomicCheckpointIO`` on first use (Lightning loads then)."""
    if name in ("AtomicCheckpoint", "AtomicCheckpointIO"):
        from divrec.run import atomic_checkpoint

        return getattr(atomic_checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
