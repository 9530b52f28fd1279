"""``divrec-report --compare A B`` and ``--baseline RUN``: significance tables and their files.

``--compare`` writes ``compare.md`` / ``compare.csv`` (one row per metric, see
:func:`divrec.reports.significance.compare_runs`) into ``--out`` (default ``B/compare``) and
prints them as a rich table. ``--baseline`` (with a sweep folder) writes
``significance.md`` / ``.csv`` next to the report: every ok run against the baseline, Holm
p-values (t-test) of the shown per-user metrics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from divrec.reports.significance import PER_USER, compare_runs
from divrec.utils.io import atomic_path

COLUMNS = (
    "metric",
    "n_users",
    "mean_a",
    "mean_b",
    "diff",
    "ci_low",
    "ci_high",
    "d_z",
    "p_t",
    "p_wilcoxon",
    "p_t_holm",
    "p_wilcoxon_holm",
)


def cut_offs(metrics: list[str]) -> list[int]:
    """The ``@k`` cut-offs of per-user metric names such as ``test/ndcg@10``."""
    ks = {int(m.rsplit("@", 1)[1]) for m in metrics if _per_user(m)}
    return sorted(ks) or [10]


def _per_user(metric: str) -> bool:
    name = metric.split("/", 1)[-1]
    return "@" in name and name.rsplit("@", 1)[0] in PER_USER and metric.startswith("test/")


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, float) and abs(value) < 1e-3 and value != 0:
        return f"{value:.2e}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(df: pd.DataFrame) -> str:
    from divrec.reports.cli import markdown_table

    return markdown_table(list(df.columns), [[_fmt(v) for v in r] for r in df.itertuples(False)])


def write_compare(run_a: str, run_b: str, out: str | None, ks: list[int]) -> dict[str, Any]:
    """Compare two runs; write ``compare.md`` / ``compare.csv``; return paths and the frame."""
    df = compare_runs(run_a, run_b, ks)[list(COLUMNS)]
    folder = Path(run_b) / "compare" if out is None else Path(out)
    paths = {"markdown": folder / "compare.md", "csv": folder / "compare.csv"}
    with atomic_path(paths["csv"]) as tmp:
        df.to_csv(tmp, index=False)
    head = (
        f"# divrec compare: A = `{run_a}`, B = `{run_b}`\n\n{df['n_users'].iloc[0]} paired "
        "users; diff = B - A with 95% CI; d_z = mean/sd of the differences; Holm over "
        "the metrics.\n\n"
    )
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(head + markdown(df) + "\n", encoding="utf-8")
    return {**paths, "df": df}


def write_baseline(result: dict[str, Any], folder: str, baseline: str) -> dict[str, Any]:
    """Every ok run of a sweep report against ``baseline``: Holm t-test p-value per shown
    per-user metric; ``significance.md`` / ``.csv`` next to ``report.md``."""
    shown = [m for m in result["shown"] if _per_user(m)] or ["test/ndcg@10"]
    ks = cut_offs(shown)
    rows, n_tested = [], len(PER_USER) * len(ks)
    for _, run in result["df"][result["df"]["status"] == "ok"].iterrows():
        path = Path(folder) / str(run["run"])
        if path.resolve() == Path(baseline).resolve():
            continue
        cmp = compare_runs(baseline, path, ks).set_index("metric")
        n_tested = len(cmp)
        row: dict[str, Any] = {"run": str(run["run"])}
        for m in shown:
            known = m in cmp.index  # a category metric is absent without the catalogue
            row[f"{m} diff"] = cmp.loc[m, "diff"] if known else float("nan")
            row[f"{m} p_holm"] = cmp.loc[m, "p_t_holm"] if known else float("nan")
        rows.append(row)
    df = pd.DataFrame(rows)
    out = Path(result["markdown"]).parent
    paths = {"markdown": out / "significance.md", "csv": out / "significance.csv"}
    with atomic_path(paths["csv"]) as tmp:
        df.to_csv(tmp, index=False)
    head = (
        f"# significance vs baseline `{baseline}`\n\ndiff = run - baseline; p_holm: paired "
        f"t-test over users, Holm over the {n_tested} per-user metrics at "
        f"@{', @'.join(map(str, ks))} of each run.\n\n"
    )
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(head + (markdown(df) if rows else "No other ok runs.") + "\n")
    return {**paths, "df": df}


def compact(df: pd.DataFrame) -> pd.DataFrame:
    """Console view of a compare frame: short names, CI as one cell, Holm p-values only."""
    ci = [f"[{_fmt(lo)}, {_fmt(hi)}]" for lo, hi in zip(df["ci_low"], df["ci_high"], strict=True)]
    return pd.DataFrame(
        {
            "metric": df["metric"].str.removeprefix("test/"),
            "A": df["mean_a"],
            "B": df["mean_b"],
            "B-A": df["diff"],
            "95% CI": ci,
            "d_z": df["d_z"],
            "p t (Holm)": df["p_t_holm"],
            "p W (Holm)": df["p_wilcoxon_holm"],
        }
    )


def print_table(df: pd.DataFrame, title: str, files: list[Path]) -> None:
    """Rich table of a compare / significance frame plus where the files went."""
    from rich.console import Console
    from rich.table import Table

    if "ci_low" in df.columns:
        df = compact(df)
    table = Table(title=title)
    for c in df.columns:
        name = str(c).removeprefix("test/").replace(" p_holm", " p")
        left = c in ("metric", "run")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for r in df.itertuples(False):
        table.add_row(*(_fmt(v) for v in r))
    console = Console()
    console.print(table)
    for f in files:
        console.print(f"wrote {f}", markup=False, highlight=False, soft_wrap=True)
