"""``ScoreCache``: the scores of evaluation batches, kept while the weights stay the same.

A ``rerank_sweep`` evaluates one trained model under many re-ranker settings; with the cache
the catalogue is scored once and every further point only re-ranks. The owner calls
:meth:`invalidate` whenever the weights (or the data) change: every training step, every
state-dict load, every new data attach. :meth:`begin` then tells the next evaluation pass to
rebuild its per-pass state (e.g. the encoded catalogue).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from torch import Tensor


class ScoreCache:
    """Scores ``[B, N]`` per evaluation batch key, up to ``max_bytes`` in all (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.entries: dict[Hashable, tuple[Tensor, Tensor]] = {}
        self.used = 0
        self.stale = True  # nothing scored with the current weights yet

    def invalidate(self) -> None:
        """The weights changed: drop every entry."""
        if self.entries:
            self.entries.clear()
            self.used = 0
        self.stale = True

    def begin(self) -> bool:
        """Start an evaluation pass; True when the weights changed since the last one."""
        stale, self.stale = self.stale, False
        return stale

    def scores(self, key: Hashable, users: Tensor, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()`` as float ``[B, N]``, or the stored result for the same ``key`` and
        ``users`` [B] under the same weights. Stored copies live on the CPU."""
        hit = self.entries.get(key)
        if hit is not None and hit[0].shape == users.shape and bool((hit[0] == users.cpu()).all()):
            return hit[1].to(users.device)
        scores = compute().float()
        size = scores.numel() * scores.element_size()
        if self.used + size <= self.max_bytes:
            self.entries[key] = (users.cpu(), scores.cpu())
            self.used += size
        return scores
