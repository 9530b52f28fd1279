"""Filling the frozen-embedding cache with several processes: Lightning ``predict`` across devices.

With ``model.cache.devices`` (x ``num_nodes``) = W > 1, a cache miss is filled by W ranks. Rank
``r`` encodes the contiguous slice ``[r N // W, (r + 1) N // W)`` of the N texts (slices differ
by at most one row; a rank with an empty slice still takes part), writes it as a shard
``<cache_dir>/<key>.shards-<run>/rank<r>.safetensors`` (temporary name, then rename) and waits
at a barrier. Rank 0 then checks that the W shards are this fill's (same key and run id) and
tile ``[0, N)`` in order, concatenates them into the cache's normal file ``<key>.safetensors``
(atomically, same key as a one-process fill), removes the shards and tells every rank the
outcome. Readers only ever open ``<key>.safetensors``: shards of a fill interrupted before the
merge are never read as a cache (the next fill writes a new ``.shards-<run>`` folder).

Strategies: ``ddp_spawn`` starts its own W processes from this one (one machine: CPU cores or
GPUs); ``ddp`` joins processes started by ``srun`` (one task per device) or ``torchrun``, and
the later training Trainer reuses the same process group.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import lightning.pytorch as pl
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from divrec.errors import ConfigError, DataError
from divrec.models.embed_cache import EmbeddingCache, length_batches
from divrec.models.encoder import TextEncoder
from divrec.models.fill_plan import FillPlan
from divrec.utils.io import atomic_path

log = logging.getLogger(__name__)

_SHARD_TENSOR = "embeddings"


def slice_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank``: contiguous, disjoint, covering ``[0, n)``."""
    return rank * n // world_size, (rank + 1) * n // world_size


