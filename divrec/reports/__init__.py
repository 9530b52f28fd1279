"""Reports over finished runs: collect metrics, find the accuracy/diversity Pareto front, plot.

``divrec-report FOLDER`` (``divrec.reports.cli:main``) is the command-line entry point.
"""

from divrec.reports.collect import collect_runs, knob_columns, metric_columns, parse_overrides
from divrec.reports.pareto import pareto_front

__all__ = [
    "collect_runs",
    "knob_columns",
    "make_report",
    "metric_columns",
    "pareto_front",
    "parse_overrides",
    "plot_pareto",
]


def __getattr__(name: str):
    """Import the plotting/CLI parts (matplotlib) only when asked for."""
    if name == "plot_pareto":
        from divrec.reports.plot import plot_pareto

        return plot_pareto
    if name == "make_report":
        from divrec.reports.cli import make_report

        return make_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
