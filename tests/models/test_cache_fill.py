"""Sharded fill of the frozen-embedding cache: slices, shard merging, crash safety, and two
gloo processes (Lightning predict, ``ddp_spawn`` and torchrun) against one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from divrec.errors import ConfigError, DataError
from divrec.models.cache_fill import (
    check_can_spawn,
    merge_shards,
    shard_folder,
    slice_bounds,
    write_shard,
)
from divrec.models.embed_cache import (
    EmbeddingCache,
    cached_pooled_embeddings,
    encode_in_batches,
    pooled_key,
)
from divrec.models.encoder import TextEncoder
from divrec.models.fill_plan import FillPlan, fill_plan
from tests.models.test_embed_cache import TEXTS

ROOT = Path(__file__).resolve().parents[2]
# TEXTS: 7 texts, an odd count, so 2 ranks get 3 and 4 rows


@pytest.mark.parametrize("n", range(0, 12))
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_slices_tile_the_rows_in_order(n, world):
    bounds = [slice_bounds(n, world, r) for r in range(world)]
    rows = [i for a, b in bounds for i in range(a, b)]
    assert rows == list(range(n))  # disjoint, contiguous, in rank order, nothing padded
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    "cfg, word",
    [
        ({"devices": 0}, "model.cache.devices"),
        ({"devices": True}, "model.cache.devices"),
        ({"num_nodes": "2"}, "model.cache.num_nodes"),
        ({"strategy": "fsdp"}, "model.cache.strategy"),
        ({"accelerator": "tpu"}, "model.cache.accelerator"),
        ({"strategy": "ddp_spawn", "num_nodes": 2}, "srun or torchrun"),
    ],
)
def test_bad_plan_is_one_clear_error(cfg, word):
    with pytest.raises(ConfigError, match=word):
        fill_plan(cfg)


def test_default_plan_is_the_one_process_fill():
    assert fill_plan({"batch_size": 64, "bf16": "auto"}) == FillPlan()
    assert not fill_plan(None).sharded
    assert fill_plan({"devices": 2, "num_nodes": 3, "strategy": "ddp"}).world_size == 6


def test_ddp_without_srun_or_torchrun_is_refused(monkeypatch):
    for var in ("SLURM_NTASKS", "RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="strategy=ddp_spawn"):
        check_can_spawn(FillPlan(devices=2, strategy="ddp"))
    check_can_spawn(FillPlan(devices=2, strategy="ddp_spawn"))


def _write_all(cache, key, run, parts):
    start = 0
    for rank, part in enumerate(parts):
        write_shard(shard_folder(cache, key, run), key, run, rank, len(parts), start, part)
        start += len(part)


def test_merge_concatenates_uneven_shards_in_rank_order(tmp_path):
    cache = EmbeddingCache(tmp_path)
    full = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3)
    parts = [full[0:2], full[2:4], full[4:7]]  # slice_bounds(7, 3, r)
    assert [slice_bounds(7, 3, r) for r in range(3)] == [(0, 2), (2, 4), (4, 7)]
    _write_all(cache, "items-k", "run1", parts)
    merge_shards(cache, "items-k", "run1", world=3, n=7)
    assert torch.equal(cache.load("items-k"), full)
    assert not shard_folder(cache, "items-k", "run1").exists()  # shards removed after the merge


def test_empty_slice_merges(tmp_path):
    cache = EmbeddingCache(tmp_path)
    _write_all(cache, "items-k", "r", [torch.ones(1, 3), torch.empty(0, 3)])
    merge_shards(cache, "items-k", "r", world=2, n=1)
    assert torch.equal(cache.load("items-k"), torch.ones(1, 3))


def test_missing_shard_writes_no_cache_and_the_next_read_recomputes(tmp_path):
    cache = EmbeddingCache(tmp_path)
    folder = shard_folder(cache, "items-k", "r")
    write_shard(folder, "items-k", "r", 0, 2, 0, torch.zeros(3, 2))  # rank 0 of 2; rank 1 died
    (folder / ".rank00001.safetensors.abc.tmp").write_bytes(b"half written")  # interrupted
    with pytest.raises(DataError, match="rank00001.*missing or unreadable"):
        merge_shards(cache, "items-k", "r", world=2, n=6)
    assert not cache.path("items-k").exists() and cache.load("items-k") is None
    value, hit = cache.get_or_compute("items-k", lambda: torch.full((6, 2), 5.0))
    assert not hit and torch.equal(value, torch.full((6, 2), 5.0))


def test_shards_of_another_fill_or_wrong_rows_are_refused(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = "items-k"
    write_shard(shard_folder(cache, key, "new"), key, "new", 0, 2, 0, torch.zeros(2, 2))
    write_shard(shard_folder(cache, key, "new"), key, "old", 1, 2, 2, torch.zeros(2, 2))
    with pytest.raises(DataError, match="rank00001.*not rows \\[2"):
        merge_shards(cache, key, "new", world=2, n=4)
    write_shard(shard_folder(cache, key, "new"), key, "new", 1, 2, 3, torch.zeros(1, 2))  # gap
    with pytest.raises(DataError, match="not rows \\[2"):
        merge_shards(cache, key, "new", world=2, n=4)
    write_shard(shard_folder(cache, key, "new"), key, "new", 1, 2, 2, torch.zeros(1, 2))
    with pytest.raises(DataError, match="hold 3 rows, expected 4"):
        merge_shards(cache, key, "new", world=2, n=4)
    assert cache.load(key) is None


def _reference(tiny_model_dir, tok):
    """One-process pooled vectors [7, H] (today's fill) and the tokens."""
    b = tok(TEXTS, padding=True, return_tensors="pt")
    ids, mask = b["input_ids"], b["attention_mask"]
    enc = TextEncoder(tiny_model_dir, pooling="mean", finetune="frozen")
    ref = encode_in_batches(enc, ids, mask, batch_size=7, device="cpu", pooled_only=True)
    return enc, ids, mask, ref


@pytest.mark.slow
def test_two_gloo_processes_fill_the_same_vectors_as_one(tiny_model_dir, tok, tmp_path):
    enc, ids, mask, ref = _reference(tiny_model_dir, tok)
    cache = EmbeddingCache(tmp_path / "emb")
    plan = FillPlan(devices=2, strategy="ddp_spawn", accelerator="cpu")
    pooled, hit = cached_pooled_embeddings(cache, enc, ids, mask, batch_size=2, plan=plan)
    assert not hit and pooled.shape == ref.shape
    torch.testing.assert_close(pooled, ref, atol=1e-6, rtol=0)
    key = pooled_key("items", enc.weights_fingerprint(), "mean", ids, mask, bf16=False)
    assert cache.path(key).exists()  # the one-process file name: later reads are as today
    assert sorted(p.name for p in cache.cache_dir.iterdir()) == [cache.path(key).name]
    again, hit = cached_pooled_embeddings(cache, enc, ids, mask)  # one process, no plan
    assert hit and torch.equal(again, pooled)


TORCHRUN_SCRIPT = """
import sys, torch
from divrec.models.cache_fill import fill_pooled
from divrec.models.fill_plan import FillPlan
from divrec.models.embed_cache import EmbeddingCache
from divrec.models.encoder import TextEncoder
d = torch.load(sys.argv[1])
enc = TextEncoder(sys.argv[2], pooling="mean", finetune="frozen")
plan = FillPlan(devices=2, strategy="ddp", accelerator="cpu")
cache, rank = EmbeddingCache(sys.argv[3]), None
out, hit = fill_pooled(cache, "items-t", enc, d["ids"], d["mask"], plan, 2)
one, hit1 = fill_pooled(cache, "items-1", enc, d["ids"][:1], d["mask"][:1], plan, 2)
rank = torch.distributed.get_rank()
torch.save({"out": out, "hit": hit, "one": one, "hit1": hit1}, sys.argv[3] + f"/out{rank}.pt")
torch.distributed.barrier()
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_processes_fill_the_same_vectors_as_one(tiny_model_dir, tok, tmp_path):
    """``strategy=ddp`` in processes started by torchrun (as srun starts them): every rank
    gets the one merged file; 3 texts over 2 ranks, and 1 (rank 1 encodes nothing); a second
    launch is a hit on all ranks."""
    enc, ids, mask, ref = _reference(tiny_model_dir, tok)
    ids, mask, ref = ids[:3], mask[:3], ref[:3]
    torch.save({"ids": ids, "mask": mask}, tmp_path / "tokens.pt")
    script = tmp_path / "fill.py"
    script.write_text(TORCHRUN_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(script), str(tmp_path / "tokens.pt"), tiny_model_dir]
    cache_dir = tmp_path / "emb"
    cache_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for launch in range(2):
        proc = subprocess.run(
            [*cmd, str(cache_dir)], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        for rank in range(2):
            got = torch.load(cache_dir / f"out{rank}.pt")
            torch.testing.assert_close(got["out"], ref, atol=1e-6, rtol=0)
            torch.testing.assert_close(got["one"], ref[:1], atol=1e-6, rtol=0)  # rank 1: empty
            assert got["hit"] is got["hit1"] is (launch == 1)
    assert not list(cache_dir.glob("*.shards-*"))