class CacheFill(pl.LightningModule):
    """Predict-only module: each rank pools its slice of ``input_ids, attention_mask [N, L]``
    into ``[n_r, H]``; at the end the shards are merged into ``cache``'s file for ``key``."""

    def __init__(
        self,
        encoder: TextEncoder,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: EmbeddingCache,
        key: str,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.ids, self.mask = input_ids, attention_mask  # plain attributes: stay on the CPU
        self.cache, self.key, self.batch_size = cache, key, int(batch_size)
        self.run_id, self.hit = "", False

    def setup(self, stage: str) -> None:
        """One run id and one hit/miss decision for all ranks (rank 0's)."""
        mine = (uuid.uuid4().hex[:12], self.cache.path(self.key).exists())
        self.run_id, self.hit = self.trainer.strategy.broadcast(mine, src=0)

    def predict_dataloader(self) -> DataLoader:
        """This rank's length-sorted batches ``[(rows, cut)]`` (rows relative to its slice);
        one empty batch when it has nothing to encode, so every rank reaches the merge."""
        n = self.ids.shape[0]
        self.start, self.stop = slice_bounds(n, self.trainer.world_size, self.global_rank)
        self.out = torch.empty(self.stop - self.start, self.encoder.hidden_size)
        plan = (
            [] if self.hit else length_batches(self.mask[self.start : self.stop], self.batch_size)
        )
        plan = plan or [(torch.empty(0, dtype=torch.long), 1)]
        return DataLoader(plan, batch_size=None, shuffle=False)  # one planned batch per step

    def predict_step(self, batch: tuple[torch.Tensor, int], batch_idx: int) -> None:
        idx, cut = batch[0].cpu(), int(batch[1])  # Lightning moved the batch to the device
        if len(idx) == 0:
            return
        rows = idx + self.start
        ids = self.ids[rows, :cut].to(self.device)
        mask = self.mask[rows, :cut].to(self.device)
        self.out[idx] = self.encoder.pool_backbone(ids, mask).float().cpu()

    def on_predict_end(self) -> None:
        if self.hit:
            return
        world = self.trainer.world_size
        folder = shard_folder(self.cache, self.key, self.run_id)
        write_shard(folder, self.key, self.run_id, self.global_rank, world, self.start, self.out)
        self.trainer.strategy.barrier("cache-shards-written")
        error = None
        if self.global_rank == 0:
            try:
                merge_shards(self.cache, self.key, self.run_id, world, self.ids.shape[0])
            except (DataError, OSError) as e:
                error = str(e)
        error = self.trainer.strategy.broadcast(error, src=0)
        if error is not None:
            raise DataError(error)


def shard_folder(cache: EmbeddingCache, key: str, run_id: str) -> Path:
    """Folder of one fill's shards, next to the cache file of ``key``."""
    return cache.path(key).with_name(f"{key}.shards-{run_id}")


def write_shard(
    folder: Path, key: str, run_id: str, rank: int, world: int, start: int, vectors: torch.Tensor
) -> Path:
    """Save rank ``rank``'s rows ``[start, start + len(vectors))`` atomically; returns the path."""
    path = folder / f"rank{rank:05d}.safetensors"
    meta = {"key": key, "run": run_id, "rank": str(rank), "world": str(world)}
    meta.update(start=str(start), stop=str(start + len(vectors)))
    with atomic_path(path) as tmp:
        save_file({_SHARD_TENSOR: vectors.contiguous()}, str(tmp), metadata=meta)
    return path


def merge_shards(cache: EmbeddingCache, key: str, run_id: str, world: int, n: int) -> torch.Tensor:
    """Concatenate the ``world`` shards of fill ``run_id`` into ``cache``'s file for ``key``.

    Raises DataError (and writes nothing) unless every shard is present, readable, of this key
    and run, and together they tile rows ``[0, n)`` in rank order. The shards are then removed.
    """
    folder = shard_folder(cache, key, run_id)
    parts, expected = [], 0
    for rank in range(world):
        path = folder / f"rank{rank:05d}.safetensors"
        try:
            with safe_open(str(path), framework="pt") as f:
                meta, tensor = f.metadata() or {}, f.get_tensor(_SHARD_TENSOR)
        except (SafetensorError, OSError) as e:
            raise DataError(
                f"cache shard {path} missing or unreadable ({e}); no cache written"
            ) from None
        ok = (
            meta.get("key") == key and meta.get("run") == run_id and meta.get("world") == str(world)
        )
        if (
            not ok
            or meta.get("start") != str(expected)
            or int(meta["stop"]) - expected != len(tensor)
        ):
            raise DataError(f"cache shard {path} is not rows [{expected}, ...) of fill {run_id}")
        parts.append(tensor)
        expected += len(tensor)
    if expected != n:
        raise DataError(f"cache shards in {folder} hold {expected} rows, expected {n}")
    merged = cache.save(key, torch.cat(parts))
    shutil.rmtree(folder, ignore_errors=True)
    return merged


def check_can_spawn(plan: FillPlan) -> None:
    """``strategy=ddp`` needs processes started by srun/torchrun: Lightning would otherwise
    re-run the whole script (``sys.argv``) in each extra process."""
    from divrec.launch.ddp_guard import processes_created_externally

    if plan.strategy == "ddp" and not processes_created_externally():
        raise ConfigError(
            f"model.cache.strategy=ddp with model.cache.devices={plan.devices} needs processes "
            "started by srun or torchrun; on one machine use model.cache.strategy=ddp_spawn"
        )


def fill_pooled(
    cache: EmbeddingCache,
    key: str,
    encoder: TextEncoder,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    plan: FillPlan,
    batch_size: int = 256,
    bf16: bool = False,
) -> tuple[torch.Tensor, bool]:
    """Fill ``key`` with the pooled vectors ``[N, H]`` of ``encoder`` over ``plan.world_size``
    ranks (Lightning predict): ``(vectors, hit)``, read back from the merged cache file. Every
    rank calls this; rank 0 decides whether the file is already there (then nothing runs)."""
    check_can_spawn(plan)
    trainer = pl.Trainer(
        accelerator=plan.accelerator,
        devices=plan.devices,
        num_nodes=plan.num_nodes,
        strategy=plan.strategy,
        precision="bf16-mixed" if bf16 else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    log.info("filling %s with %d processes (%s)", key, plan.world_size, plan.strategy)
    module = CacheFill(encoder, input_ids, attention_mask, cache, key, batch_size)
    trainer.predict(module, return_predictions=False)
    tensor = cache.load(key)
    if tensor is None:
        raise DataError(f"the sharded fill of {cache.path(key)} wrote no readable cache file")
    return tensor, module.hit
