"""A run folder holds one run: a finished run is never overwritten by another attempt (typo,
resume, plain re-run), stale checkpoints of an earlier attempt are removed when a run trains
afresh, and the flag that allows a replacement is named in the one-line refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from divrec.run.folder import KeepFinishedRuns, prepare_run_folder
from divrec.run.train import run
from tests.conftest import ROOT, TINY_OVERRIDES
from tests.faults.conftest import one_line


def _finished_run(folder: Path) -> dict[str, bytes]:
    """A folder as a finished run leaves it; returns its files' bytes."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    files = {
        "metrics.json": json.dumps({"test/ndcg@10": 0.3, "meta": {"status": "ok"}}).encode(),
        ".hydra/config.yaml": b"seed: 1  # the finished run's config\n",
        "recommendations.parquet": b"PAR1 results",
        "checkpoints/epoch002.ckpt": b"best weights",
        "checkpoints/last.ckpt": b"last weights",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _unchanged(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, f"{name} of the finished run changed"


@pytest.mark.parametrize(
    "overrides",
    [("optim.lr=-1",), ("ckpt_path=last", "optim.lr=-1"), ("ckpt_path=last",), ()],
    ids=["typo", "resume-with-typo", "resume", "plain-rerun"],
)
def test_finished_run_is_refused_and_kept(compose, tmp_path, monkeypatch, overrides):
    monkeypatch.delenv("DIVREC_TRACEBACK", raising=False)
    out = tmp_path / "run"
    files = _finished_run(out)
    with pytest.raises(SystemExit) as info:
        run(compose(*overrides))
    one_line(info.value.code, "finished run", "overwrite=true")
    _unchanged(out, files)


def test_overwrite_true_lets_a_new_attempt_in(compose, tmp_path, monkeypatch):
    monkeypatch.delenv("DIVREC_TRACEBACK", raising=False)
    _finished_run(tmp_path / "run")
    with pytest.raises(SystemExit) as info:  # past the guard: the typo itself is reported
        run(compose("overwrite=true", "optim.lr=-1"))
    one_line(info.value.code, "optim.lr")


def test_failed_attempt_is_not_protected(compose, tmp_path, monkeypatch):
    monkeypatch.delenv("DIVREC_TRACEBACK", raising=False)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"meta": {"status": "failed"}}))
    with pytest.raises(SystemExit) as info:
        run(compose("optim.lr=-1"))
    one_line(info.value.code, "optim.lr")


def test_hydra_callback_refuses_before_hydra_writes_hydra_dir(tmp_path):
    from omegaconf import OmegaConf

    files = _finished_run(tmp_path / "run")
    cfg = OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "run")}}, "overwrite": False})
    with pytest.raises(SystemExit) as info:
        KeepFinishedRuns().on_run_start(cfg)
    one_line(info.value.code, "overwrite=true")
    _unchanged(tmp_path / "run", files)
    cfg.overwrite = True
    KeepFinishedRuns().on_run_start(cfg)  # allowed


def test_hydra_callback_refuses_a_sweep_folder_with_finished_jobs(tmp_path):
    from omegaconf import OmegaConf

    files = _finished_run(tmp_path / "sweep" / "1")
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    with pytest.raises(SystemExit) as info:
        KeepFinishedRuns().on_multirun_start(cfg)
    one_line(info.value.code, "sweep/1 holds a finished run")
    _unchanged(tmp_path / "sweep" / "1", files)
    KeepFinishedRuns().on_multirun_start(  # a fresh sweep folder: nothing to refuse
        OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "new")}}})
    )


@pytest.mark.slow
def test_cli_rerun_keeps_hydra_config_and_metrics(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    files = _finished_run(out)
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        *TINY_OVERRIDES,
        f"model.encoder.pretrained={tiny_model_dir}",
        f"hydra.run.dir={out}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "ckpt_path=last",
        "optim.lr=-1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    one_line(last, "finished run", "overwrite=true")
    assert "Traceback" not in proc.stderr
    _unchanged(out, files)


# ------------------------------------------------------------------ one run's checkpoints
@pytest.mark.parametrize(
    "overrides,kept",
    [((), False), (("ckpt_path=last",), True), (("train=false",), True)],
    ids=["fresh-run", "resume", "evaluate-only"],
)
def test_stale_checkpoints_go_only_when_training_afresh(compose, tmp_path, overrides, kept):
    out = tmp_path / "run"
    ck = out / "checkpoints"
    ck.mkdir(parents=True)
    for name in ("epoch002.ckpt", "last.ckpt", ".last.ckpt.123.partial"):
        (ck / name).write_bytes(b"stale")
    prepare_run_folder(compose(*overrides), out)
    assert bool(list(ck.iterdir())) == kept


@pytest.mark.slow
def test_rerun_without_resume_leaves_only_this_runs_checkpoints(compose, tmp_path):
    from divrec.run.train import train

    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    for name in ("epoch002.ckpt", "last.ckpt"):
        (ck / name).write_bytes(b"stale weights of another model")
    train(compose())
    assert sorted(p.name for p in ck.iterdir()) == ["epoch000.ckpt", "last.ckpt"]
    assert all(p.read_bytes() != b"stale weights of another model" for p in ck.iterdir())
