"""Jobs killed by SIGKILL (or the OOM killer): what they leave is visible and intact. A folder
without metrics.json is listed by divrec-report as incomplete, not dropped; a kill during
training leaves only complete checkpoints under .ckpt names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from divrec.reports.cli import main as report_main
from divrec.reports.collect import collect_runs
from divrec.run.checkpoints import damaged
from tests.conftest import ROOT, TINY_OVERRIDES


def _ok_run(folder: Path, ndcg: float) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps({"test/ndcg@10": ndcg, "test/ild@10": 0.2, "meta": {"status": "ok"}})
    )


@pytest.mark.parametrize(
    "left",
    [
        (".hydra/config.yaml", "recommendations.parquet"),  # killed before metrics.json
        (".hydra/config.yaml", "checkpoints/last.ckpt"),  # killed while training
        (".hydra/config.yaml",),  # killed while loading data
    ],
    ids=["after-recommendations", "while-training", "while-loading"],
)
def test_killed_job_is_listed_as_incomplete(tmp_path, capsys, left):
    _ok_run(tmp_path / "0", 0.3)
    for name in left:
        (tmp_path / "1" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "1" / name).write_bytes(b"x")
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
    df = collect_runs(tmp_path)
    assert df["run"].tolist() == ["0", "1"]
    assert df["status"].tolist() == ["ok", "incomplete"]
    assert df.loc[1, "seed"] == 2  # knobs still come from .hydra/overrides.yaml
    assert report_main([str(tmp_path), "--x", "test/ndcg@10", "--y", "test/ild@10"]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "2 runs: 1 ok, 1 failed, unreadable or incomplete" in md
    assert "`1` (incomplete): no metrics.json" in md


def test_run_internals_are_not_runs(tmp_path):
    _ok_run(tmp_path / "0", 0.3)
    for name in ("checkpoints/last.ckpt", "split/train.parquet", ".hydra/config.yaml"):
        (tmp_path / "0" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "0" / name).write_bytes(b"x")
    _ok_run(tmp_path / "0" / "diversity=0.5", 0.25)  # a rerank_sweep sub-run
    assert collect_runs(tmp_path)["status"].tolist() == ["ok", "ok"]


@pytest.mark.slow
def test_sigkill_during_training_leaves_intact_checkpoints_and_an_incomplete_row(
    tiny_model_dir, tmp_path
):
    out = tmp_path / "runs" / "0"
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        *[o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")],
        "trainer.max_epochs=50",
        "callbacks.early_stopping.patience=100",
        f"model.encoder.pretrained={tiny_model_dir}",
        f"hydra.run.dir={out}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (out / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # somewhere inside a later epoch or checkpoint write
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    ckpts = list((out / "checkpoints").glob("*.ckpt"))
    assert ckpts, "no checkpoint was written before the kill"
    assert all(damaged(c) is None for c in ckpts), [(c.name, damaged(c)) for c in ckpts]
    df = collect_runs(tmp_path / "runs")
    assert df["status"].tolist() == ["incomplete"]
