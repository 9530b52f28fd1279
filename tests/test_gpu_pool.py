"""GPU claims by lock file, the ``gpu_pool`` Hydra launcher, and the SLURM launcher config.

No GPU is needed: ``DIVREC_FAKE_GPUS`` makes the claim logic and the launcher believe there
are N GPUs (the jobs here never touch CUDA); the real sweep through ``train.py`` runs on CPU.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from divrec.errors import ConfigError
from divrec.launch.gpu_claim import claim_gpu, gpu_count

from .conftest import ROOT, TINY_OVERRIDES

HOLD_S = 0.4


# --------------------------------------------------------------------------- claims
def _claimer(lock_dir: str, record: str, barrier) -> None:
    """Child process: claim a GPU, record [start, end] of the hold, release."""
    barrier.wait()
    with claim_gpu(gpu_count(), lock_dir, timeout=30, poll=0.02) as claim:
        start = time.time()
        time.sleep(HOLD_S)
        end = time.time()
        Path(record).write_text(json.dumps({"gpu": claim.index, "start": start, "end": end}))


def _assert_disjoint_per_gpu(records: list[dict]) -> dict[int, list[dict]]:
    by_gpu: dict[int, list[dict]] = {}
    for r in records:
        by_gpu.setdefault(r["gpu"], []).append(r)
    for gpu, rs in by_gpu.items():
        rs.sort(key=lambda r: r["start"])
        for a, b in zip(rs, rs[1:], strict=False):
            assert a["end"] <= b["start"], f"two holders of GPU {gpu} at once: {a} {b}"
    return by_gpu


def test_four_claimers_on_two_gpus_never_share(tmp_path, monkeypatch):
    monkeypatch.setenv("DIVREC_FAKE_GPUS", "2")
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(4)
    files = [tmp_path / f"rec{i}.json" for i in range(4)]
    procs = [
        ctx.Process(target=_claimer, args=(str(tmp_path / "locks"), str(f), barrier)) for f in files
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    records = [json.loads(f.read_text()) for f in files]
    by_gpu = _assert_disjoint_per_gpu(records)
    assert set(by_gpu) == {0, 1}  # both GPUs used, nothing outside 0..1


def test_claimer_waits_while_all_gpus_are_busy(tmp_path):
    lock_dir = str(tmp_path / "locks")
    first, second = claim_gpu(2, lock_dir), claim_gpu(2, lock_dir)
    assert {first.index, second.index} == {0, 1}
    with pytest.raises(TimeoutError, match="no free GPU among 2"):
        claim_gpu(2, lock_dir, timeout=0.2, poll=0.05)

    released_at: list[float] = []

    def release_later() -> None:
        time.sleep(0.3)
        released_at.append(time.time())
        second.release()

    t = threading.Thread(target=release_later)
    t.start()
    with claim_gpu(2, lock_dir, timeout=10, poll=0.02) as third:
        got = time.time()
    t.join()
    assert third.index == second.index  # the GPU that was freed, not the one still held
    assert got >= released_at[0]
    assert not third.held and first.held
    first.release()


def _claim_and_die(lock_dir: str) -> None:
    claim_gpu(1, lock_dir)
    os._exit(0)  # no release, no finaliser: only the kernel can drop the lock


def test_claim_dies_with_its_process(tmp_path):
    lock_dir = str(tmp_path / "locks")
    p = mp.get_context("fork").Process(target=_claim_and_die, args=(lock_dir,))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    with claim_gpu(1, lock_dir, timeout=0) as claim:
        assert claim.index == 0


def test_gpu_count_and_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("DIVREC_FAKE_GPUS", "3")
    assert gpu_count() == 3
    monkeypatch.setenv("DIVREC_FAKE_GPUS", "two")
    with pytest.raises(ConfigError, match="DIVREC_FAKE_GPUS"):
        gpu_count()
    with pytest.raises(ConfigError, match="n_devices=0"):
        claim_gpu(0, str(tmp_path))


# --------------------------------------------------------------------------- launcher
def test_launcher_defaults_and_validation():
    from hydra_plugins.divrec_launchers.gpu_pool import (
        GpuPoolLauncher,
        cpu_cores,
        default_n_jobs,
        device_overrides,
    )

    assert default_n_jobs(3) == 3
    assert default_n_jobs(0) == min(2, cpu_cores())
    assert device_overrides(None) == ["trainer.accelerator=cpu"]
    assert device_overrides(1) == ["trainer.accelerator=gpu", "trainer.devices=[1]"]
    with pytest.raises(ConfigError, match="hydra.launcher.backend"):
        GpuPoolLauncher(backend="threading")
    with pytest.raises(ConfigError, match="hydra.launcher.n_jobs"):
        GpuPoolLauncher(n_jobs=0)


APP = """
import json, os, time
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    import torch
    start = time.time()
    # rendezvous: jobs 1 and 2 wait for each other; a serial launcher would never meet
    meet = Path(cfg.meet_dir)
    (meet / str(cfg.x)).touch()
    met = True
    if cfg.x in (1, 2):
        while not ((meet / "1").exists() and (meet / "2").exists()):
            if time.time() - start > 60:
                met = False
                break
            time.sleep(0.05)
    time.sleep(float(cfg.hold))
    rec = {"x": cfg.x, "trainer": OmegaConf.to_container(cfg.trainer), "start": start,
           "end": time.time(), "threads": torch.get_num_threads(), "met": met}
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "rec.json"), "w") as f:
        json.dump(rec, f)
    return float(cfg.x)

