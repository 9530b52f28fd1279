"""``BaselineCore``: a classic baseline bound to the shared evaluation, without Lightning.

Same DataModule, split, masking, metrics, re-rankers and run artefacts as the language-model
models: only :meth:`score` differs. A closed-form baseline (pop, itemknn, ease, buy_again) is
fitted in :meth:`BaselineCore.attach` and evaluated by :mod:`divrec.run.closed_form` without
a Trainer; pairwise ones (bpr, lightgcn) also train, through
:class:`~divrec.baselines.module.BaselineModule` and Lightning.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from divrec.baselines import build_baseline
from divrec.baselines.base import Baseline
from divrec.errors import ConfigError
from divrec.evaluation.ranking import RankingCore


class BaselineCore(RankingCore):
    """Wraps a :class:`~divrec.baselines.base.Baseline` named by ``model.name``."""

    def __init__(
        self,
        name: str,
        n_items: int,
        n_users: int,
        options: dict | None,
        evaluation: dict,
        rerank_cfg: dict | None = None,
    ) -> None:
        super().__init__(evaluation, rerank_cfg)
        self.baseline = build_baseline(name, n_users=n_users, n_items=n_items, **(options or {}))
        self.needs_training = bool(self.baseline.needs_training)

    def attach(self, dm, reference=None) -> None:
        """Fit the baseline on ``dm``'s training matrix and bind the evaluation tensors.

        The matrix is 0/1, or for a baseline with ``uses_counts`` the sum of its
        ``row_weights`` over each (user, item)'s training rows (``dm.split.train``, in the
        order of ``dm.train_users`` / ``dm.train_items``)."""
        ratings = dm.split.train["rating"].to_numpy(np.float32)
        shape = (len(dm.user_ids), len(dm.catalogue))
        train = training_matrix(
            self.baseline, dm.train_users.numpy(), dm.train_items.numpy(), ratings, shape
        )
        if self.baseline.needs_item_vectors:  # e.g. EASE with a text prior
            if reference is None:
                raise ConfigError(f"{type(self.baseline).__name__}: needs the item text vectors")
            self.baseline.fit(train, item_vectors=reference)
        else:
            self.baseline.fit(train)
        self.attach_eval(dm, reference)

    def score(self, batch: dict) -> torch.Tensor:
        return self.baseline.score(batch["user_idx"])


def training_matrix(
    baseline: Baseline,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    shape: tuple[int, int],
) -> sp.csr_matrix:
    """[U, N] matrix of training rows ``users, items, ratings [rows]``: 0/1, or with
    ``baseline.uses_counts`` each (user, item)'s summed ``baseline.row_weights(ratings)``."""
    counts = baseline.uses_counts
    values = baseline.row_weights(ratings) if counts else np.ones(len(users), np.float32)
    train = sp.csr_matrix((values, (users, items)), shape=shape)
    train.sum_duplicates()
    if not counts:
        train.data[:] = 1.0
    return train
