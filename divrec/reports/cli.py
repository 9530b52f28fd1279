"""``divrec-report FOLDER``: table, CSV and Pareto plot of a sweep's runs.

Writes ``report.md`` (knobs + metrics per run, Pareto rows ticked, runs missing a metric,
failed runs), ``report.csv`` (every run, every metric) and ``pareto.png`` into ``--out``
(default ``FOLDER/report``), prints the table fitted to the terminal
(:mod:`divrec.reports.console`), and logs table and image to wandb only when the calling
process already has an active wandb run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from divrec.errors import DataError, DivrecError
from divrec.reports.collect import (
    collect_runs,
    format_knob,
    is_missing,
    knob_columns,
    metric_columns,
)
from divrec.reports.compare import cut_offs, print_table, write_baseline, write_compare
from divrec.reports.pareto import DEFAULT_X, DEFAULT_Y, axis_fallback, pareto_front
from divrec.reports.plot import plot_pareto
from divrec.utils.io import atomic_path

CHECK = "✓"
MAX_ERROR_CHARS = 300


def make_report(
    folder: str | os.PathLike,
    x: str = DEFAULT_X,
    y: str = DEFAULT_Y,
    out: str | os.PathLike | None = None,
    *,
    metrics: Sequence[str] | None = None,
    maximize: tuple[bool, bool] = (True, True),
    log_wandb: bool = True,
) -> dict[str, Any]:
    """Collect runs under ``folder`` and write the report files into ``out``.

    ``metrics``: metric columns shown in ``report.md`` (default ``x``, ``y``, then the other
    metrics with the same split prefix as ``x``, e.g. ``test/``); the CSV always has all.
    The Pareto front is computed over runs with status ``"ok"`` only; a run lacking an axis
    metric is never on it. A category metric axis that some runs lack (no item categories)
    falls back to ``ild_emb`` (:func:`~divrec.reports.pareto.axis_fallback`), said in one line.
    Returns ``{"markdown": Path, "csv": Path, "png": Path, "df": DataFrame, "shown": [...],
    "x": str, "y": str}`` where ``df`` is the collected frame plus a bool ``pareto`` column
    and ``x``/``y`` the axes used.
    Raises DataError for a missing/empty folder or unknown metric names.
    """
    folder = Path(folder)
    out = folder / "report" if out is None else Path(out)
    df = collect_runs(folder)
    x, y = _fallback_axes(df, x, y)
    shown = _check_metrics(df, x, y, metrics)
    for col in (x, y):  # every run failed: keep the columns so the rest still works
        if col not in df.columns:
            df[col] = math.nan
    ok = df["status"] == "ok"
    front = pareto_front(df[ok], x, y, maximize).reindex(df.index, fill_value=False)
    df.insert(df.columns.get_loc("error") + 1, "pareto", front.astype(bool))

    paths = {"markdown": out / "report.md", "csv": out / "report.csv", "png": out / "pareto.png"}
    plot_pareto(df[ok], x, y, df.loc[ok, "pareto"], paths["png"], maximize=maximize)
    with atomic_path(paths["csv"]) as tmp:
        df.to_csv(tmp, index=False)
    markdown = render_markdown(df, folder, x, y, shown, maximize, paths["png"].name)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    if log_wandb:
        _log_to_active_wandb(df, paths["png"])
    return {**paths, "df": df, "shown": shown, "x": x, "y": y}


def _fallback_axes(df: pd.DataFrame, x: str, y: str) -> tuple[str, str]:
    """Both axes through :func:`axis_fallback`; one printed line per axis that changed."""
    out = []
    for flag, metric in (("x", x), ("y", y)):
        used = axis_fallback(df, metric)
        if used != metric:
            print(
                f"divrec-report: {flag} axis {metric} is missing or NaN in some runs (no item "
                f"categories): using {used} instead"
            )
        out.append(used)
    return out[0], out[1]


def render_markdown(
    df: pd.DataFrame,
    folder: Path,
    x: str,
    y: str,
    shown: list[str],
    maximize: tuple[bool, bool],
    png_name: str,
) -> str:
    """The ``report.md`` text for a frame from ``make_report`` (has a ``pareto`` column)."""
    ok = df["status"] == "ok"
    bad = df[~ok]
    has_both = df[x].map(_is_finite) & df[y].map(_is_finite)
    missing = df[ok & ~has_both.astype(bool)]
    direction = "/".join("max" if m else "min" for m in maximize)
    lines = [
        f"# divrec report: `{folder}`",
        "",
        f"{len(df)} runs: {int(ok.sum())} ok, {len(bad)} failed, unreadable or incomplete. "
        f"Pareto front on `{x}` vs `{y}` ({direction}): {int(df['pareto'].sum())} runs.",
        "",
        f"![Pareto front]({png_name})",
        "",
        "## Runs",
        "",
        *_common_line(df[ok]),
        markdown_table(*table_cells(df[ok], shown)) if ok.any() else "No successful runs.",
        "",
        "## Runs missing a metric",
        "",
    ]
    for _, row in missing.iterrows():
        lacks = [m for m in (x, y) if not _is_finite(row[m])]
        lines.append(f"- `{row['run']}`: missing {', '.join(f'`{m}`' for m in lacks)}")
    if missing.empty:
        lines.append("None.")
    lines += ["", "## Failed runs", ""]
    for _, row in bad.iterrows():
        lines.append(f"- `{row['run']}` ({row['status']}): {_one_line(row['error'])}")
    if bad.empty:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def varying_knobs(df: pd.DataFrame) -> tuple[list[str], dict[str, Any]]:
    """Knob columns whose value differs between runs, and the constant ones with their value.

    Knobs that no run of ``df`` sets (e.g. set only by failed runs, when ``df`` holds the ok
    ones) are in neither."""
    varying, constant = [], {}
    for k in knob_columns(df):
        if df[k].map(is_missing).all():
            continue
        values = {format_knob(v) for v in df[k]}
        if len(values) > 1 or len(df) == 1:
            varying.append(k)
        else:
            constant[k] = next(iter(values))
    return varying, constant


def table_cells(df: pd.DataFrame, shown: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows of display strings): run, pareto tick, varying knobs, shown metrics."""
    knobs, _ = varying_knobs(df)
    header = ["run", "pareto", *knobs, *shown]
    rows = []
    for _, row in df.iterrows():
        cells = [str(row["run"]), CHECK if row["pareto"] else ""]
        cells += [format_knob(row[k]) for k in knobs]
        cells += [_fmt_metric(row[m]) for m in shown]
        rows.append(cells)
    return header, rows


