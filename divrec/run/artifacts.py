"""What a run leaves behind in its folder, written atomically.

- ``metrics.json``: flat ``split/name@K`` keys plus a ``meta`` block (status, data fingerprint,
  config hash, versions, wall time, overrides).
- ``recommendations.parquet``: ``user_id``, ``rank`` (from 1), ``item_id``, ``score`` for every
  test user, original ids.
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from divrec.utils.io import fingerprint, write_json, write_parquet

VERSIONED = (
    "divrec",
    "torch",
    "lightning",
    "transformers",
    "hydra-core",
    "torchmetrics",
    "datasets",
    "peft",
    "wandb",
)


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the packages that shape a run's numbers (plus ``extra`` ones)."""
    out = {"python": platform.python_version()}
    for name in (*VERSIONED, *extra):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def config_hash(cfg_container: dict) -> str:
    """Hash of the resolved config without paths that differ between identical runs."""
    clean = {k: v for k, v in cfg_container.items() if k not in ("paths", "hydra", "logger")}
    return fingerprint(clean)


def _clean(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: str | Path, metrics: dict[str, Any], meta: dict[str, Any]) -> dict:
    """Write ``metrics.json``; non-finite values become ``null``."""
    payload = {k: _clean(v) for k, v in sorted(metrics.items())}
    payload["meta"] = meta
    write_json(path, payload)
    return payload


def recommendations_frame(
    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    user_ids: list[str],
    item_ids: list[str],
    because: list[list[str]] | None = None,
) -> pd.DataFrame:
    """(user_idx [B], items [B, k], scores [B, k]) batches -> long frame with original ids."""
    if not rows:
        return pd.DataFrame(columns=["user_id", "rank", "item_id", "score"])
    users = torch.cat([r[0] for r in rows])
    items = torch.cat([r[1] for r in rows])
    scores = torch.cat([r[2] for r in rows])
    b, k = items.shape
    uid = pd.Series(user_ids, dtype=object).to_numpy()
    iid = pd.Series(item_ids, dtype=object).to_numpy()
    frame = pd.DataFrame(
        {
            "user_id": uid[users.repeat_interleave(k).numpy()],
            "rank": torch.arange(1, k + 1).repeat(b).numpy(),
            "item_id": iid[items.flatten().numpy()],
            "score": scores.flatten().numpy(),
        }
    )
    if because is not None:
        frame["because"] = [s for row in because for s in row]
    return frame.sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)


def write_recommendations(path: str | Path, frame: pd.DataFrame) -> None:
    write_parquet(path, frame)
