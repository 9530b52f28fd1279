"""``RankingCore``: the full-catalogue evaluation every model shares (two-tower, baselines),
without Lightning: :class:`~divrec.evaluation.module.RankingModule` runs it from Lightning's
hooks, :mod:`divrec.run.closed_form` from a plain loop (closed-form baselines).

For each val/test batch (:meth:`RankingCore.eval_step`, the whole path in one place):
``score(batch) [B, N]`` (through the :class:`~divrec.evaluation.score_cache.ScoreCache`) ->
:meth:`Ranker.rank <divrec.evaluation.pipeline.Ranker.rank>` (mask seen, top-M, re-rank,
top-K) -> :class:`~divrec.metrics.RankingEvaluator`; the test pass also keeps each user's top
``save_topk`` list for ``recommendations.parquet``. A pass is :meth:`RankingCore.begin_pass`,
``eval_step`` per batch, :meth:`RankingCore.end_pass` (the metric values). Subclasses
implement :meth:`score` only.

``eval.mask_seen=false`` ranks without the mask (training/valid items may be recommended: buying
again); the metrics get the batch's ``seen`` either way (the repeat metrics need it). With the
mask, a user with fewer than max(ks) unseen items gets seen items at the list's tail
(:meth:`~divrec.evaluation.pipeline.Ranker.rank`), which count as hits when the truth holds
them (only possible when repeat purchases are kept).

Re-rankers use one fixed, model-independent item space: the frozen pretrained encoder's item
vectors (``reference_embeddings``), so every model is measured on one scale; ``ild_emb`` uses
``eval.diversity_space`` (that space by default, or one no re-ranker optimises).

A stochastic re-ranker (``rerank=plackett_luce``) serves, saves and scores the accuracy and
list metrics on draw 0 of each user; the expected-exposure metrics
(:mod:`divrec.metrics.exposure`) average over its ``rerank.samples`` draws (1 list otherwise).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from divrec.errors import DataError
from divrec.evaluation.pipeline import Ranker
from divrec.evaluation.score_cache import ScoreCache
from divrec.metrics import RankingEvaluator
from divrec.metrics.calibration import history_distribution
from divrec.metrics.evaluator import drop_category_metrics
from divrec.metrics.spaces import diversity_space
from divrec.rerank.kernels import cpu_threads
from divrec.utils.memory import release_freed_memory


class RankingCore(nn.Module):
    """Evaluation shared by all models. ``evaluation``: the ``eval`` config group;
    ``rerank_cfg``: the ``rerank`` config group. ``needs_training``: False for a model whose
    construction fitted it (closed-form baselines), evaluated without a Trainer."""

    needs_training: bool = True

    def __init__(self, evaluation: dict, rerank_cfg: dict | None = None) -> None:
        super().__init__()
        self.metric_names = list(evaluation.get("metrics", []))
        self.ks = sorted(int(k) for k in evaluation.get("ks", [10, 20]))
        self.save_topk = int(evaluation.get("save_topk", 100))
        self.mask_seen = bool(evaluation.get("mask_seen", True))
        self.diversity_space = str(evaluation.get("diversity_space", "reference"))
        self.ee_patience = float(evaluation.get("ee_patience", 0.5))
        self.rerank_cfg = dict(rerank_cfg or {"name": "none"})
        self.ranker = Ranker.from_config(self.rerank_cfg)  # side tensors set in attach_eval
        self.recommendations: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.because: list[list[str]] = []  # per saved row: explanation strings (may stay empty)
        self.step_seed = torch.initial_seed()  # built after seed_everything
        # Scores of each eval batch under the current weights: a ``rerank_sweep`` on one model
        # scores the catalogue once. Invalidated by every training step and state-dict load.
        self.score_cache = ScoreCache(int(evaluation.get("score_cache_mb", 512)) << 20)

    def attach_eval(self, dm, reference_embeddings: torch.Tensor | None) -> None:
        """Catalogue tensors for ranking and metrics. ``reference_embeddings``: [N, H], the
        re-rankers' space; ``ild_emb`` uses ``eval.diversity_space`` (:mod:`divrec.metrics.spaces`)."""
        self.invalidate_scores()  # new data: nothing scored before applies
        cat = dm.catalogue
        self.user_ids = list(dm.user_ids)  # names users in errors
        self.register_buffer("categories", cat.category_matrix, persistent=False)
        hist_cats = torch.zeros(len(dm.user_ids), cat.n_categories)
        users = torch.repeat_interleave(torch.arange(len(dm.user_ids)), dm.history.indptr.diff())
        hist_cats.index_add_(0, users, cat.category_matrix[dm.history.indices])
        user_cats = hist_cats / hist_cats.sum(1, keepdim=True).clamp_min(1e-9)
        if self.rerank_cfg and self.rerank_cfg.get("name") == "calibrated":
            # Steck's p(g|u): each history item's genres share weight 1 (not 0/1 coverage)
            user_cats = history_distribution(
                cat.category_matrix, dm.history.indptr, dm.history.indices
            )
        self.register_buffer("user_categories", user_cats, persistent=False)
        emb = None
        if reference_embeddings is not None:
            emb = F.normalize(reference_embeddings.float(), dim=-1)
        self.register_buffer("reference_embeddings", emb, persistent=False)
        self.ranker = Ranker.from_config(
            self.rerank_cfg, embeddings=emb, categories=cat.category_matrix
        )
        # one warning (here, not per evaluator) when category metrics are undefined
        # (none left: the evaluator below raises the ConfigError saying why)
        self.metric_names = (
            drop_category_metrics(self.metric_names, cat.category_matrix) or self.metric_names
        )
        space = None
        if "ild_emb" in self.metric_names:
            space = diversity_space(self.diversity_space, cat, emb)
        kw: dict[str, Any] = dict(
            metrics=self.metric_names,
            ks=self.ks,
            category_matrix=cat.category_matrix,
            popularity=cat.popularity,
            n_train_users=int((dm.history.indptr.diff() > 0).sum()),
            user_interests=dm.user_interests,
            user_history=history_distribution(
                cat.category_matrix, dm.history.indptr, dm.history.indices
            ),
            item_embeddings=space if "ild_emb" in self.metric_names else None,
            ee_patience=self.ee_patience,
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

    def set_rerank(self, rerank_cfg: dict) -> None:
        """Evaluate with another ``rerank`` config from now on (a ``rerank_sweep`` point)."""
        self.rerank_cfg = dict(rerank_cfg)
        self.ranker = self.ranker.with_config(self.rerank_cfg)

    # ------------------------------------------------------------------ passes
    def invalidate_scores(self) -> None:
        """The weights changed (a training step, a state-dict load): nothing scored applies."""
        self.score_cache.invalidate()

    def load_state_dict(self, *args: Any, **kwargs: Any):
        self.invalidate_scores()  # e.g. the best checkpoint loaded by trainer.test
        return super().load_state_dict(*args, **kwargs)

    def begin_pass(self, device: torch.device, keep: bool) -> None:
        """Start a val (``keep`` False) or test pass (``keep``: the saved lists start empty)."""
        self.ranker = self.ranker.on(device)
        if self.score_cache.begin():  # new weights: rebuild eval-time state
            self.on_eval_start()
        if keep:
            self.recommendations = []
            self.because = []

    @torch.no_grad()
    def eval_step(self, batch: dict, stage: str, batch_idx: int) -> None:
        """Rank one batch and update the ``stage`` ("val" or "test") metrics; the test pass
        also keeps the top ``save_topk`` lists."""
        keep = stage == "test"
        metrics = self.test_metrics if keep else self.val_metrics
        users = batch["user_idx"]
        # Lightning autocasts eval steps under bf16/fp16-mixed; scores, re-rankers and metrics
        # stay fp32 (bf16 keeps ~3 digits: thousands of catalogue scores would tie).
        with torch.autocast(users.device.type, enabled=False):
            scores = self.score_cache.scores((stage, batch_idx), users, lambda: self.score(batch))
            k = min(max(self.ks[-1], self.save_topk if keep else 0), scores.shape[1])
            seen = batch["seen"]
            # Ranking and metrics are many mid-sized ops: one CPU thread (see cpu_threads;
            # with 2 on a busy 2-core machine they took 3.8 s instead of 0.2 s per pass).
            with cpu_threads(scores.device):
                try:
                    masked = seen if self.mask_seen else None
                    cats = self.user_categories[users]
                    top = self.ranker.rank(scores, masked, k, cats, users)
                    draws = None  # a stochastic ranker's further lists for the exposure metrics
                    if self.ranker.draws > 1 and metrics.ee is not None:
                        more = [
                            self.ranker.rank(scores, masked, self.ks[-1], cats, users, sample=s)
                            for s in range(1, self.ranker.draws)
                        ]
                        draws = torch.stack([top[:, : self.ks[-1]], *more])
                except DataError as e:  # "user row 3" means nothing to a user: name the user
                    raise DataError(_name_users(str(e), users, self.user_ids)) from None
                metrics.update(top[:, : self.ks[-1]], batch["truth"], users, seen, draws)
            if keep:
                self.recommendations.append((users.cpu(), top.cpu(), scores.gather(1, top).cpu()))
                because = self.explain(batch, top)
                if because is not None:
                    self.because.extend(because)

    def end_pass(self, stage: str) -> dict[str, float]:
        """The ``stage`` pass's metric values (``val/ndcg@10``, ...); its state is reset."""
        metrics = self.test_metrics if stage == "test" else self.val_metrics
        values = {k: float(v) for k, v in metrics.compute().items()}
        metrics.reset()
        release_freed_memory()
        return values


def _name_users(message: str, users: torch.Tensor, user_ids: list[str]) -> str:
    """Replace "user row R" (a batch row) in ``message`` by the user's original id."""

    def named(match: re.Match) -> str:
        row = int(match.group(1))
        return f"user {user_ids[int(users[row])]!r}" if row < len(users) else match.group(0)

    return re.sub(r"user row (\d+)", named, message)