def common_knobs(df: pd.DataFrame) -> dict[str, Any]:
    """Knobs with one value over the (several) runs of ``df``: left out of the table."""
    return varying_knobs(df)[1] if len(df) > 1 else {}


def _common_line(df: pd.DataFrame) -> list[str]:
    """'Common to all runs: a=1, b=x' (knobs left out of the table because they never vary)."""
    constant = common_knobs(df)
    if not constant:
        return []
    return ["Common to all runs: " + ", ".join(f"`{k}={v}`" for k, v in constant.items()), ""]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """GitHub markdown table; ``|`` in cells escaped."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 2 bad input, 1 unwritable output)."""
    parser = argparse.ArgumentParser(
        prog="divrec-report",
        description="Table, CSV and Pareto plot (accuracy vs diversity) of a sweep's runs.",
    )
    parser.add_argument(
        "folder", nargs="?", help="sweep or runs folder (metrics.json searched at any depth)"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="paired per-user tests of RUN_B vs RUN_A (same split): compare.md/.csv",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="run folder: add significance.md/.csv with Holm p-values of every run vs it",
    )
    parser.add_argument("--x", default=DEFAULT_X, help=f"x-axis metric (default {DEFAULT_X})")
    parser.add_argument("--y", default=DEFAULT_Y, help=f"y-axis metric (default {DEFAULT_Y})")
    parser.add_argument("--out", default=None, help="output folder (default FOLDER/report)")
    parser.add_argument(
        "--metrics", default=None, help="comma list of metrics to show (default x, y, same split)"
    )
    parser.add_argument(
        "--aggregate",
        action="store_true",
        help="also write aggregate.md/.csv: mean ± std over seeds of runs that differ only in seed",
    )
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    if (args.folder is None) == (args.compare is None):
        parser.error("give either FOLDER or --compare RUN_A RUN_B")
    if args.compare:
        return _compare(args.compare, args.out, metrics)

    def report() -> tuple[dict[str, Any], dict[str, Any] | None]:
        result = make_report(args.folder, args.x, args.y, args.out, metrics=metrics)
        if args.aggregate:
            _write_aggregate(result)
        sig = write_baseline(result, args.folder, args.baseline) if args.baseline else None
        return result, sig

    done, code = _guarded(report)
    if code:
        return code
    from divrec.reports.console import print_console

    result, sig = done
    print_console(result, result["x"], result["y"])
    if sig is not None:
        title = f"significance vs {args.baseline}"
        print_table(sig["df"], title, [sig["markdown"], sig["csv"]])
    return 0


