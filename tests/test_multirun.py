"""Real `python train.py` multiruns (subprocess) on the tiny model: the retraining diversity
experiments, and a sweep that survives one failing job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from divrec.reports.cli import main as report_main
from tests.conftest import ROOT, TINY_OVERRIDES


def _train(tiny_model_dir: str, cache: Path, sweep: Path, *overrides: str) -> None:
    flags = [o for o in overrides if o.startswith("-")]  # argparse: flags before overrides
    cmd = [
        sys.executable,
        "train.py",
        *flags,
        *TINY_OVERRIDES,
        "trainer.limit_train_batches=2",
        f"model.encoder.pretrained={tiny_model_dir}",
        f"paths.cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
        *(o for o in overrides if not o.startswith("-")),
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]


def _runs(sweep: Path) -> dict[str, dict]:
    return {
        p.parent.relative_to(sweep).as_posix(): json.loads(p.read_text())
        for p in sweep.rglob("metrics.json")
    }


def test_diversity_weight_retrains_per_lambda(tiny_model_dir, shared_cache, tmp_path):
    # A command-line value list replaces the experiment's sweep dimension (fewer jobs).
    _train(
        tiny_model_dir,
        shared_cache,
        tmp_path,
        "+experiment=diversity_weight",
        "loss.diversity_weight=0,0.5",
    )
    runs = _runs(tmp_path)
    assert sorted(runs) == ["0", "1"]
    lambdas = sorted(
        float(o.split("=")[1])
        for m in runs.values()
        for o in m["meta"]["overrides"]
        if o.startswith("loss.diversity_weight=")
    )
    assert lambdas == [0.0, 0.5]
    assert all(m["meta"]["status"] == "ok" for m in runs.values())


def test_diversity_grid_trains_per_lambda_and_reranks_per_value(
    tiny_model_dir, shared_cache, tmp_path
):
    _train(
        tiny_model_dir,
        shared_cache,
        tmp_path,
        "+experiment=diversity_grid",
        "loss.diversity_weight=0,0.5",
        "rerank_sweep.values=[0.0,0.6]",
    )
    runs = _runs(tmp_path)
    assert sorted(runs) == [
        "0/diversity=0.0",
        "0/diversity=0.6",
        "1/diversity=0.0",
        "1/diversity=0.6",
    ]
    assert len(list(tmp_path.glob("*/checkpoints/last.ckpt"))) == 2  # one training per lambda
    # Each re-ranked sub-run keeps its job's swept lambda next to its own diversity knob.
    knobs = runs["1/diversity=0.6"]["meta"]["knobs"]
    assert knobs["loss.diversity_weight"] == 0.5 and knobs["rerank.diversity"] == 0.6
    assert report_main([str(tmp_path)]) == 0


def test_one_failing_job_does_not_take_the_sweep_down(tiny_model_dir, shared_cache, tmp_path):
    # Job 1 asks for a negative lambda: validation fails it; job 0 must still finish.
    _train(tiny_model_dir, shared_cache, tmp_path, "-m", "loss.diversity_weight=0.1,-1")
    runs = _runs(tmp_path)
    assert runs["0"]["meta"]["status"] == "ok" and runs["0"]["test/ndcg@10"] is not None
    assert runs["1"]["meta"]["status"] == "failed"
    assert "loss.diversity_weight" in runs["1"]["meta"]["error"]
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    failed = report.split("## Failed runs", 1)[1]
    assert "| 1 " in failed or "`1`" in failed or "\n- 1" in failed, failed


def test_pareto_search_returns_two_objectives_and_reports(tiny_model_dir, shared_cache, tmp_path):
    _train(
        tiny_model_dir,
        shared_cache,
        tmp_path,
        "+hparams_search=pareto",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.population_size=2",
    )
    runs = _runs(tmp_path)
    assert len([r for r in runs if "/" not in r]) == 3
    for m in runs.values():
        assert m["meta"]["status"] == "ok"
        assert m["val/ndcg@10"] is not None and m["val/ild_cat@10"] is not None
    # Optuna's own record of the study and divrec's report of the Pareto set
    assert (tmp_path / "optimization_results.yaml").exists()
    report = (tmp_path / "report" / "report.md").read_text()
    assert "val/ndcg@10" in report and "✓" in report
