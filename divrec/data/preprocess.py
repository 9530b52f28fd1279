"""Interaction cleaning before splitting: dedup, positive threshold, k-core, history length.

Steps, in this order (each records how many interaction rows it removed):

1. ``dedup``: repeated (user, item) pairs. ``"latest"`` keeps the row with the highest
   timestamp (ties: the later row), ``"first"`` the lowest (ties: the earlier row), ``"none"``
   keeps all. Dedup runs *before* the threshold so that a user's latest opinion wins: an item
   rated 5 and later 2 is dropped as negative rather than kept as positive.
2. ``min_rating``: implicit feedback, keep ``rating >= min_rating``.
3. ``kcore``: repeatedly drop users with < ``kcore_user`` and items with < ``kcore_item``
   interactions until nothing changes (the fixed point: every remaining user and item
   meets its threshold).
4. ``min_user_history``: drop users with < ``min_user_history`` interactions; when an item
   core is asked for, the k-core loop is re-run with the user threshold
   ``max(kcore_user, min_user_history)`` so both guarantees hold at the end.

The item catalogue is kept whole (cold-start items need their text) unless
``drop_items_without_interactions``; the ``users`` frame keeps only users with interactions.
Rows keep their original relative order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from divrec.data.dataset import RecDataset, sorted_codes
from divrec.errors import ConfigError, DataError

DEDUP_MODES = ("latest", "first", "none")


def _dedup(df: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Keep one row per (user, item): highest (``latest``) or lowest (``first``) timestamp."""
    if mode == "none":
        return df
    pos = np.arange(len(df))
    # stable sort by (user, item, timestamp, row position); keep last or first of each pair
    users, items = sorted_codes(df["user_id"]), sorted_codes(df["item_id"])  # same order as ids
    order = np.lexsort((pos, df["timestamp"].to_numpy(), items, users))
    s = df.iloc[order]
    keep = ~s.duplicated(["user_id", "item_id"], keep="last" if mode == "latest" else "first")
    return df.iloc[np.sort(order[keep.to_numpy()])]


def _kcore(df: pd.DataFrame, k_user: int, k_item: int) -> tuple[pd.DataFrame, int]:
    """Iterate user/item count filters to the fixed point; returns (frame, iterations)."""
    it = 0
    while True:
        it += 1
        mask = np.ones(len(df), dtype=bool)
        if k_user > 1:
            mask &= (df.groupby("user_id")["user_id"].transform("size") >= k_user).to_numpy()
        if k_item > 1:
            mask &= (df.groupby("item_id")["item_id"].transform("size") >= k_item).to_numpy()
        if mask.all() or not mask.any():
            return df[mask], it
        df = df[mask]


def _check_args(min_rating, dedup, kcore_user, kcore_item, min_user_history) -> None:
    if dedup not in DEDUP_MODES:
        raise ConfigError(f"preprocess.dedup={dedup!r}: expected one of {list(DEDUP_MODES)}")
    for key, val in (
        ("kcore_user", kcore_user),
        ("kcore_item", kcore_item),
        ("min_user_history", min_user_history),
    ):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
            raise ConfigError(f"preprocess.{key}={val!r}: expected an integer >= 0")
    if min_rating is not None and not np.isfinite(float(min_rating)):
        raise ConfigError(f"preprocess.min_rating={min_rating!r}: expected a finite number")


def _require_left(df: pd.DataFrame, step: str, detail: str, name: str) -> None:
    if len(df) == 0:
        raise DataError(
            f"{name}: no interactions left after preprocess step '{step}' ({detail}); "
            "lower the threshold(s)"
        )


def preprocess(
    ds: RecDataset,
    min_rating: float | None = None,
    dedup: str = "latest",
    kcore_user: int = 0,
    kcore_item: int = 0,
    min_user_history: int = 0,
    drop_items_without_interactions: bool = False,
) -> tuple[RecDataset, dict[str, Any]]:
    """Clean ``ds.interactions`` (see module docstring); returns a new dataset and stats.

    Stats (flat, all ints): ``rows_in``, ``removed_<step>`` (rows removed by dedup,
    min_rating, kcore, min_user_history), ``kcore_iterations``, ``rows_out``, ``users_out``, ``items_out``
    (items with interactions), ``catalogue_items_out``, ``catalogue_items_dropped``.
    """
    _check_args(min_rating, dedup, kcore_user, kcore_item, min_user_history)
    df = ds.interactions
    removed: dict[str, int] = {}
    rows_in = len(df)

    n = len(df)
    df = _dedup(df, dedup)
    removed["dedup"] = n - len(df)

    n = len(df)
    if min_rating is not None:
        df = df[df["rating"].to_numpy() >= float(min_rating)]
        _require_left(df, "min_rating", f"min_rating={min_rating}", ds.name)
    removed["min_rating"] = n - len(df)

    n = len(df)
    df, iters = _kcore(df, kcore_user, kcore_item)
    _require_left(df, "kcore", f"kcore_user={kcore_user}, kcore_item={kcore_item}", ds.name)
    removed["kcore"] = n - len(df)

    n = len(df)
    if min_user_history > 1:
        k_user = max(kcore_user, min_user_history)
        if kcore_item > 1:
            df, more = _kcore(df, k_user, kcore_item)
            iters += more
        else:
            df = df[(df.groupby("user_id")["user_id"].transform("size") >= k_user).to_numpy()]
        detail = f"min_user_history={min_user_history}, kcore_item={kcore_item}"
        _require_left(df, "min_user_history", detail, ds.name)
    removed["min_user_history"] = n - len(df)

    df = df.reset_index(drop=True)
    items = ds.items
    if drop_items_without_interactions:
        items = items[items["item_id"].isin(set(df["item_id"]))]
    users = ds.users
    if users is not None:
        users = users[users["user_id"].isin(set(df["user_id"]))]
    out = RecDataset(ds.name, df, items, users, dict(ds.extra))
    stats = {
        "rows_in": rows_in,
        **{f"removed_{step}": n for step, n in removed.items()},
        "kcore_iterations": iters,
        "rows_out": len(df),
        "users_out": int(df["user_id"].nunique()),
        "items_out": int(df["item_id"].nunique()),
        "catalogue_items_out": len(out.items),
        "catalogue_items_dropped": len(ds.items) - len(out.items),
    }
    return out, stats
