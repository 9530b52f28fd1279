"""``divrec-report``'s terminal output: the table of ok runs fitted to the terminal width.

Columns are kept in priority order (run, pareto tick, the two Pareto axes, varying knobs, the
other metrics) while they fit ``shutil.get_terminal_size()``; the ones left out are named
under the table (``report.csv`` and ``report.md`` have them all). Knobs common to every ok run
are listed on one line, as in ``report.md``.
"""

from __future__ import annotations

import shutil
from typing import Any

MAX_CELL = 28  # a column wider than this folds its cells (never its header)


def column_width(name: str, cells: list[str]) -> int:
    """Display width of one column: its header in full, cells up to ``MAX_CELL``."""
    return max(len(name), min(MAX_CELL, max((len(c) for c in cells), default=0)))


def fit_columns(
    header: list[str], rows: list[list[str]], width: int, first: list[str]
) -> list[int]:
    """Indices (in table order) of the columns that fit in ``width`` characters.

    ``first``: column names taken before the others (then table order); a rich table with
    borders takes 3 characters per column plus 1. Always at least the first column.
    """
    order = [header.index(n) for n in first if n in header]
    order += [i for i in range(len(header)) if i not in order]
    chosen: list[int] = []
    used = 1
    for i in order:
        need = column_width(header[i], [r[i] for r in rows]) + 3
        if chosen and used + need > width:
            continue
        chosen.append(i)
        used += need
    return sorted(chosen)


def print_console(result: dict[str, Any], x: str, y: str) -> None:
    """Rich table of the successful runs, fitted to the terminal, plus where the files went."""
    from rich.console import Console
    from rich.table import Table

    from divrec.reports.cli import common_knobs, table_cells

    df = result["df"]
    ok = df[df["status"] == "ok"]
    header, rows = table_cells(ok, result["shown"])
    width = shutil.get_terminal_size().columns
    keep = fit_columns(header, rows, width, ["run", "pareto", x, y])
    table = Table(title=f"divrec report ({len(ok)} ok of {len(df)} runs)")
    for i in keep:
        name = header[i]
        justify = "right" if name in result["shown"] else "left"
        table.add_column(name, justify=justify, overflow="fold", min_width=len(name))
    for cells in rows:
        table.add_row(*(cells[i] for i in keep), style="bold" if cells[1] else None)
    console = Console(width=width)
    console.print(table)
    left_out = [header[i] for i in range(len(header)) if i not in keep]
    if left_out:
        console.print(
            f"not shown (terminal too narrow; all in report.csv): {', '.join(left_out)}",
            markup=False,
            highlight=False,
        )
    common = common_knobs(ok)
    if common:
        text = ", ".join(f"{k}={v}" for k, v in common.items())
        console.print(f"common to all ok runs: {text}", markup=False, highlight=False)
    n_bad = len(df) - len(ok)
    if n_bad:
        console.print(
            f"[yellow]{n_bad} failed, unreadable or incomplete run(s): see report.md[/yellow]"
        )
    for key in ("markdown", "csv", "png"):
        console.print(f"wrote {result[key]}", markup=False, highlight=False)
