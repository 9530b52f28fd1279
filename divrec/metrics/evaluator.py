"""Full-catalogue top-K evaluator: accuracy and beyond-accuracy metrics at several cut-offs.

Per batch only the compact hit matrix ``truth.gather(1, topk)`` and a few per-user sums are
kept; all states are torchmetrics "sum" states, so results are exact under DDP.

Repeat-purchase metrics (:data:`~divrec.metrics.repeat.REPEAT_METRICS`: ``ndcg_repeat``,
``recall_new``, ..., ``repeat_share``) also need each user's ``seen`` items; see
:mod:`divrec.metrics.repeat`.

Cold-item metrics (:data:`~divrec.metrics.cold.COLD_METRICS`: ``recall_cold``, ...) restrict
the truth to items without a training interaction; see :mod:`divrec.metrics.cold`.

Category metrics (:data:`CATEGORY_METRICS`) are undefined for a catalogue without any category
(e.g. a CSV without a categories column): they are left out with one warning, never reported as
a number that would rank. Items without categories in a catalogue that has some are handled per
metric (see :mod:`divrec.metrics.diversity` and :func:`divrec.metrics.beyond.alpha_ndcg`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from functools import cached_property

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from divrec.errors import ConfigError, DataError
from divrec.metrics import beyond, calibration, cold, diversity, repeat
from divrec.metrics.accuracy import ACCURACY_METRICS, accuracy
from divrec.metrics.cold import COLD_METRICS
from divrec.metrics.exposure import EXPOSURE_METRICS, ExpectedExposureMetric
from divrec.metrics.repeat import REPEAT_METRICS
from divrec.metrics.states import ExposureMetric, UserCountMetric, UserMeanMetric

USER_BEYOND_METRICS = (
    "ild_cat",
    "ild_emb",
    "cat_coverage",
    "novelty",
    "alpha_ndcg",
    "interest_coverage",
    "miscalibration",
)
GLOBAL_METRICS = ("item_coverage", "gini", "dist_coverage")
# Metrics that read item categories: undefined when no item has one.
CATEGORY_METRICS = ("ild_cat", "cat_coverage", "alpha_ndcg", "interest_coverage", "miscalibration")
_NEEDS = {
    "ild_emb": "item_embeddings",
    "interest_coverage": "user_interests",
    "miscalibration": "user_history",
}
_GLOBAL_FNS = {
    "item_coverage": beyond.item_coverage,
    "gini": beyond.gini,
    "dist_coverage": beyond.dist_coverage,
}
# Users per internal chunk: keeps [users, K, max(K, C, d)] intermediates near this many elements.
_CHUNK_ELEMENTS = 1 << 22
ALPHA = 0.5  # alpha_ndcg's redundancy penalty (Clarke et al., 2008), the evaluator's default
log = logging.getLogger(__name__)


def metric_names() -> list[str]:
    """All metric names RankingEvaluator accepts."""
    return [
        *ACCURACY_METRICS,
        *REPEAT_METRICS,
        *COLD_METRICS,
        *USER_BEYOND_METRICS,
        *GLOBAL_METRICS,
        *EXPOSURE_METRICS,
    ]


def has_categories(category_matrix: Tensor) -> bool:
    """True when at least one item of ``category_matrix: [N, C]`` has a category."""
    return category_matrix.numel() > 0 and bool(category_matrix.any())


def category_fallback(key: str) -> str | None:
    """The ``ild_emb`` key standing in for a category metric key on a catalogue without
    categories (``val/ild_cat@10`` -> ``val/ild_emb@10``); None for any other key."""
    prefix, slash, rest = key.rpartition("/")
    base = rest.split("@", 1)[0]
    if base not in CATEGORY_METRICS:
        return None
    return prefix + slash + "ild_emb" + rest[len(base) :]


def drop_category_metrics(metrics: list[str], category_matrix: Tensor) -> list[str]:
    """``metrics`` without the category metrics when no item has a category (one warning)."""
    if has_categories(category_matrix):
        return list(metrics)
    dropped = [m for m in metrics if m in CATEGORY_METRICS]
    if dropped:
        log.warning(
            "metrics %s left out: the catalogue has no categories, so they are undefined "
            "(ild_emb measures diversity without them; data.categories_from=clusters derives categories)",
            ", ".join(dropped),
        )
    return [m for m in metrics if m not in CATEGORY_METRICS]


class _Batch:
    """Lazily computed per-chunk inputs shared by several metrics (each built at most once)."""

    def __init__(
        self,
        ev: RankingEvaluator,
        topk: Tensor,
        truth: Tensor,
        user_idx: Tensor,
        seen: Tensor | None = None,
    ) -> None:
        self.ev, self.topk, self.truth, self.user_idx, self.seen = ev, topk, truth, user_idx, seen
        self._subsets: dict[str, tuple[Tensor, Tensor]] = {}

    @cached_property
    def hits(self) -> Tensor:  # [users, K] float64
        return self.truth.gather(1, self.topk).double()

    @cached_property
    def n_truth(self) -> Tensor:  # [users] float64
        return self.truth.sum(1).double()

    @cached_property
    def cats(self) -> Tensor:  # [users, K, C] 0/1
        return self.ev.category_matrix[self.topk]

    @cached_property
    def emb(self) -> Tensor:  # [users, K, d] unit rows
        return self.ev.item_embeddings[self.topk]

    @cached_property
    def listed_seen(self) -> Tensor:  # [users, K] bool
        return self.seen.gather(1, self.topk)

    def subset(self, which: str) -> tuple[Tensor, Tensor]:
        """Hits [users, K] and sizes [users] of the truth restricted to ``which``
        (repeat / new / cold)."""
        if which not in self._subsets:
            self._subsets[which] = (
                cold.cold_hits(self.topk, self.truth, self.ev.cold_items)
                if which == "cold"
                else repeat.subset_hits(self.topk, self.truth, self.seen, which)
            )
        return self._subsets[which]


class RankingEvaluator(nn.Module):
    """Accumulates ranking metrics over batches of users; ``compute()`` -> ``{"test/ndcg@10": ..}``.

    ``category_matrix: [N, C]`` 0/1, ``popularity: [N]`` train interaction counts,
    ``item_embeddings: [N, d]`` (ild_emb), ``user_interests: [U, C]`` 0/1 (interest_coverage),
    ``user_history: [U, C]`` p(g|u) of :mod:`divrec.metrics.calibration` (miscalibration),
    ``alpha`` for alpha_ndcg. Per-user metrics are averaged over evaluated users (users with at
    least one truth item; the ``_repeat``/``_new`` metrics over those whose restricted truth is
    not empty, counted as ``n_repeat_users``/``n_new_users``); item_coverage, gini and
    dist_coverage are computed from global exposure counts; interest_coverage averages over
    evaluated users with at least one interest category. ILD at k = 1 is 0 (no pair). Without
    any category in ``category_matrix`` the category metrics are dropped
    (:func:`drop_category_metrics`). Tensors are held as non-persistent buffers (not in
    checkpoints) and the metric states as torchmetrics submodules, so ``.to(device)`` moves
    everything.
    """

    def __init__(
        self,
        metrics: list[str],
        ks: list[int],
        category_matrix: Tensor,
        popularity: Tensor,
        n_train_users: int,
        item_embeddings: Tensor | None = None,
        user_interests: Tensor | None = None,
        user_history: Tensor | None = None,
        prefix: str = "test",
        alpha: float = ALPHA,
        ee_patience: float = 0.5,
    ) -> None:
        super().__init__()
        names = list(dict.fromkeys(metrics))
        supported = metric_names()
        unknown = [m for m in names if m not in supported]
        if names and not unknown and category_matrix.dim() == 2:
            names = drop_category_metrics(names, category_matrix)
            if not names:
                raise ConfigError(
                    "eval.metrics: only category metrics and the catalogue has no categories; "
                    "add e.g. ndcg or ild_emb"
                )
        if not names or unknown:
            raise ConfigError(
                f"evaluator metrics: unknown {unknown or 'empty list'}; supported: {supported}"
            )
        if category_matrix.dim() != 2:
            raise DataError(
                f"evaluator: category_matrix must be [N, C], got {category_matrix.shape}"
            )
        n_items, n_cats = category_matrix.shape
        if not ks or any(int(k) != k or not 1 <= k <= n_items for k in ks):
            raise ConfigError(f"evaluator ks: {ks} must be non-empty integers in [1, {n_items}]")
        if popularity.shape != (n_items,):
            raise DataError(f"evaluator: popularity {tuple(popularity.shape)} must be [{n_items}]")
        if n_train_users < 1:
            raise ConfigError(f"evaluator: n_train_users={n_train_users} must be >= 1")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"evaluator alpha: {alpha} must be in [0, 1]")
        given = {
            "item_embeddings": item_embeddings,
            "user_interests": user_interests,
            "user_history": user_history,
        }
        for name in names:
            if name in _NEEDS and given[_NEEDS[name]] is None:
                raise ConfigError(f"evaluator metric '{name}' needs {_NEEDS[name]}, none given")

        self.metrics = names
        self.ks = sorted({int(k) for k in ks})
        self.k_max = self.ks[-1]
        self.n_items, self.n_cats = n_items, n_cats
        self.alpha = float(alpha)
        self.prefix = f"{prefix}/" if prefix else ""
        self.register_buffer("category_matrix", category_matrix.float(), persistent=False)
        info = beyond.self_information(popularity, n_train_users)
        self.register_buffer("self_info", info, persistent=False)
        self.register_buffer("cold_items", popularity == 0, persistent=False)  # [N] bool
        self.register_buffer("item_embeddings", None, persistent=False)
        self.register_buffer("user_interests", None, persistent=False)
        self.register_buffer("user_history", None, persistent=False)
        if "miscalibration" in names:
            if user_history.dim() != 2 or user_history.shape[1] != n_cats:
                raise DataError(
                    f"evaluator: user_history {tuple(user_history.shape)} must be [U, {n_cats}]"
                )
            self.user_history = user_history.float()
        self.emb_dim = 0
        if "ild_emb" in names:
            emb = item_embeddings.double()
            if emb.dim() != 2 or emb.shape[0] != n_items:
                raise DataError(
                    f"evaluator: item_embeddings {tuple(emb.shape)} must be [{n_items}, d]"
                )
            if emb.data_ptr() == item_embeddings.data_ptr():  # already float64: keep the input
                emb = emb.clone()
            emb.div_(emb.norm(dim=1, keepdim=True).clamp_min(1e-12))  # in place: one [N, d] copy
            self.item_embeddings = emb.float()
            self.emb_dim = emb.shape[1]
        if "interest_coverage" in names:
            if user_interests.dim() != 2 or user_interests.shape[1] != n_cats:
                raise DataError(
                    f"evaluator: user_interests {tuple(user_interests.shape)} must be [U, {n_cats}]"
                )
            self.user_interests = user_interests.float()

        pooled = (*GLOBAL_METRICS, *EXPOSURE_METRICS)  # not per-user UserMeanMetric states
        self.user_metrics = nn.ModuleDict(
            {m: UserMeanMetric(len(self.ks)) for m in names if m not in pooled}
        )
        wants_ee = any(m in EXPOSURE_METRICS for m in names)
        self.ee = ExpectedExposureMetric(self.ks, n_items, ee_patience) if wants_ee else None
        wants_exposure = any(m in GLOBAL_METRICS for m in names)
        self.exposure = ExposureMetric(self.ks, n_items) if wants_exposure else None
        self.users = UserCountMetric()
        self.needs_seen = [m for m in names if m in REPEAT_METRICS]

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> RankingEvaluator:
        """Let ``.to(device)`` move buffers and states but never change their dtypes.

        Lightning's "16-true"/"bf16-true" precision casts whole modules with ``.to(dtype)``;
        self-information, embeddings and float64 sums must keep their precision.
        """

        def move_only(t: Tensor) -> Tensor:
            new = fn(t)
            return new if new.dtype == t.dtype else t.to(new.device)

        return super()._apply(move_only, recurse)

    @staticmethod
    def metric_names() -> list[str]:
        """All metric names this evaluator accepts."""
        return metric_names()

    def _check(self, topk: Tensor, truth: Tensor, user_idx: Tensor, seen: Tensor | None) -> None:
        if topk.dim() != 2 or truth.dim() != 2 or topk.shape[0] != truth.shape[0]:
            raise ValueError(
                f"evaluator.update: topk {tuple(topk.shape)} / truth {tuple(truth.shape)} must be "
                "[users, K] / [users, N]"
            )
        if truth.shape[1] != self.n_items:
            raise DataError(
                f"evaluator.update: truth has {truth.shape[1]} items, expected {self.n_items}"
            )
        if topk.shape[1] < self.k_max:
            raise ConfigError(
                f"evaluator.update: lists have {topk.shape[1]} items < max(ks)={self.k_max}"
            )
        if user_idx.shape != (topk.shape[0],):
            raise ValueError(f"evaluator.update: user_idx {tuple(user_idx.shape)} must be [users]")
        if topk.numel() and (int(topk.min()) < 0 or int(topk.max()) >= self.n_items):
            raise DataError(f"evaluator.update: topk item ids outside [0, {self.n_items})")
        if seen is None and self.needs_seen:
            raise ConfigError(
                f"evaluator.update: metrics {', '.join(self.needs_seen)} need seen [users, N] "
                "(each user's items before the held-out ones)"
            )
        if seen is not None and seen.shape != truth.shape:
            raise ValueError(
                f"evaluator.update: seen {tuple(seen.shape)} must be [users, N] like truth "
                f"{tuple(truth.shape)}"
            )
        if self.user_interests is not None and user_idx.numel():
            n_u = self.user_interests.shape[0]
            if int(user_idx.min()) < 0 or int(user_idx.max()) >= n_u:
                raise DataError(f"evaluator.update: user_idx outside [0, {n_u}) of user_interests")
        if self.user_history is not None and user_idx.numel():
            n_u = self.user_history.shape[0]
            if int(user_idx.min()) < 0 or int(user_idx.max()) >= n_u:
                raise DataError(f"evaluator.update: user_idx outside [0, {n_u}) of user_history")

    @torch.no_grad()
    def update(
        self,
        topk: Tensor,
        truth: Tensor,
        user_idx: Tensor,
        seen: Tensor | None = None,
        draws: Tensor | None = None,
    ) -> None:
        """Add a batch: ``topk: [B, K>=max(ks)]`` item ids, ``truth: [B, N]`` bool, ``user_idx: [B]``,
        ``seen: [B, N]`` bool (the users' earlier items; required by the repeat metrics),
        ``draws: [S, B, K>=max(ks)]``: S lists per user for the exposure metrics
        (:mod:`divrec.metrics.exposure`; None: ``topk`` alone, S = 1).

        Users with no truth item are skipped (counted in ``n_skipped_users``).
        """
        self._check(topk, truth, user_idx, seen)
        if draws is not None and (draws.dim() != 3 or draws.shape[1:2] != topk.shape[:1]):
            raise ValueError(f"evaluator.update: draws {tuple(draws.shape)} must be [S, B, K]")
        draws = topk[None] if draws is None else draws
        topk = topk[:, : self.k_max].long()
        truth = truth.bool()
        seen = None if seen is None else seen.bool()
        keep = truth.any(1)
        self.users.update(keep.sum(), (~keep).sum())
        if not bool(keep.all()):
            topk, truth, user_idx, draws = topk[keep], truth[keep], user_idx[keep], draws[:, keep]
            seen = None if seen is None else seen[keep]
        if self.exposure is not None:
            self.exposure.update(topk)
        if self.ee is not None:
            self.ee.update(draws[:, :, : self.k_max].long(), truth, seen)
        if len(self.user_metrics) == 0:
            return
        width = self.k_max * max(self.k_max, self.n_cats, self.emb_dim)
        step = max(1, _CHUNK_ELEMENTS // width)
        for lo in range(0, topk.shape[0], step):
            part = slice(lo, lo + step)
            b = _Batch(
                self, topk[part], truth[part], user_idx[part], None if seen is None else seen[part]
            )
            for name, state in self.user_metrics.items():
                values, valid = self._user_values(name, b)
                state.update(values, valid)

    def _user_values(self, name: str, b: _Batch) -> tuple[Tensor, Tensor | None]:
        """Per-user values ``[users, len(ks)]`` and optional validity mask ``[users]``."""
        ks = self.ks
        if name in ACCURACY_METRICS:
            return accuracy(name, b.hits, b.n_truth, ks), None
        if name == "repeat_share":
            return repeat.repeat_share(b.listed_seen, ks), None
        if name in REPEAT_METRICS:
            base, subset = repeat.parse(name)
            return repeat.restricted(base, *b.subset(subset), ks)
        if name in COLD_METRICS:
            return repeat.restricted(cold.base(name), *b.subset("cold"), ks)
        if name == "ild_cat":
            return diversity.ild_cat(b.cats, ks), None
        if name == "ild_emb":
            return diversity.ild_emb(b.emb, ks), None
        if name == "cat_coverage":
            return diversity.cat_coverage(b.cats, ks), None
        if name == "interest_coverage":
            return diversity.interest_coverage(b.cats, self.user_interests[b.user_idx], ks)
        if name == "miscalibration":
            return calibration.miscalibration(b.cats, self.user_history[b.user_idx], ks)
        if name == "novelty":
            return beyond.novelty(self.self_info[b.topk], ks), None
        if name == "alpha_ndcg":
            ids, valid = beyond.truth_items(b.truth)
            truth_cats = self.category_matrix[ids] * valid[:, :, None]
            return beyond.alpha_ndcg(b.hits, b.cats, truth_cats, valid, self.alpha, ks), None
        raise AssertionError(name)  # unreachable: names are validated in __init__

    def compute(self) -> dict[str, float]:
        """``{"<prefix>/<metric>@<k>": value, "<prefix>/n_users": evaluated users, ...}``.

        Per-user metrics are NaN when no user was evaluated. Under DDP every rank must call it.
        """
        out: dict[str, float] = {}
        with warnings.catch_warnings():  # a rank may legitimately have had no update
            warnings.filterwarnings("ignore", message=".*was called before the ``update``")
            counts = (
                None if self.exposure is None else self.exposure.compute().reshape(len(self.ks), -1)
            )
            exposure = None if self.ee is None else self.ee.compute()
            for name in self.metrics:
                if name in EXPOSURE_METRICS:
                    vals = exposure[name].reshape(-1).tolist()
                elif name in GLOBAL_METRICS:
                    vals = [float(_GLOBAL_FNS[name](counts[j])) for j in range(len(self.ks))]
                else:
                    vals = self.user_metrics[name].compute().reshape(-1).tolist()
                for k, v in zip(self.ks, vals, strict=True):
                    out[f"{self.prefix}{name}@{k}"] = float(v)
            n_users = self.users.compute().tolist()
            for subset in (*repeat.SUBSETS, "cold"):  # users each restricted family averages over
                first = next((m for m in self.metrics if m.endswith(f"_{subset}")), None)
                if first is not None:
                    out[f"{self.prefix}n_{subset}_users"] = self.user_metrics[first].users()
        out[f"{self.prefix}n_users"] = float(n_users[0])
        out[f"{self.prefix}n_skipped_users"] = float(n_users[1])
        return out

    def reset(self) -> None:
        """Clear all accumulated states (start of a new evaluation epoch)."""
        for m in self.modules():
            if isinstance(m, Metric):
                m.reset()
