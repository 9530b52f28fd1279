"""Evaluation sampler for multi-process (DDP) runs: every user exactly once, no padding.

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
