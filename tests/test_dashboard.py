"""divrec-dashboard: report structure offline, and the offline / dry-run / error exit paths."""

from __future__ import annotations

import json

import pytest
import wandb_workspaces.reports.v2 as wr
from wandb_workspaces import expr

from divrec.reports.dashboard import build_report, has_credentials, main

KEY = "a" * 40  # well-formed but fake W&B API key


def _panels(report: wr.Report) -> list:
    return [p for b in report.blocks if isinstance(b, wr.PanelGrid) for p in b.panels]


@pytest.fixture
def no_save(monkeypatch):
    """Any call to Report.save fails the test (offline paths must never try the network)."""

    def boom(self, *a, **k):
        raise AssertionError("save() called")

    monkeypatch.setattr(wr.Report, "save", boom)


@pytest.fixture
def no_creds(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login user password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


@pytest.mark.parametrize("group", ["mmr_sweep", 'it\'s "odd"'])
def test_build_report_panels_and_group_filter(group):
    r = build_report("proj", "ent", group, x="test/ndcg@10", y="test/ild_cat@10", title="T")
    assert (r.project, r.entity, r.title) == ("proj", "ent", "T")
    panels = _panels(r)
    kinds = {type(p).__name__ for p in panels}
    assert kinds == {"LinePlot", "ScatterPlot", "RunComparer", "WeavePanelSummaryTable"}
    line_ys = sorted(y for p in panels if isinstance(p, wr.LinePlot) for y in p.y)
    assert line_ys == ["train/loss", "val/ndcg@10"]
    (scatter,) = [p for p in panels if isinstance(p, wr.ScatterPlot)]
    assert (scatter.x, scatter.y) == ("test/ndcg@10", "test/ild_cat@10")
    (table,) = [p for p in panels if isinstance(p, wr.WeavePanelSummaryTable)]
    assert table.table_name == "recommendations"
    grids = [b for b in r.blocks if isinstance(b, wr.PanelGrid)]
    assert len(grids) == 4
    for grid in grids:
        (rs,) = grid.runsets
        assert (rs.project, rs.entity) == ("proj", "ent")
        f = expr.expr_to_filters(rs.filters)  # W&B's own parser: run attribute group == group
        assert (f.key.section, f.key.name, f.op, f.value) == ("run", "group", "=", group)
    # The serialised spec (what save() uploads; entity "" skips the project-id lookup).
    r = build_report("proj", None, group)
    spec = json.loads(r._to_model().spec.model_dump_json(by_alias=True, exclude_none=True))
    runsets = [b["metadata"]["runSets"][0] for b in spec["blocks"] if b.get("type") == "panel-grid"]
    assert len(runsets) == 4
    for rs in runsets:
        assert rs["filters"]["filters"] == [
            {
                "key": {"section": "run", "name": "group"},
                "op": "=",
                "value": group,
                "disabled": False,
            }
        ]


def test_build_report_custom_axes_and_defaults():
    r = build_report("p", None, "g", x="test/recall@20", y="test/novelty@20")
    (scatter,) = [p for p in _panels(r) if isinstance(p, wr.ScatterPlot)]
    assert (scatter.x, scatter.y) == ("test/recall@20", "test/novelty@20")
    assert "val/recall@20" in [y for p in _panels(r) if isinstance(p, wr.LinePlot) for y in p.y]
    assert r.title == "divrec: g" and r.entity == ""


def test_offline_mode_prints_sync_steps_and_returns_3(monkeypatch, capsys, no_save):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", KEY)  # even with a key, offline mode never saves
    assert main(["--project", "p", "--group", "mmr_sweep"]) == 3
    out = capsys.readouterr().out
    assert "wandb sync" in out and "offline-run-*" in out and "wandb login" in out
    assert "WANDB_MODE=online divrec-dashboard --project p --group mmr_sweep" in out
    assert "ScatterPlot" in out and "WeavePanelSummaryTable recommendations" in out
    assert out.index("wandb sync") < out.index("wandb login")


def test_no_credentials_returns_3(capsys, no_creds, no_save):
    assert not has_credentials()
    assert main(["--group", "g"]) == 3
    assert "no W&B key" in capsys.readouterr().out


def test_netrc_entry_counts_as_credentials(no_creds):
    no_creds.write_text(f"machine api.wandb.ai login user password {KEY}\n")
    assert has_credentials()


def test_dry_run_returns_0_without_saving(monkeypatch, capsys, no_save):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(["--group", "g", "--dry-run", "--entity", "me"]) == 0
    out = capsys.readouterr().out
    assert "me/divrec" in out and "wandb login" in out
    assert "--dry-run" not in out.splitlines()[-1]  # the rerun command actually saves


def test_missing_group_is_argparse_error():
    with pytest.raises(SystemExit) as exc:
        main(["--project", "p"])
    assert exc.value.code == 2


def test_too_long_title_returns_2(capsys):
    assert main(["--group", "g", "--title", "x" * 129, "--dry-run"]) == 2
    assert "128" in capsys.readouterr().err


def _online(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", KEY)


def test_save_error_is_one_line_and_returns_1(monkeypatch, capsys):
    _online(monkeypatch)

    def fail(self, *a, **k):
        raise ConnectionError("cannot reach api.wandb.ai\nsecond line")

    monkeypatch.setattr(wr.Report, "save", fail)
    assert main(["--group", "g", "--entity", "me"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach api.wandb.ai" in err
    assert "Traceback" not in err


def test_save_success_prints_url(monkeypatch, capsys):
    _online(monkeypatch)
    saved = []
    monkeypatch.setattr(wr.Report, "save", lambda self, *a, **k: saved.append(self) or self)
    monkeypatch.setattr(wr.Report, "url", property(lambda self: "https://wandb.ai/me/p/r--1"))
    assert main(["--group", "g", "--entity", "me", "--project", "p"]) == 0
    assert len(saved) == 1 and saved[0].entity == "me"
    assert "https://wandb.ai/me/p/r--1" in capsys.readouterr().out
