"""Multi-process runs: the multirun + DDP guard, the unpadded eval sampler, and a 2-process
CPU DDP evaluation compared with a 1-process one."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict, read_write
from torch.utils.data import DistributedSampler

from divrec.data.samplers import EvalShardSampler, eval_sampler
from divrec.errors import ConfigError
from divrec.launch.ddp_guard import check_ddp_multirun, is_ddp_child, relaunches_script

from .conftest import ROOT, TINY_OVERRIDES


# --------------------------------------------------------------------------- guard
@pytest.mark.parametrize(
    ("trainer", "relaunch"),
    [
        ({"accelerator": "cpu", "devices": 1}, False),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"}, True),
        ({"accelerator": "cpu", "devices": 2}, True),  # auto -> ddp for 2 devices
        ({"accelerator": "gpu", "devices": [0, 1], "strategy": "auto"}, True),
        ({"accelerator": "gpu", "devices": "0,1", "strategy": "fsdp"}, True),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}, False),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_fork"}, False),
        ({"accelerator": "gpu", "devices": [3], "strategy": "ddp"}, False),  # gpu_pool job
        ({"accelerator": "cpu", "devices": 1, "num_nodes": 2, "strategy": "ddp"}, False),
        (
            {
                "devices": 2,
                "strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy"},
            },
            True,
        ),
        (
            {
                "devices": 2,
                "strategy": {
                    "_target_": "lightning.pytorch.strategies.DDPStrategy",
                    "start_method": "spawn",
                },
            },
            False,
        ),
    ],
)
def test_relaunches_script(trainer, relaunch):
    assert relaunches_script(trainer) is relaunch


def test_guard_raises_only_for_multirun_with_ddp(compose, monkeypatch):
    for var in ("SLURM_NTASKS", "LOCAL_RANK", "RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    ddp = compose("trainer=ddp")  # strategy=ddp, devices=2 (on cpu via TINY_OVERRIDES)
    with pytest.raises(ConfigError, match="hydra/launcher=gpu_pool"):
        check_ddp_multirun(ddp, multirun=True)
    check_ddp_multirun(ddp, multirun=False)  # a single run may use ddp
    check_ddp_multirun(compose(), multirun=True)  # one device per job
    check_ddp_multirun(compose("trainer=ddp", "trainer.strategy=ddp_spawn"), multirun=True)
    monkeypatch.setenv("SLURM_NTASKS", "2")  # SLURM started one task per device
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    check_ddp_multirun(ddp, multirun=True)


def test_guard_reads_the_run_mode_from_hydra(tiny_model_dir, tmp_path, monkeypatch):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.types import RunMode

    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            "train",
            overrides=[*TINY_OVERRIDES, "trainer=ddp", f"paths.output_dir={tmp_path}"],
            return_hydra_config=True,
        )
    with read_write(cfg.hydra), open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(ConfigError, match="multirun"):
            check_ddp_multirun(cfg)
        with read_write(cfg.hydra), open_dict(cfg):
            cfg.hydra.mode = RunMode.RUN
        HydraConfig.instance().set_config(cfg)
        check_ddp_multirun(cfg)
    finally:
        HydraConfig.instance().cfg = None


def test_ddp_child_is_recognised_by_local_rank(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert not is_ddp_child()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not is_ddp_child()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert is_ddp_child()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_multirun_with_ddp_stops_before_launching(tiny_model_dir, shared_cache, tmp_path):
    """End to end: `train.py -m trainer=ddp seed=1,2` must fail with the guard's message, not
    start DDP children that re-run the sweep."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "trainer=ddp",
        *TINY_OVERRIDES,
        f"model.encoder.pretrained={tiny_model_dir}",
        f"paths.cache_dir={shared_cache}",
        f"hydra.sweep.dir={sweep}",
        "seed=1,2",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert "Initializing distributed" not in proc.stdout + proc.stderr
    if proc.returncode != 0:  # guard in run(): the sweep stops with the message
        assert "hydra/launcher=gpu_pool" in proc.stderr
    else:  # guard in train(): every job fails with the message in its metrics.json
        for job in (0, 1):
            meta = json.loads((sweep / str(job) / "metrics.json").read_text())["meta"]
            assert meta["status"] == "failed" and "hydra/launcher=gpu_pool" in meta["error"]


# --------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("n", [0, 1, 5, 121, 128])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_eval_shard_sampler_covers_every_row_once(n, world):
    shards = [list(EvalShardSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))  # every row exactly once, no padding
    sizes = [len(s) for s in shards]
    assert sizes == [len(EvalShardSampler(range(n), world, r)) for r in range(world)]
    assert max(sizes) - min(sizes) <= (1 if n else 0)


