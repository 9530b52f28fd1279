"""Scatter of runs on two metrics with the Pareto front drawn through, saved as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from divrec.reports.collect import format_knob, is_missing, knob_columns
from divrec.utils.io import atomic_path

MAX_LABEL_CHARS = 40


def plot_pareto(
    df: pd.DataFrame,
    x: str,
    y: str,
    front_mask: pd.Series | np.ndarray,
    path: str | os.PathLike,
    *,
    label_columns: list[str] | None = None,
    maximize: tuple[bool, bool] = (True, True),
    title: str | None = None,
) -> Path:
    """Save a PNG (atomically) of all rows with finite ``x``/``y`` and the front through them.

    ``front_mask``: bool per row of ``df`` (e.g. ``pareto_front(df, x, y)``). Each point is
    labelled with a short knob summary (``label_columns``, default the frame's knob columns;
    the run name when there are none). The front is drawn as a staircase that bounds the
    region it dominates (``maximize`` picks the step side). Returns ``path``.
    """
    path = Path(path)
    front = np.array(front_mask, dtype=bool)  # a copy: the caller's mask stays as is
    if front.shape != (len(df),):
        raise ValueError(f"front_mask has shape {front.shape}, expected ({len(df)},)")
    xs = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ys = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(xs) & np.isfinite(ys)
    front &= finite
    cols = knob_columns(df) if label_columns is None else list(label_columns)
    labels = knob_labels(df, cols)

    # A bare Figure renders through the Agg canvas on savefig: no pyplot, no display, no global
    # backend switch (importing this module must not change a notebook's backend).
    fig = Figure(figsize=(8, 6), dpi=120)
    ax = fig.add_subplot()
    rest = finite & ~front
    ax.scatter(xs[rest], ys[rest], s=28, c="tab:gray", alpha=0.7, label="runs")
    ax.scatter(xs[front], ys[front], s=44, c="tab:red", zorder=3, label="Pareto front")
    if front.any():
        idx = np.flatnonzero(front)
        idx = idx[np.lexsort((ys[idx], xs[idx]))]
        where = "pre" if maximize[0] else "post"
        ax.step(xs[idx], ys[idx], where=where, c="tab:red", lw=1.5, zorder=2)
    for i in np.flatnonzero(finite):
        ax.annotate(
            labels[i],
            (xs[i], ys[i]),
            xytext=(4, 4) if front[i] else (4, -9),  # front above, rest below: less overlap
            textcoords="offset points",
            fontsize=7,
            color="tab:red" if front[i] else "dimgray",
        )
    if not finite.any():
        ax.text(0.5, 0.5, "no run has both metrics", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"{x} ({'higher' if maximize[0] else 'lower'} is better)")
    ax.set_ylabel(f"{y} ({'higher' if maximize[1] else 'lower'} is better)")
    n_front, n_pts = int(front.sum()), int(finite.sum())
    ax.set_title(title or f"{y} vs {x}: {n_front} of {n_pts} runs on the Pareto front")
    ax.grid(True, alpha=0.3)
    if finite.any():
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def knob_labels(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """Short ``"diversity=0.3 model=sasrec"`` per row; the ``run`` name when no knob is set.

    Knobs with one value over all rows are left out (they tell points apart no better than
    nothing) unless every knob is constant; keys are cut to their last dotted part when that
    stays unambiguous.
    """
    varying = [c for c in columns if df[c].astype(str).nunique(dropna=False) > 1]
    columns = varying or list(columns)
    short = {c: c.rsplit(".", 1)[-1] for c in columns}
    if len(set(short.values())) < len(short):
        short = {c: c for c in columns}
    labels = []
    for pos in range(len(df)):
        parts = [
            f"{short[c]}={format_knob(v)}" for c in columns if not is_missing(v := df[c].iloc[pos])
        ]
        text = " ".join(parts) or (str(df["run"].iloc[pos]) if "run" in df.columns else "")
        labels.append(text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…")
    return labels
