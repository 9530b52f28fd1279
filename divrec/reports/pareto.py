"""Pareto front of runs on two metrics (accuracy vs diversity trade-off).

A category metric axis (``ild_cat`` by default) is undefined for runs on a catalogue without
categories: :func:`axis_fallback` then uses ``ild_emb`` at the same split and cut-off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from divrec.errors import DataError

DEFAULT_X = "test/ndcg@10"
DEFAULT_Y = "test/ild_cat@10"


def axis_fallback(df: pd.DataFrame, metric: str) -> str:
    """``metric``, or its ``ild_emb`` counterpart (``test/ild_cat@10`` -> ``test/ild_emb@10``)
    when ``metric`` is a category metric that some successful runs lack (absent or NaN: no item
    categories) and the counterpart is finite in more of them."""
    from divrec.metrics.evaluator import category_fallback

    alt = category_fallback(metric)
    if alt is None:
        return metric
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    have, have_alt = _n_finite(ok, metric), _n_finite(ok, alt)
    return alt if have < len(ok) and have_alt > have else metric


def _n_finite(df: pd.DataFrame, col: str) -> int:
    """Rows of ``df`` with a finite value in ``col`` (0 when there is no such column)."""
    if col not in df.columns:
        return 0
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return int(np.isfinite(values).sum())


def pareto_front(
    df: pd.DataFrame,
    x: str = DEFAULT_X,
    y: str = DEFAULT_Y,
    maximize: tuple[bool, bool] = (True, True),
) -> pd.Series:
    """Bool Series (index of ``df``, name ``"pareto"``): True for non-dominated rows.

    Only rows where both ``x`` and ``y`` are finite take part; the others are False.
    Row ``p`` is dominated when another row ``q`` is at least as good on both metrics and
    strictly better on one (``maximize`` says which direction is better per metric).
    Exact duplicates do not dominate each other, so equal points are all on the front.
    Every row is considered regardless of any status column; filter failed runs first.

    Sort-based, O(n log n): orient both metrics to "larger is better", visit distinct x values
    from largest to smallest, and keep a point iff its y is the best among its x-ties and
    strictly above the best y of all points with a larger x.
    """
    for col in (x, y):
        if col not in df.columns:
            raise DataError(f"pareto_front: column {col!r} not in frame (have {list(df.columns)})")
    if len(maximize) != 2:
        raise ValueError(f"maximize must be a pair of bools, got {maximize!r}")
    xs = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ys = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    xs = xs if maximize[0] else -xs
    ys = ys if maximize[1] else -ys
    mask = np.zeros(len(df), dtype=bool)
    valid = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    # Visit by x descending, ties by y descending (lexsort: last key is the primary one).
    order = valid[np.lexsort((-ys[valid], -xs[valid]))]
    best_y_right = -np.inf  # best y among points with strictly larger x
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and xs[order[j]] == xs[order[i]]:
            j += 1
        group = order[i:j]
        group_best = ys[group[0]]  # sorted by y descending within the x-tie group
        if group_best > best_y_right:
            mask[group[ys[group] == group_best]] = True
            best_y_right = group_best
        i = j
    return pd.Series(mask, index=df.index, name="pareto")
