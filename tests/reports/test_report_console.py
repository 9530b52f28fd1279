"""divrec-report's terminal table at 80 columns, and knobs common to the ok runs (#17)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from divrec.reports.cli import main
from divrec.reports.console import fit_columns
from tests.reports.test_report_cli import X, Y, sections, write_run

METRICS = ("recall", "ndcg", "ild_cat", "cat_coverage", "item_coverage", "alpha_ndcg", "novelty")


@pytest.fixture()
def wide_sweep(tmp_path: Path) -> Path:
    """Three ok runs with long knob names and every headline metric; one failed run that
    alone sets ``trainer.devices``."""
    root = tmp_path / "sweep"
    for i, div in enumerate((0.0, 0.5, 0.9)):
        metrics = {f"test/{m}@10": 0.1 * (i + 1) + j / 100 for j, m in enumerate(METRICS)}
        knobs = {
            "rerank.diversity": div,
            "loss.diversity_weight": 0.01 * i,
            "model.encoder.finetune": ["frozen", "lora", "full"][i],
            "model": "two_tower",
        }
        write_run(root, str(i), metrics, {"status": "ok", "error": None, "knobs": knobs})
    write_run(
        root,
        "3",
        None,
        {
            "status": "failed",
            "error": "RuntimeError: CUDA out of memory",
            "knobs": {"trainer.devices": 8, "model": "two_tower", "rerank.diversity": 0.2},
        },
    )
    return root


def test_table_fits_80_columns_and_names_what_it_left_out(wide_sweep, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "40")
    assert main([str(wide_sweep)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    for name in ("run", "pareto", X, Y):  # headers whole, never one character per line
        assert name in out
    table, note = out.split("not shown (terminal too narrow; all in report.csv): ")
    left_out = " ".join(note.split("common to all")[0].split()).split(", ")  # may wrap
    assert "test/novelty@10" in left_out and "model.encoder.finetune" in left_out
    assert all(name not in table for name in left_out)
    csv = pd.read_csv(wide_sweep / "report" / "report.csv")
    assert set(left_out) <= set(csv.columns)  # the data of the left-out columns is kept


def test_wide_terminal_shows_every_column(wide_sweep, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "400")
    assert main([str(wide_sweep)]) == 0
    out = capsys.readouterr().out
    assert "not shown" not in out and "test/novelty@10" in out


def test_common_knobs_are_those_of_the_ok_runs(wide_sweep, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert main([str(wide_sweep)]) == 0
    out = capsys.readouterr().out
    (common,) = [line for line in out.splitlines() if line.startswith("common to all ok runs")]
    assert "model=two_tower" in common and "trainer.devices" not in common
    md = (wide_sweep / "report" / "report.md").read_text(encoding="utf-8")
    runs = sections(md)["Runs"]
    assert "`model=two_tower`" in runs and "trainer.devices" not in runs
    assert "`3` (failed)" in sections(md)["Failed runs"]


def test_fit_columns_keeps_priority_columns_first():
    header = ["run", "pareto", "a_long_knob_name", X, Y]
    rows = [["0", "✓", "x", "0.4000", "0.3000"]]
    # run 3+3, pareto 6+3, X 12+3, Y 15+3, border 1: 49; the knob (16+3) does not fit in 60.
    assert fit_columns(header, rows, 60, ["run", "pareto", X, Y]) == [0, 1, 3, 4]
    assert fit_columns(header, rows, 200, ["run", "pareto", X, Y]) == [0, 1, 2, 3, 4]
    assert fit_columns(header, rows, 5, ["run"]) == [0]  # never an empty table
