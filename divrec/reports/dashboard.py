"""``divrec-dashboard``: a W&B Report over one W&B group (one sweep) of divrec runs.

The report shows training curves per run, the accuracy-diversity scatter across the group,
a run comparer (config knobs and test metrics side by side) and each run's ``recommendations``
table. :func:`build_report` only builds the object (no network); :func:`main` saves it when
W&B is reachable and otherwise prints the sync/login steps to run first.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

import wandb_workspaces.reports.v2 as wr

from divrec.errors import ConfigError
from divrec.reports.pareto import DEFAULT_X, DEFAULT_Y
from divrec.run.wandb_log import explicit_mode, has_credentials, sync_command

PROG = "divrec-dashboard"
TABLE_KEY = "recommendations"  # logged by divrec.run.wandb_log.log_recommendation_table
OFFLINE_MODES = ("offline", "disabled", "dryrun")  # WANDB_MODE values that never upload
SYNC_CMD = sync_command("outputs")


def group_filter(group: str) -> str:
    """Runset filter string selecting the runs of W&B group ``group`` (quotes escaped)."""
    return f"Group == {group!r}"


def _val_metric(x: str) -> str:
    """Per-epoch validation twin of the test metric ``x`` (``test/ndcg@10`` -> ``val/ndcg@10``)."""
    return "val/" + x.split("/", 1)[1] if x.startswith("test/") else "val/ndcg@10"


def build_report(
    project: str,
    entity: str | None,
    group: str,
    x: str = DEFAULT_X,
    y: str = DEFAULT_Y,
    title: str | None = None,
) -> wr.Report:
    """The report object for ``group`` in ``entity/project``; not saved, no network call."""
    if not group:
        raise ConfigError("group: must name a W&B group (the `group` config key of the runs)")
    title = title or f"divrec: {group}"
    if len(title) > 128:
        raise ConfigError(f"title: W&B report titles are at most 128 characters, got {len(title)}")
    entity = entity or ""  # W&B fills in the default entity at save time

    def runset() -> wr.Runset:  # one per grid: each grid owns its runset
        return wr.Runset(
            entity=entity,
            project=project,
            name=f"group {group}",
            filters=group_filter(group),
            pinned_columns=["run:displayName", f"summary:{x}", f"summary:{y}"],
        )

    val = _val_metric(x)
    grids = [
        (
            "Training curves",
            [
                wr.LinePlot(title="train/loss", x="Step", y=["train/loss"], layout=_half(0)),
                wr.LinePlot(title=val, x="epoch", y=[val], layout=_half(12)),
            ],
        ),
        (
            "Accuracy vs diversity",
            [wr.ScatterPlot(title=f"{y} vs {x}", x=x, y=y, layout=wr.Layout(w=24, h=12))],
        ),
        ("Runs: config knobs and metrics", [wr.RunComparer(diff_only="split")]),
        (
            "Recommendations per run",
            [wr.WeavePanelSummaryTable(table_name=TABLE_KEY, layout=wr.Layout(w=24, h=16))],
        ),
    ]
    blocks: list = [
        wr.P(f"Runs of W&B group '{group}' in project '{project}'. Made by {PROG}."),
    ]
    for heading, panels in grids:
        blocks += [wr.H2(heading), wr.PanelGrid(runsets=[runset()], panels=panels)]
    return wr.Report(project=project, entity=entity, title=title, blocks=blocks)


def _half(x: int) -> wr.Layout:
    return wr.Layout(x=x, y=0, w=12, h=8)


def describe(report: wr.Report) -> list[str]:
    """One line per panel of ``report``: ``section: PanelType title-or-key``."""
    lines, section = [], ""
    for block in report.blocks:
        if isinstance(block, wr.H2):
            section = "".join(map(str, block.text)) if isinstance(block.text, list) else block.text
        for panel in getattr(block, "panels", []):
            label = getattr(panel, "title", None) or getattr(panel, "table_name", None) or ""
            lines.append(f"{section}: {type(panel).__name__} {label}".rstrip())
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="W&B Report of one group of divrec runs.")
    p.add_argument("--project", default="divrec", help="W&B project (default divrec)")
    p.add_argument("--entity", default=None, help="W&B entity (default: your default entity)")
    p.add_argument("--group", required=True, help="W&B group of the runs (config key `group`)")
    p.add_argument("--x", default=DEFAULT_X, help=f"scatter x metric (default {DEFAULT_X})")
    p.add_argument("--y", default=DEFAULT_Y, help=f"scatter y metric (default {DEFAULT_Y})")
    p.add_argument("--title", default=None, help="report title (default 'divrec: GROUP')")
    p.add_argument("--dry-run", action="store_true", help="print the plan, save nothing")
    return p


def _print_plan(report: wr.Report, argv: Sequence[str], reason: str) -> None:
    where = f"{report.entity or '<default entity>'}/{report.project}"
    print(f"{PROG}: {reason}; report not saved.")
    print(f"Would create report '{report.title}' in {where} with panels:")
    for line in describe(report):
        print(f"  - {line}")
    rerun = [a for a in argv if a != "--dry-run"]
    mode = (explicit_mode() or "").lower()
    prefix = "WANDB_MODE=online " if mode in OFFLINE_MODES else ""
    print("To publish it, run first (from the folder holding outputs/):")
    print(f"  1. {SYNC_CMD}   # upload the offline runs")
    print("  2. wandb login")
    print(f"  3. {prefix}{shlex.join([PROG, *rerun])}")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 saved or dry run, 1 save failed, 2 bad input, 3 offline."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        report = build_report(args.project, args.entity, args.group, args.x, args.y, args.title)
    except (ConfigError, ValueError) as exc:
        print(f"{PROG}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.dry_run:
        _print_plan(report, argv, "dry run")
        return 0
    mode = (explicit_mode() or "").lower()
    if mode in OFFLINE_MODES or not has_credentials():
        _print_plan(report, argv, f"W&B is {mode}" if mode in OFFLINE_MODES else "no W&B key")
        return 3
    try:
        if not report.entity:
            import wandb

            report.entity = wandb.Api().default_entity or ""
        report.save()
        url = report.url
    except Exception as exc:  # network, auth, server: one line, no traceback
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"{PROG}: error: cannot save report: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 1
    print(f"{PROG}: saved report {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
