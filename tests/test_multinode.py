"""`train.py` on two simulated nodes: two `torchrun --nnodes=2` launchers on localhost start one
task each, as `srun` does, with the README's multi-node settings (`trainer.num_nodes=2`, the
frozen cache filled by both tasks with `model.cache.strategy=ddp`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_OVERRIDES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # 70-120 s on 2 shared cores
def test_two_node_run_trains_and_fills_the_cache_across_nodes(tiny_model_dir, tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    port = _free_port()
    overrides = [
        *TINY_OVERRIDES,
        f"model.encoder.pretrained={tiny_model_dir}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={run}",  # one folder for every task (not one per start second)
        "trainer=ddp",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        "model.cache.strategy=ddp",
        "model.cache.devices=1",
        "model.cache.num_nodes=2",
        "model.cache.accelerator=cpu",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
            + [f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}"]
            + ["train.py", *overrides],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
        assert "with 2 processes (ddp)" in log  # every task took part in the cache fill
    m = json.loads((run / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok" and 0.0 <= m["test/ndcg@10"] <= 1.0
    names = sorted(p.name.split("-")[0] for p in (cache / "embeddings").iterdir())
    assert names == ["items", "users", "users"]  # items, users, users-train; no shard folders
