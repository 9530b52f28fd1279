"""Mean ± std of every metric over seeds: runs that differ only in ``seed`` form one group."""

from __future__ import annotations

import pandas as pd

from divrec.reports.collect import knob_columns, metric_columns


def aggregate_seeds(df: pd.DataFrame, seed: str = "seed") -> pd.DataFrame:
    """One row per setting (all knobs but ``seed``) of the ok runs: ``n_seeds``, then
    ``<metric> mean`` and ``<metric> std`` (sample std, ddof=1; NaN for a single seed)."""
    ok = df[df["status"] == "ok"]
    knobs = [k for k in knob_columns(df) if k != seed]
    metrics = metric_columns(df)
    groups = ok.groupby(knobs, dropna=False, sort=False) if knobs else [((), ok)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(knobs, key, strict=True))
        row["n_seeds"] = len(g)
        for m in metrics:
            row[f"{m} mean"] = g[m].mean()
            row[f"{m} std"] = g[m].std(ddof=1)
        rows.append(row)
    return pd.DataFrame(rows)


def mean_std_table(agg: pd.DataFrame, metrics: list[str]) -> str:
    """Markdown table: knobs, n_seeds and ``mean ± std`` for ``metrics``."""
    knobs = [c for c in agg.columns if c != "n_seeds" and not c.endswith((" mean", " std"))]
    head = [*knobs, "n_seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for _, r in agg.iterrows():
        cells = [str(r[k]) for k in knobs] + [str(int(r["n_seeds"]))]
        for m in metrics:
            mean, std = r.get(f"{m} mean"), r.get(f"{m} std")
            cells.append(
                "-" if pd.isna(mean) else f"{mean:.4f} ± {0.0 if pd.isna(std) else std:.4f}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
