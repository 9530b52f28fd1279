"""The one path from scores to a final list: ``Ranker``.

``scores [B, N] -> mask seen -> top-M candidates -> min-max -> re-rank -> top-K [B, K]``.
Validation, test, every ``rerank_sweep`` point and :func:`divrec.serve.recommend.recommend`
call :meth:`Ranker.rank` the same way, so the list a user is served is the list that was
evaluated. A :class:`Ranker` holds the ``rerank`` config group and the catalogue's side
information (item embeddings for MMR/DPP, categories for xQuAD); it has no other state.
A stochastic re-ranker (``plackett_luce``) draws list ``sample`` of user ``users[b]`` from a
hash of ``(rerank.seed, user, sample)``: the same request always gets the same list, and
:attr:`Ranker.samples` draws per user feed the expected-exposure metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from divrec.errors import ConfigError, DataError
from divrec.metrics.evaluator import has_categories
from divrec.rerank import STOCHASTIC_RERANKERS, rerank, top_k
from divrec.rerank.candidates import minmax_over_candidates
from divrec.rerank.plackett_luce import check_temperature


@dataclass(frozen=True)
class Ranker:
    """Final lists from scores. Fields are the ``rerank`` group (``conf/rerank/*.yaml``).

    ``embeddings: [N, d]`` (L2-normalised item space of MMR/DPP) and ``categories: [N, C]``
    (0/1, xQuAD) are the catalogue's; either may be None when no re-ranker needs it.
    """

    name: str = "none"
    diversity: float = 0.0
    candidates: int | None = 200
    normalize: bool = True
    temperature: float = 0.1
    seed: int = 0
    samples: int = 1
    embeddings: Tensor | None = None
    categories: Tensor | None = None

    @classmethod
    def from_config(cls, rerank_cfg: dict[str, Any] | None, **side: Tensor | None) -> Ranker:
        """Ranker of a ``rerank`` config; ConfigError for xQuAD on categories with none set."""
        cfg = dict(rerank_cfg or {})
        cats = side.get("categories")
        name = cfg.get("name")
        if name in ("xquad", "calibrated") and cats is not None and not has_categories(cats):
            raise ConfigError(f"rerank: {name} needs item categories and this catalogue has none")
        samples = cfg.get("samples", 1)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"rerank.samples must be an int >= 1, got {samples!r}")
        seed = cfg.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"rerank.seed must be an int, got {seed!r}")
        return cls(
            name=str(cfg.get("name", "none")),
            diversity=float(cfg.get("diversity", 0.0) or 0.0),
            candidates=cfg.get("candidates", 200),
            normalize=bool(cfg.get("normalize", True)),
            temperature=check_temperature(cfg.get("temperature", 0.1)),
            seed=seed,
            samples=samples,
            **side,
        )

    @property
    def draws(self) -> int:
        """Lists per user the exposure metrics average over: ``samples`` if stochastic, else 1."""
        return self.samples if self.name in STOCHASTIC_RERANKERS else 1

    def with_config(self, rerank_cfg: dict[str, Any]) -> Ranker:
        """The same catalogue, another ``rerank`` config (a sweep point, a request's knobs)."""
        return Ranker.from_config(
            rerank_cfg, embeddings=self.embeddings, categories=self.categories
        )

    def on(self, device: torch.device) -> Ranker:
        """This ranker with its side tensors on ``device``."""
        move = {
            f: getattr(self, f).to(device)
            for f in ("embeddings", "categories")
            if getattr(self, f) is not None and getattr(self, f).device != device
        }
        return replace(self, **move) if move else self

    def rank(
        self,
        scores: Tensor,
        seen: Tensor | None,
        k: int,
        user_categories: Tensor | None = None,
        users: Tensor | None = None,
        sample: int = 0,
    ) -> Tensor:
        """Top-``k`` item indices ``[B, k]``, best first.

        ``scores: [B, N]`` float; ``seen: [B, N]`` bool (True: never recommended) or None;
        ``user_categories: [B, C]`` (each user's category distribution, xQuAD only);
        ``users: [B]`` user ids and ``sample`` the draw index (stochastic re-rankers only;
        None: ``0..B-1``). A user
        with fewer than ``k`` unseen items (a small catalogue) gets all of them, re-ranked,
        then seen items at the tail, lowest index first; metrics count those only when they
        are truth items, which needs repeat purchases kept in the held-out data.
        """
        if scores.dim() != 2:
            raise DataError(f"rank: scores must be [users, items], got {tuple(scores.shape)}")
        masked = scores if seen is None else scores.masked_fill(seen.bool(), float("-inf"))
        if self.name == "none":
            return top_k(masked, k, strict=False)
        m = min(self.candidates or masked.shape[1], masked.shape[1])
        if self.normalize:
            masked = minmax_over_candidates(masked, m)
        n_valid = (masked > float("-inf")).sum(dim=1).clamp(max=k)  # [B]
        if users is None:
            users = torch.arange(masked.shape[0], device=masked.device)
        if bool((n_valid == k).all()):
            return self._rerank(masked, k, user_categories, users, sample)
        out = top_k(masked, k, strict=False)  # valid items first, then the seen tail
        for kk in n_valid.unique().tolist():
            rows = (n_valid == kk).nonzero()[:, 0]
            if kk > 0:
                cats = None if user_categories is None else user_categories[rows]
                out[rows, :kk] = self._rerank(masked[rows], kk, cats, users[rows], sample)
        return out

    def _rerank(
        self,
        masked: Tensor,
        k: int,
        user_categories: Tensor | None,
        users: Tensor,
        sample: int,
    ) -> Tensor:
        sampling = None
        if self.name in STOCHASTIC_RERANKERS:
            sampling = dict(
                temperature=self.temperature, seed=self.seed, sample=sample, users=users
            )
        return rerank(
            self.name,
            masked,
            k,
            self.diversity,
            embeddings=self.embeddings,
            categories=self.categories,
            user_categories=user_categories,
            candidates=self.candidates,
            sampling=sampling,
        )
