"""Batched diversity re-rankers: each user's top-M candidates re-ranked to k items.

All re-rankers take ``scores: [users, items]`` (-inf marks seen items, which never enter),
restrict each user to their top-``candidates`` items (None = all), run on the scores' device
and return ``[users, k]`` int64 item indices in pick order. ``diversity`` in [0, 1]; 0 is the
plain top-k by score. Ties: higher relevance, then lower item index (see ``candidates``).
``plackett_luce`` is the one stochastic re-ranker: a seeded sample per (user, request), see
:mod:`divrec.rerank.plackett_luce`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from divrec.errors import ConfigError, DataError
from divrec.rerank.calibrated import calibrated
from divrec.rerank.candidates import top_k
from divrec.rerank.dpp import dpp
from divrec.rerank.mmr import mmr
from divrec.rerank.plackett_luce import plackett_luce
from divrec.rerank.xquad import xquad

# name -> re-ranker; signatures differ by the side information each needs (see ``rerank``).
RERANKERS: dict[str, Callable[..., Tensor]] = {
    "none": top_k,
    "mmr": mmr,
    "dpp": dpp,
    "xquad": xquad,
    "calibrated": calibrated,
    "plackett_luce": plackett_luce,
}
# Re-rankers whose lists are random draws (evaluated over ``rerank.samples`` draws per user).
STOCHASTIC_RERANKERS = ("plackett_luce",)


def rerank(
    name: str,
    scores: Tensor,
    k: int,
    diversity: float,
    embeddings: Tensor | None = None,
    categories: Tensor | None = None,
    user_categories: Tensor | None = None,
    candidates: int | None = None,
    sampling: dict | None = None,
) -> Tensor:
    """Dispatch to the re-ranker ``name`` (a key of :data:`RERANKERS`); returns ``[B, k]``.

    "none" ignores ``diversity`` and returns the top-k; "mmr"/"dpp" need ``embeddings``;
    "xquad"/"calibrated" need ``categories`` and ``user_categories``; "plackett_luce" ignores
    ``diversity`` and takes ``sampling``: ``temperature``, ``seed``, ``sample``, ``users [B]``.
    """
    if name not in RERANKERS:
        raise ConfigError(
            f"rerank.name: unknown re-ranker {name!r}; choose one of {sorted(RERANKERS)}"
        )
    fn = RERANKERS[name]
    if name == "none":
        return fn(scores, k, candidates=candidates)
    if name == "plackett_luce":
        return fn(scores, k, **(sampling or {}), candidates=candidates)
    if name in ("mmr", "dpp"):
        if embeddings is None:
            raise DataError(f"rerank: {name} needs item embeddings, none were given")
        return fn(scores, embeddings, k, diversity, candidates=candidates)
    if categories is None or user_categories is None:
        raise DataError(f"rerank: {name} needs item categories and user_categories")
    return fn(scores, categories, k, diversity, user_categories, candidates=candidates)


__all__ = [
    "RERANKERS",
    "STOCHASTIC_RERANKERS",
    "calibrated",
    "dpp",
    "mmr",
    "plackett_luce",
    "rerank",
    "top_k",
    "xquad",
]
