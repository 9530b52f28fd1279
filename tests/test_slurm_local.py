"""The SLURM launcher's code path run for real: a 2-job `train.py -m` sweep through
hydra-submitit-launcher's local executor (job pickles, one process per job, results read back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_OVERRIDES

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def _hydra_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_slurm_local_selects_the_local_executor_with_the_slurm_folder_layout():
    sweep = "hydra.sweep.dir=/sweeps/a"
    local = _hydra_cfg("hydra/launcher=slurm_local", sweep).hydra.launcher
    slurm = _hydra_cfg("hydra/launcher=slurm", sweep).hydra.launcher
    assert local._target_.endswith("submitit_launcher.LocalLauncher")
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    assert local.tasks_per_node == local.nodes == 1
    for key in ("submitit_folder", "name", "stderr_to_stdout"):  # same layout as on SLURM
        assert local[key] == slurm[key], key


@pytest.mark.slow  # 30-120 s on 2 shared cores: two tiny train jobs in parallel
def test_two_job_sweep_runs_through_submitit(tiny_model_dir, shared_cache, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=slurm_local",
        *TINY_OVERRIDES,
        "trainer.limit_train_batches=2",
        "data.num_workers=0",
        f"model.encoder.pretrained={tiny_model_dir}",
        f"paths.cache_dir={shared_cache}",
        f"hydra.sweep.dir={sweep}",
        "seed=1,2",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seeds = set()
    for job in (0, 1):
        m = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert m["meta"]["status"] == "ok", m["meta"].get("error")
        assert 0.0 <= m["test/ndcg@10"] <= 1.0
        seeds |= {o for o in m["meta"]["overrides"] if o.startswith("seed=")}
    assert seeds == {"seed=1", "seed=2"}
    # submitit ran them: one folder per job (named by its job id, here the process id) with
    # its pickled result and its own log; "%j" holds the submission pickles
    jobs = [d for d in (sweep / ".submitit").iterdir() if d.name.isdigit()]
    assert len(jobs) == 2 and (sweep / ".submitit" / "%j").is_dir(), jobs
    for d in jobs:
        assert list(d.glob("*_result.pkl")) and list(d.glob("*_log.out")), sorted(d.iterdir())
