"""``RankingModule``: the full-catalogue evaluation every model shares (two-tower, baselines).

For each val/test batch: score every item ([B, N]), mask the items the user has seen, take the
top-M candidates, optionally re-rank them to K (MMR/DPP/xQuAD), and feed the top-K lists to
the metrics; the test pass also keeps each user's top ``save_topk`` list for
``recommendations.parquet``. Subclasses implement :meth:`score` only.

Re-rankers and ``ild_emb`` use one fixed, model-independent item space: the frozen pretrained
encoder's item vectors (``reference_embeddings``), so every model is measured on one scale.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F

from divrec.metrics import RankingEvaluator, topk_unseen


class RankingModule(pl.LightningModule):
    """Evaluation loop shared by all models. ``evaluation``: the ``eval`` config group;
    ``rerank_cfg``: the ``rerank`` config group."""

    def __init__(self, evaluation: dict, rerank_cfg: dict | None = None) -> None:
        super().__init__()
        self.metric_names = list(evaluation.get("metrics", []))
        self.ks = sorted(int(k) for k in evaluation.get("ks", [10, 20]))
        self.save_topk = int(evaluation.get("save_topk", 100))
        self.rerank_cfg = dict(rerank_cfg or {"name": "none"})
        self.recommendations: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.step_seed = torch.initial_seed()  # built after seed_everything
        # Scores of each eval batch, kept while the weights stay the same: re-ranking and
        # evaluation sweeps (``rerank_sweep``) on one model score the catalogue once.
        self.score_cache_bytes = int(evaluation.get("score_cache_mb", 512)) << 20
        self._weights_version = 0  # bumped by every training step and state-dict load
        self._cache_version = -1
        self._score_cache: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._score_cache_used = 0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Randomness inside a step (dropout, sampled negatives) depends only on (seed, step),
        # so a resumed run draws what an uninterrupted one would.
        torch.manual_seed((self.step_seed * 1_000_003 + self.global_step) % (1 << 63))
        self._weights_version += 1  # this step changes the weights: cached scores are stale
        self.because: list[list[str]] = []  # per saved row: explanation strings (may stay empty)

    def attach_eval(self, dm, reference_embeddings: torch.Tensor | None) -> None:
        """Catalogue tensors for ranking and metrics. ``reference_embeddings``: [N, H]."""
        self._weights_version += 1  # new data: nothing scored before applies
        cat = dm.catalogue
        self.register_buffer("categories", cat.category_matrix, persistent=False)
        hist_cats = torch.zeros(len(dm.user_ids), cat.n_categories)
        users = torch.repeat_interleave(torch.arange(len(dm.user_ids)), dm.history.indptr.diff())
        hist_cats.index_add_(0, users, cat.category_matrix[dm.history.indices])
        user_cats = hist_cats / hist_cats.sum(1, keepdim=True).clamp_min(1e-9)
        self.register_buffer("user_categories", user_cats, persistent=False)
        emb = None
        if reference_embeddings is not None:
            emb = F.normalize(reference_embeddings.float(), dim=-1)
        self.register_buffer("reference_embeddings", emb, persistent=False)
        kw: dict[str, Any] = dict(
            metrics=self.metric_names,
            ks=self.ks,
            category_matrix=cat.category_matrix,
            popularity=cat.popularity,
            n_train_users=int((dm.history.indptr.diff() > 0).sum()),
            user_interests=dm.user_interests,
            item_embeddings=emb if "ild_emb" in self.metric_names else None,
        )
        self.val_metrics = RankingEvaluator(**kw, prefix="val")
        self.test_metrics = RankingEvaluator(**kw, prefix="test")

    # ------------------------------------------------------------------ scoring
    def score(self, batch: dict) -> torch.Tensor:
        """Scores of the batch's users against every item: [B, N]."""
        raise NotImplementedError

    def on_eval_start(self) -> None:
        """Hook before a val/test pass (e.g. encode the catalogue once)."""

    def explain(self, batch: dict, top: torch.Tensor) -> list[list[str]] | None:
        """Optional ``because`` strings [B][K] for the saved lists ``top [B, K]`` (None: none)."""
        return None

    def rank(self, scores: torch.Tensor, seen: torch.Tensor, users: torch.Tensor, k: int):
        """Top-``k`` item indices [B, k] after masking ``seen`` [B, N] and re-ranking."""
        name = self.rerank_cfg.get("name", "none")
        if name == "none":
            return topk_unseen(scores, seen, k)
        from divrec.rerank import rerank

        masked = scores.masked_fill(seen, float("-inf"))
        m = self.rerank_cfg.get("candidates", 200)
        if self.rerank_cfg.get("normalize", True):
            masked = minmax_over_candidates(masked, min(m or masked.shape[1], masked.shape[1]))
        return rerank(
            name,
            masked,
            k,
            float(self.rerank_cfg.get("diversity", 0.0)),
            embeddings=self.reference_embeddings,
            categories=self.categories,
            user_categories=self.user_categories[users],
            candidates=m,
        )

    # ------------------------------------------------------------------ loops
    def load_state_dict(self, *args: Any, **kwargs: Any):
        self._weights_version += 1  # e.g. the best checkpoint loaded by trainer.test
        return super().load_state_dict(*args, **kwargs)

    def _begin_eval(self) -> None:
        """Rebuild eval-time state (``on_eval_start``) only when the weights changed."""
        if self._cache_version != self._weights_version:
            self._score_cache.clear()
            self._score_cache_used = 0
            self._cache_version = self._weights_version
            self.on_eval_start()

    def on_validation_epoch_start(self) -> None:
        self._begin_eval()

    def on_test_epoch_start(self) -> None:
        self._begin_eval()
        self.recommendations = []
        self.because = []

    def _scores(self, batch: dict, stage: str, batch_idx: int) -> torch.Tensor:
        """``score(batch)`` [B, N] as float, from the cache when these weights scored it."""
        key = (stage, batch_idx)
        hit = self._score_cache.get(key)
        users = batch["user_idx"]
        if hit is not None and torch.equal(hit[0], users.cpu()):
            return hit[1].to(users.device)
        scores = self.score(batch).float()
        size = scores.numel() * scores.element_size()
        if self._score_cache_used + size <= self.score_cache_bytes:
            self._score_cache[key] = (users.cpu(), scores.cpu())
            self._score_cache_used += size
        return scores

    @torch.no_grad()
    def _eval_step(
        self, batch: dict, metrics: RankingEvaluator, keep: bool, stage: str, batch_idx: int
    ) -> None:
        # Lightning autocasts eval steps under bf16/fp16-mixed; scores, re-rankers and metrics
        # stay fp32 (bf16 keeps ~3 digits: thousands of catalogue scores would tie).
        with torch.autocast(self.device.type, enabled=False):
            scores = self._scores(batch, stage, batch_idx)
            k = min(max(self.ks[-1], self.save_topk if keep else 0), scores.shape[1])
            top = self.rank(scores, batch["seen"], batch["user_idx"], k)
            metrics.update(top[:, : self.ks[-1]], batch["truth"], batch["user_idx"])
            if keep:
                self.recommendations.append(
                    (batch["user_idx"].cpu(), top.cpu(), scores.gather(1, top).cpu())
                )
                because = self.explain(batch, top)
                if because is not None:
                    self.because.extend(because)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, False, "val", batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, True, "test", batch_idx)

    def _log_eval(self, metrics: RankingEvaluator) -> None:
        self.log_dict({k: float(v) for k, v in metrics.compute().items()})
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_eval(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_eval(self.test_metrics)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Every rank holds the lists of its own users: gather them for the run artefacts.
            parts: list = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (self.recommendations, self.because))
            self.recommendations = [r for p in parts for r in p[0]]
            self.because = [b for p in parts for b in p[1]]


def minmax_over_candidates(scores: torch.Tensor, m: int) -> torch.Tensor:
    """Rescale each user's scores so their top-``m`` candidates span [0, 1]: [B, N] -> [B, N].

    Monotone per user (the candidate set and relevance order are unchanged; -inf stays -inf),
    so ``diversity`` weighs relevance against similarity on the same scale for every model:
    raw scores range from cosines (two-tower) to interaction counts (pop).
    """
    top = scores.topk(m, dim=1).values
    finite = torch.isfinite(top)
    hi = top[:, :1]
    lo = torch.where(finite, top, torch.inf).amin(dim=1, keepdim=True)
    span = (hi - lo).clamp_min(1e-12)
    return torch.where(torch.isfinite(scores), (scores - lo) / span, scores)
