"""Samplers: the seeded training shuffle, and the DDP evaluation shard (every user once).

``EpochShuffle`` orders training rows by (seed, epoch) alone, with optional length buckets.

``EvalShardSampler``: every user exactly once across ranks, no padding.

Lightning gives val/test loaders a ``DistributedSampler`` by default, which pads the last
shard by repeating rows so that all ranks get the same count. Full-catalogue metrics are sums
over users reduced across ranks, so a repeated user would be counted twice (``n_users`` 122
instead of 121 on 2 ranks). ``EvalShardSampler`` deals rows round-robin instead: rank ``r`` of
``W`` gets rows ``r, r + W, r + 2W, ...``, so ranks differ by at most one row. That is safe
here because the eval steps run no collective operations (metric states are reduced once, at
epoch end). Lightning keeps a sampler that is already a ``DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


class EvalShardSampler(DistributedSampler):
    """Round-robin, unpadded, unshuffled shard of ``range(len(dataset))`` for one rank."""

    def __init__(
        self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=False,
            drop_last=False,
        )
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def eval_sampler(dataset: Sized) -> EvalShardSampler | None:
    """``EvalShardSampler`` when a process group of more than one rank is running, else None
    (the DataLoader's default sequential order)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return EvalShardSampler(dataset)
    return None


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A permutation of ``n`` rows that depends only on (seed, epoch).

    Lightning calls ``set_epoch`` every epoch, so a run resumed from an end-of-epoch checkpoint
    sees exactly the batches an uninterrupted run would (the global RNG is not in checkpoints).
    """

    def __init__(
        self,
        n: int,
        seed: int,
        lengths: torch.Tensor | None = None,
        batch: int = 1,
        bucket: int = 0,
    ) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.lengths, self.batch, self.bucket = lengths, batch, bucket

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (1 << 63))
        order = torch.randperm(self.n, generator=g)
        if not self.bucket or self.lengths is None:
            return iter(order.tolist())
        # Length bucketing: within chunks of `bucket` batches, sort rows by token length so each
        # batch pads to a similar length, then shuffle the batches of the chunk.
        out = []
        chunk = self.bucket * self.batch
        for start in range(0, self.n, chunk):
            part = order[start : start + chunk]
            part = part[torch.argsort(self.lengths[part], stable=True)]
            batches = list(part.split(self.batch))
            perm = torch.randperm(len(batches), generator=g).tolist()
            out.extend(batches[i] for i in perm)
        return iter(torch.cat(out).tolist())
