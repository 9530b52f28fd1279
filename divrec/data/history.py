"""``History``: each user's training items in time order, for history towers and masks."""

from __future__ import annotations

import torch


class History:
    """Training histories, most recent item last.

    ``indptr``: [U + 1] and ``indices``: [nnz] (CSR); ``recent``: [U, H] the ``max_len`` most
    recent items per user, right-aligned and left-padded, with ``recent_mask``: [U, H].
    """

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor, max_len: int) -> None:
        self.indptr, self.indices = indptr, indices
        lengths = indptr.diff()
        h = max(1, min(max_len, int(lengths.max()) if len(lengths) else 1))
        pos = torch.arange(h) - h  # -h .. -1: offsets from each user's end
        src = indptr[1:, None] + pos[None, :]  # [U, H]
        self.recent_mask = src >= indptr[:-1, None]
        self.recent = torch.where(self.recent_mask, indices[src.clamp_min(0)], 0)

    def batch(
        self, users: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(idx [B, H], mask [B, H] bool) for ``users`` [B].

        ``exclude`` ([B] item indices) masks a training target out of its own history, so the
        history tower cannot just copy the positive item.
        """
        idx, mask = self.recent[users], self.recent_mask[users]
        if exclude is not None:
            mask = mask & (idx != exclude[:, None])
        return idx, mask
