"""collect_runs, plot and the divrec-report CLI end to end on a folder of fake runs."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from divrec.errors import DataError
from divrec.reports.cli import main, make_report
from divrec.reports.collect import collect_runs, knob_columns, metric_columns, parse_overrides

X, Y = "test/ndcg@10", "test/ild_cat@10"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(root: Path, rel: str, metrics: dict | None, meta: dict | None, hydra=None) -> None:
    run = root / rel
    run.mkdir(parents=True, exist_ok=True)
    payload = dict(metrics or {})
    if meta is not None:
        payload["meta"] = {"run_name": rel, "group": "g", "config_hash": "h", **meta}
    (run / "metrics.json").write_text(json.dumps(payload))
    if hydra is not None:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in hydra))


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    """Multirun layout 0/1/2/3/10 plus a nested run; one failed, one corrupt, one lacking y."""
    root = tmp_path / "sweep"
    ok = {"status": "ok", "error": None}
    write_run(
        root,
        "0",
        {X: 0.40, Y: 0.30, "test/recall@10": 0.5, "val/ndcg@10": 0.41},
        {**ok, "knobs": {"rerank.diversity": 0.0, "model": "sasrec"}, "overrides": ["x=1"]},
    )
    write_run(
        root,
        "1",
        {X: 0.35, Y: 0.45, "test/recall@10": 0.4, "val/ndcg@10": None},
        {**ok, "overrides": ["model=sasrec", "rerank.diversity=0.5", "hydra.job.chdir=true"]},
    )
    # Overrides only in .hydra/overrides.yaml.
    write_run(
        root,
        "2",
        {X: 0.30, Y: 0.40},
        ok,
        hydra=["model=sasrec", "rerank.diversity=0.9", "hydra/launcher=joblib"],
    )
    write_run(root, "3", None, None, hydra=["model=gru4rec"])
    (root / "3" / "metrics.json").write_text('{"test/ndcg@10": 0.5, ')  # cut off mid-write
    write_run(
        root,
        "10",
        None,
        {"status": "failed", "error": "RuntimeError: CUDA out of memory", "overrides": []},
        hydra=["model=bert4rec", "rerank.diversity=0.3"],
    )
    write_run(
        root,
        "nested/a",
        {X: 0.9},
        {**ok, "knobs": {"model": "pop", "rerank.diversity": 0.0, "seed": 7}},
    )
    return root


def sections(markdown: str) -> dict[str, str]:
    out, name = {}, "head"
    for line in markdown.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            out[name] = ""
        else:
            out[name] = out.get(name, "") + line + "\n"
    return out


# --- collect ---------------------------------------------------------------------------------


def test_collect_rows_knobs_and_metrics(sweep):
    df = collect_runs(sweep)
    assert df["run"].tolist() == ["0", "1", "2", "3", "10", "nested/a"]  # natural order
    assert df["status"].tolist() == ["ok", "ok", "ok", "unreadable", "failed", "ok"]
    assert knob_columns(df) == ["rerank.diversity", "model", "seed"]
    assert str(df["seed"].dtype) == "Int64"  # an int knob some runs lack stays an int
    assert set(metric_columns(df)) == {X, Y, "test/recall@10", "val/ndcg@10"}
    by_run = df.set_index("run")
    # meta.knobs wins over meta.overrides (run 0 has "x=1" in overrides, not a knob column)
    assert "x" not in df.columns and by_run.loc["0", "rerank.diversity"] == 0.0
    assert by_run.loc["1", "rerank.diversity"] == 0.5 and by_run.loc["1", "model"] == "sasrec"
    assert by_run.loc["2", "rerank.diversity"] == 0.9  # from .hydra/overrides.yaml
    assert by_run.loc["3", "model"] == "gru4rec"  # corrupt JSON: knobs still from .hydra
    assert pd.isna(by_run.loc["3", "rerank.diversity"])
    assert "JSONDecodeError" in by_run.loc["3", "error"]
    assert not any(c.startswith("hydra") for c in df.columns)
    assert math.isnan(by_run.loc["1", "val/ndcg@10"])  # null -> NaN
    assert math.isnan(by_run.loc["nested/a", Y])
    assert by_run.loc["10", "error"] == "RuntimeError: CUDA out of memory"


def test_collect_empty_meta_overrides_fall_back_to_hydra(sweep):
    # Run 10's meta.overrides is an empty list: the YAML next to it supplies the knobs.
    df = collect_runs(sweep).set_index("run")
    assert df.loc["10", "model"] == "bert4rec" and df.loc["10", "rerank.diversity"] == 0.3


def test_parse_overrides():
    got = parse_overrides(
        ["+a.b=1", "++c=2.5", "model=x", "hydra.run.dir=o", "hydra/launcher=j", "~d", "lr=1e-3"]
        + ["name=nan", "noequals", "s=a=b"]
    )
    assert got == {"a.b": 1, "c": 2.5, "model": "x", "lr": 0.001, "name": "nan", "s": "a=b"}


@pytest.mark.parametrize("content", ["[1, 2]", "\xff\xfe", ""])
def test_collect_bad_files_become_unreadable_rows(tmp_path, content):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_bytes(content.encode("latin-1"))
    df = collect_runs(tmp_path)
    assert df["status"].tolist() == ["unreadable"] and df["error"].iloc[0]


def test_collect_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        collect_runs(tmp_path / "nope")
    with pytest.raises(DataError, match="no metrics.json"):
        collect_runs(tmp_path)


# --- CLI end to end ----------------------------------------------------------------------------


def test_cli_end_to_end(sweep, capsys):
    assert main([str(sweep)]) == 0
    out = sweep / "report"
    md = (out / "report.md").read_text(encoding="utf-8")
    sec = sections(md)
    assert "`10` (failed): RuntimeError: CUDA out of memory" in sec["Failed runs"]
    assert "`3` (unreadable): JSONDecodeError" in sec["Failed runs"]
    assert "`nested/a`" not in sec["Failed runs"]
    assert f"- `nested/a`: missing `{Y}`" in sec["Runs missing a metric"]
    assert "`0`" not in sec["Runs missing a metric"]

    # Table rows: run | pareto | knobs | metrics. Pareto by hand: (0.40, 0.30) best x and
    # (0.35, 0.45) best y are on the front; (0.30, 0.40) is dominated by (0.35, 0.45).
    rows = [r for r in sec["Runs"].splitlines() if r.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:4] == ["run", "pareto", "rerank.diversity", "model"]
    assert (
        header[4:7] == ["seed", X, Y] and "test/recall@10" in header and "val/ndcg@10" not in header
    )
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows}
    assert cells["0"][1] == "✓" and cells["1"][1] == "✓" and cells["2"][1] == ""
    assert cells["nested/a"][1] == "" and cells["nested/a"][header.index(Y)] == ""
    assert cells["1"][header.index(X)] == "0.3500"
    assert "10" not in cells and "3" not in cells  # failed runs are not in the table

    csv = pd.read_csv(out / "report.csv", dtype={"run": str})
    assert csv["run"].tolist() == ["0", "1", "2", "3", "10", "nested/a"]
    assert {"rerank.diversity", "model", X, Y, "val/ndcg@10", "pareto", "status"} <= set(csv)
    assert csv["pareto"].tolist() == [True, True, False, False, False, False]
    assert csv["rerank.diversity"].tolist()[:3] == [0.0, 0.5, 0.9]
    assert csv["status"].tolist() == ["ok", "ok", "ok", "unreadable", "failed", "ok"]
    assert (out / "report.csv").read_text().splitlines()[-1].split(",")[6] == "7"  # not 7.0

    png = (out / "pareto.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1000
    assert not list(out.glob(".*.tmp"))  # atomic writes left no temporaries
    stdout = capsys.readouterr().out
    assert "nested/a" in stdout and "pareto" in stdout and "report.md" in stdout


def test_cli_out_and_metrics_options(sweep, tmp_path):
    out = tmp_path / "elsewhere"
    assert main([str(sweep), "--out", str(out), "--metrics", f"{Y}, val/ndcg@10"]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    header = next(r for r in md.splitlines() if r.startswith("| run"))
    assert [c.strip() for c in header.strip("|").split("|")][5:] == [Y, "val/ndcg@10"]
    assert not (sweep / "report").exists()


def test_cli_custom_axes_and_make_report(sweep, tmp_path):
    res = make_report(sweep, x="test/recall@10", y=X, out=tmp_path / "r")
    assert {"markdown", "csv", "png", "df"} <= set(res) and res["png"].exists()
    # recall vs ndcg: run 0 (0.5, 0.40) dominates run 1 (0.4, 0.35); others lack recall.
    assert res["df"].set_index("run")["pareto"].to_dict()["0"]
    assert not res["df"]["pareto"].iloc[1:].any()


def test_cli_errors_exit_2_with_one_line(sweep, tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    assert main([str(sweep), "--y", "test/ild@10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'test/ild@10' (--y)" in err and Y in err
    assert main([str(sweep), "--metrics", "test/nope"]) == 2
    assert "test/nope" in capsys.readouterr().err


def test_all_runs_failed_still_reports(tmp_path):
    write_run(tmp_path, "a", None, {"status": "failed", "error": "boom"})
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "`a` (failed): boom" in md and "No successful runs." in md
    assert (tmp_path / "report" / "pareto.png").read_bytes()[:8] == PNG_MAGIC


class FakeWandb(types.ModuleType):
    def __init__(self, active: bool):
        super().__init__("wandb")
        self.run = object() if active else None
        self.logged: list[dict] = []

    def Table(self, dataframe):  # noqa: N802  (mirrors wandb's API)
        return ("table", dataframe)

    def Image(self, path):  # noqa: N802
        return ("image", path)

    def log(self, data):
        self.logged.append(data)


@pytest.mark.parametrize("active", [True, False])
def test_logs_to_wandb_only_when_a_run_is_active(sweep, monkeypatch, active):
    fake = FakeWandb(active)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    make_report(sweep)
    if not active:
        assert fake.logged == []
        return
    (logged,) = fake.logged
    kind, table = logged["report/runs"]
    assert kind == "table" and table["run"].tolist()[0] == "0" and len(table) == 6
    assert table["seed"].tolist() == [None] * 5 + [7]  # no pd.NA reaches wandb
    assert logged["report/pareto"] == ("image", str(sweep / "report" / "pareto.png"))


def test_missing_category_axis_falls_back_to_ild_emb(tmp_path, capsys):
    # run "nocat" was trained without categories: no ild_cat; it must not win on a made-up 1.0
    root = tmp_path / "sweep"
    emb = "test/ild_emb@10"
    ok = {"status": "ok", "error": None}
    write_run(root, "a", {X: 0.40, Y: 0.30, emb: 0.20}, ok)
    write_run(root, "b", {X: 0.30, Y: 0.50, emb: 0.60}, ok)
    write_run(root, "nocat", {X: 0.20, Y: math.nan, emb: 0.10}, ok)
    result = make_report(root, log_wandb=False)
    out = capsys.readouterr().out
    assert out.count("using test/ild_emb@10 instead") == 1 and "test/ild_cat@10" in out
    assert (result["x"], result["y"]) == (X, emb)
    front = dict(zip(result["df"]["run"], result["df"]["pareto"], strict=True))
    assert front == {"a": True, "b": True, "nocat": False}
    assert "`test/ndcg@10` vs `test/ild_emb@10`" in result["markdown"].read_text()


def test_category_axis_absent_everywhere_falls_back(tmp_path, capsys):
    root = tmp_path / "sweep"
    ok = {"status": "ok", "error": None}
    write_run(root, "a", {X: 0.40, "test/ild_emb@10": 0.20}, ok)
    write_run(root, "b", {X: 0.30, "test/ild_emb@10": 0.60}, ok)
    assert main([str(root)]) == 0  # the default y (ild_cat) is in no run: no error
    assert "using test/ild_emb@10 instead" in capsys.readouterr().out


def test_axis_kept_when_every_run_has_it(tmp_path, capsys):
    root = tmp_path / "sweep"
    ok = {"status": "ok", "error": None}
    write_run(root, "a", {X: 0.40, Y: 0.3, "test/ild_emb@10": 0.20}, ok)
    assert make_report(root, log_wandb=False)["y"] == Y
    assert "instead" not in capsys.readouterr().out


def test_repeat_metric_axes_are_plain_metrics(tmp_path, capsys):
    # repeat-purchase keys: no category fallback, a Pareto front like any other pair of axes
    root = tmp_path / "sweep"
    rep, share = "test/ndcg_repeat@10", "test/repeat_share@10"
    ok = {"status": "ok", "error": None}
    write_run(root, "a", {X: 0.4, rep: 0.9, share: 0.5, "test/recall_new@10": 0.1}, ok)
    write_run(root, "b", {X: 0.3, rep: 0.0, share: 0.0, "test/recall_new@10": 0.3}, ok)
    result = make_report(root, x=rep, y="test/recall_new@10", log_wandb=False)
    assert (result["x"], result["y"]) == (rep, "test/recall_new@10")
    assert "instead" not in capsys.readouterr().out
    assert set(metric_columns(result["df"])) == {X, rep, share, "test/recall_new@10"}
    front = dict(zip(result["df"]["run"], result["df"]["pareto"], strict=True))
    assert front == {"a": True, "b": True}
