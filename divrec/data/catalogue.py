"""The item catalogue every later stage shares: dense indices, texts, categories, popularity.

Contract (ARCHITECTURE.md): item index 0..N-1 maps to original ids both ways; categories as an
[N, C] 0/1 matrix; popularity [N] counted from *training* interactions only; images [N] as
path/URL strings ("" for none), read only by models that use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch


@dataclass
class Catalogue:
    """Items with dense indices.

    ``category_matrix``: [N, C] float 0/1; ``popularity``: [N] float training counts.
    """

    item_ids: list[str]
    titles: list[str]
    texts: list[str]
    category_names: list[str]
    category_matrix: torch.Tensor
    popularity: torch.Tensor
    index: dict[str, int] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)  # [N] image path/URL, "" for none

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {iid: i for i, iid in enumerate(self.item_ids)}
        if not self.images:
            self.images = [""] * len(self.item_ids)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    def categories_of(self, idx: int) -> list[str]:
        """Category names of item ``idx``."""
        row = self.category_matrix[idx].nonzero().flatten().tolist()
        return [self.category_names[c] for c in row]

    @classmethod
    def build(
        cls,
        items: pd.DataFrame,
        texts: list[str],
        train: pd.DataFrame,
        images: list[str] | None = None,
    ) -> Catalogue:
        """Catalogue over every item of ``items`` (cold items included); ``images`` [N]:
        image references (:func:`divrec.data.images.image_refs`)."""
        item_ids = items["item_id"].tolist()
        names = sorted({c for cats in items["categories"] for c in cats})
        col = {c: j for j, c in enumerate(names)}
        cats = torch.zeros(len(item_ids), len(names))
        for i, item_cats in enumerate(items["categories"]):
            for c in item_cats:
                cats[i, col[c]] = 1.0
        index = {iid: i for i, iid in enumerate(item_ids)}
        counts = np.bincount(train["item_id"].map(index).to_numpy(), minlength=len(item_ids))
        return cls(
            item_ids=item_ids,
            titles=items["title"].tolist(),
            texts=texts,
            category_names=names,
            category_matrix=cats,
            popularity=torch.from_numpy(counts.astype(np.float32)),
            index=index,
            images=list(images or []),
        )