def test_torch_distributed_sampler_pads_which_is_why_eval_needs_our_sampler():
    padded = [list(DistributedSampler(range(121), num_replicas=2, rank=r)) for r in range(2)]
    assert sum(len(s) for s in padded) == 122  # user 0 would be counted twice


def test_eval_sampler_is_none_without_a_process_group():
    assert eval_sampler(range(10)) is None


# --------------------------------------------------------------------------- 2-process run
# 121 users: an odd count, so a padding sampler on 2 ranks would repeat one user.
DDP_DATA = ["data.n_users=121", "data.eval_batch_size=32", "train=false"]


def _run(name: str, extra: list[str], model: str, cache: Path, tmp: Path) -> Path:
    out = tmp / name
    cmd = [
        sys.executable,
        "train.py",
        *TINY_OVERRIDES,
        *DDP_DATA,
        f"model.encoder.pretrained={model}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={out}",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def ddp_runs(tiny_model_dir, shared_cache, tmp_path_factory):
    """The same untrained (seeded) model evaluated by 1 process and by 2 CPU DDP processes
    (gloo): weights are equal, so every test metric must be equal."""
    tmp = tmp_path_factory.mktemp("ddp")
    single = _run("single", [], tiny_model_dir, shared_cache, tmp)
    ddp = _run("ddp", ["trainer=ddp"], tiny_model_dir, shared_cache, tmp)
    return single, ddp


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_run_completes(ddp_runs):
    single, ddp = ddp_runs
    for run in (single, ddp):
        assert _metrics(run)["meta"]["status"] == "ok"
    assert _metrics(single)["test/n_users"] == 121


@pytest.mark.slow
def test_ddp_test_metrics_equal_single_process(ddp_runs):
    single, ddp = (_metrics(r) for r in ddp_runs)
    keys = sorted(k for k in single if k.startswith("test/"))
    assert keys
    for k in keys:
        assert ddp[k] == pytest.approx(single[k], abs=1e-4), k


@pytest.mark.slow
def test_ddp_recommendations_cover_every_user(ddp_runs):
    single, ddp = (pd.read_parquet(r / "recommendations.parquet") for r in ddp_runs)
    assert ddp.user_id.nunique() == single.user_id.nunique() == 121
    merged = single.merge(ddp, on=["user_id", "rank"], suffixes=("_1", "_2"))
    assert len(merged) == len(single)
    assert (merged.item_id_1 == merged.item_id_2).all()


# --------------------------------------------------------------------------- 2-process training
DDP_TRAIN = ["trainer=ddp", "trainer.max_epochs=2", "trainer.limit_train_batches=3"]


@pytest.fixture(scope="module")
def ddp_trained(tiny_model_dir, shared_cache, tmp_path_factory):
    """A model TRAINED by 2 CPU DDP processes (gloo), then its best checkpoint evaluated again
    by 1 process: (ddp run folder, 1-process evaluation folder)."""
    tmp = tmp_path_factory.mktemp("ddp-train")
    ddp = _run("ddp", ["train=true", *DDP_TRAIN], tiny_model_dir, shared_cache, tmp)
    ckpts = sorted((ddp / "checkpoints").glob("epoch*.ckpt"))
    assert len(ckpts) == 1, ckpts
    again = _run("again", [f"ckpt_path={ckpts[0]}"], tiny_model_dir, shared_cache, tmp)
    return ddp, again, ckpts[0]


@pytest.mark.slow
def test_ddp_training_steps_and_metrics_are_finite(ddp_trained):
    ddp, _, ckpt = ddp_trained
    m = _metrics(ddp)
    assert m["meta"]["status"] == "ok" and m["test/n_users"] == 121
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    # 3 batches per epoch on each rank; the best epoch is the 1st or the 2nd.
    assert state["global_step"] in (3, 6), state["global_step"]
    assert state["optimizer_states"][0]["state"], "the optimizer never stepped"
    for k in ("test/ndcg@10", "test/recall@20", "best/val/ndcg@10"):
        assert m[k] is not None and math.isfinite(m[k]), k


@pytest.mark.slow
def test_ddp_trained_weights_agree_across_ranks(ddp_trained):
    """Rank 0 saved the checkpoint, but each rank scored its own half of the users with its own
    weights: a 1-process evaluation of the checkpoint reproduces the sharded test metrics only
    if both ranks' training updated the weights identically."""
    ddp, again = _metrics(ddp_trained[0]), _metrics(ddp_trained[1])
    keys = sorted(k for k in ddp if k.startswith("test/"))
    assert keys
    for k in keys:
        assert again[k] == pytest.approx(ddp[k], abs=1e-5), k