if __name__ == "__main__":
    main()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    # the plugin is found in the source tree until the package is reinstalled with it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_gpu_pool_gives_each_job_its_own_gpu(tmp_path):
    """4 jobs, 2 fake GPUs: each job sees trainer.devices=[i] (also in overrides.yaml), the
    first two run at once (they wait for each other), and jobs on one GPU never overlap."""
    (tmp_path / "conf").mkdir()
    meet = tmp_path / "meet"
    meet.mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(
        f"trainer:\n  accelerator: auto\n  devices: 1\nx: 0\nhold: 0.4\nmeet_dir: {meet}\n"
    )
    (tmp_path / "app.py").write_text(APP)
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "app.py",
        "-m",
        "hydra/launcher=gpu_pool_base",
        f"hydra.launcher.lock_dir={tmp_path / 'locks'}",
        f"hydra.sweep.dir={sweep}",
        "x=1,2,3,4",
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=_env(DIVREC_FAKE_GPUS="2"), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = []
    for job in range(4):
        rec = json.loads((sweep / str(job) / "rec.json").read_text())
        overrides = yaml.safe_load((sweep / str(job) / ".hydra" / "overrides.yaml").read_text())
        gpu = rec["trainer"]["devices"][0]
        assert rec["trainer"] == {"accelerator": "gpu", "devices": [gpu]}
        assert overrides[-2:] == ["trainer.accelerator=gpu", f"trainer.devices=[{gpu}]"]
        assert rec["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        records.append({"gpu": gpu, "start": rec["start"], "end": rec["end"]})
    by_gpu = _assert_disjoint_per_gpu(records)
    assert set(by_gpu) == {0, 1} and all(len(v) == 2 for v in by_gpu.values())
    assert all(json.loads((sweep / str(j) / "rec.json").read_text())["met"] for j in (0, 1))


@pytest.mark.slow  # about 20 s alone on 2 cores, 40 s under load
def test_gpu_pool_sweep_of_train_on_cpu(tiny_model_dir, shared_cache, tmp_path):
    """`train.py -m hydra/launcher=gpu_pool` without a GPU: 2 jobs run in parallel on the CPU
    (one with a DataLoader worker inside the loky worker), both write metrics.json."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=gpu_pool",
        *TINY_OVERRIDES,
        f"model.encoder.pretrained={tiny_model_dir}",
        f"paths.cache_dir={shared_cache}",
        f"hydra.sweep.dir={sweep}",
        "data.num_workers=0,1",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_env(DIVREC_FAKE_GPUS="0"), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    spans, metrics = [], []
    for job in range(2):
        folder = sweep / str(job)
        m = json.loads((folder / "metrics.json").read_text())
        assert m["meta"]["status"] == "ok", m["meta"]["error"]
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        assert overrides[-1] == "trainer.accelerator=cpu"
        # job start: Hydra writes .hydra/ before calling the task; end: metrics.json written
        spans.append(
            (
                (folder / ".hydra" / "config.yaml").stat().st_mtime,
                (folder / "metrics.json").stat().st_mtime,
            )
        )
        metrics.append(m)
    (s0, e0), (s1, e1) = spans
    assert max(s0, s1) < min(e0, e1), f"jobs did not run in parallel: {spans}"
    # same seed and data: the DataLoader worker must not change the result
    assert metrics[1]["test/ndcg@10"] == pytest.approx(metrics[0]["test/ndcg@10"], abs=1e-6)


# --------------------------------------------------------------------------- launcher configs
def _hydra_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_gpu_pool_yaml_selects_the_plugin():
    launcher = _hydra_cfg("hydra/launcher=gpu_pool").hydra.launcher
    assert launcher._target_ == "hydra_plugins.divrec_launchers.gpu_pool.GpuPoolLauncher"
    assert launcher.n_jobs is None and launcher.backend == "loky"


def test_slurm_launcher_follows_trainer_devices_and_nodes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = _hydra_cfg("hydra/launcher=slurm", "trainer.devices=4", "++trainer.num_nodes=2")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == 4 and launcher.gpus_per_node == 4
    assert launcher.nodes == 2
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0
    assert launcher.additional_parameters == {"requeue": True}