def _guarded(work: Callable[[], Any]) -> tuple[Any, int]:
    """``(work(), 0)``, or ``(None, 2)`` on bad input / ``(None, 1)`` on an unwritable output,
    with the error printed as one line."""
    try:
        return work(), 0
    except DivrecError as exc:
        print(f"divrec-report: error: {exc}", file=sys.stderr)
        return None, 2
    except OSError as exc:
        print(f"divrec-report: error: cannot write report: {exc}", file=sys.stderr)
        return None, 1


def _compare(runs: list[str], out: str | None, metrics: list[str] | None) -> int:
    """``--compare RUN_A RUN_B``: paired tests table, files, exit code."""
    ks = cut_offs(metrics) if metrics else [10, 20]
    res, code = _guarded(lambda: write_compare(runs[0], runs[1], out, ks))
    if code:
        return code
    print_table(res["df"], f"{runs[1]} vs {runs[0]} (diff = B - A)", [res["markdown"], res["csv"]])
    return 0


def _write_aggregate(result: dict[str, Any]) -> None:
    """``aggregate.md`` and ``aggregate.csv`` next to the report (mean ± std over seeds)."""
    from divrec.reports.aggregate import aggregate_seeds, mean_std_table

    agg = aggregate_seeds(result["df"])
    out = Path(result["markdown"]).parent
    with atomic_path(out / "aggregate.csv") as tmp:
        agg.to_csv(tmp, index=False)
    with atomic_path(out / "aggregate.md") as tmp:
        tmp.write_text("# mean ± std over seeds\n\n" + mean_std_table(agg, result["shown"]))
    print(f"wrote {out / 'aggregate.md'}")


HEADLINE = ("recall", "ndcg", "ild_cat", "cat_coverage", "item_coverage", "alpha_ndcg", "novelty")


def _check_metrics(df: pd.DataFrame, x: str, y: str, metrics: Sequence[str] | None) -> list[str]:
    """Validate metric names against the runs; return the metric columns to show."""
    available = metric_columns(df)
    if not available:  # nothing readable: the report still lists every failure
        return [x, y] if x != y else [x]
    wanted = [("--x", x), ("--y", y), *(("--metrics", m) for m in metrics or [])]
    unknown = [(flag, m) for flag, m in wanted if m not in available]
    if unknown:
        names = ", ".join(f"{m!r} ({flag})" for flag, m in unknown)
        raise DataError(
            f"metric {names} not found in any run; available metric keys: {', '.join(available)}"
        )
    if metrics:
        return list(dict.fromkeys(metrics))
    # Default: x, y and a few headline metrics at x's split and cut-off (the CSV has all).
    prefix = x.split("/", 1)[0] + "/" if "/" in x else ""
    cut = "@" + x.rsplit("@", 1)[1] if "@" in x else ""
    headline = [f"{prefix}{m}{cut}" for m in HEADLINE]
    return list(dict.fromkeys([x, y, *(m for m in headline if m in available)]))


def _log_to_active_wandb(df: pd.DataFrame, png: Path) -> bool:
    """Log table and plot to the caller's active wandb run; never start one. True if logged."""
    wandb = sys.modules.get("wandb")  # not imported -> this process has no active run
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    frame = df.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.Int64Dtype):  # wandb knows no pd.NA
            values = [None if is_missing(v) else int(v) for v in frame[col]]
        elif frame[col].dtype == object:  # wandb wants one type per column
            values = [None if is_missing(v) else str(v) for v in frame[col]]
        else:
            continue
        frame[col] = pd.Series(values, index=frame.index, dtype=object)
    try:
        wandb.log(
            {"report/runs": wandb.Table(dataframe=frame), "report/pareto": wandb.Image(str(png))}
        )
    except Exception as exc:  # a logging hiccup must not lose the report
        warnings.warn(f"divrec-report: could not log to wandb: {exc}", stacklevel=2)
        return False
    return True


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt_metric(value: Any) -> str:
    return "" if is_missing(value) else f"{float(value):.4f}"


def _one_line(error: Any) -> str:
    """Error text on one line, cut to ``MAX_ERROR_CHARS``."""
    text = " ".join(str(error).split()) if not is_missing(error) else "(no error message)"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


if __name__ == "__main__":
    raise SystemExit(main())
