"""``RecModule``: the LightningModule that trains the towers and evaluates full-catalogue.

Loss = relevance (in-batch sampled softmax with logQ correction, or BPR) + lambda * diversity
term. Validation and test score every catalogue item for each user, mask what the user has
seen, optionally re-rank the top-M candidates, and feed the top-K lists to the metrics.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

from divrec.errors import DivrecError
from divrec.losses import RELEVANCE_LOSSES, build_diversity_term
from divrec.metrics import RankingEvaluator, topk_unseen
from divrec.models.towers import TwoTower


class NonFiniteLossError(DivrecError):
    """The loss became NaN or infinite."""


class RecModule(pl.LightningModule):
    """Two-tower recommender. Config groups: ``model`` (towers), ``loss``, ``optim``, ``eval``."""

    def __init__(
        self,
        model: dict,
        loss: dict,
        optim: dict,
        evaluation: dict,
        rerank_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = TwoTower(**model)
        self.relevance = RELEVANCE_LOSSES[loss.get("relevance", "softmax")]
        self.use_logq = bool(loss.get("logq", True))
        div = dict(loss.get("diversity") or {"name": "none"})
        self.diversity = build_diversity_term(div.pop("name"), **div)
        self.diversity_weight = float(loss.get("diversity_weight", 0.0))
        self.optim_cfg = optim
        self.metric_names = list(evaluation.get("metrics", []))
        self.ks = sorted(int(k) for k in evaluation.get("ks", [10, 20]))
        self.save_topk = int(evaluation.get("save_topk", 100))
        self.rerank_cfg = dict(rerank_cfg or {"name": "none"})
        self.recommendations: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._eval_items: torch.Tensor | None = None

    # --------------------------------------------------------------- data
    def attach(self, dm, item_base=None, user_base=None) -> None:
        """Bind the catalogue of a set-up ``RecDataModule`` (tokens, categories, metrics)."""
        cat = dm.catalogue
        self.net.attach(dm.item_tokens, dm.user_tokens, item_base, user_base)
        pop = cat.popularity
        self.register_buffer("log_q", torch.log(pop.clamp_min(1.0) / pop.sum().clamp_min(1.0)),
                             persistent=False)
        self.register_buffer("categories", cat.category_matrix, persistent=False)
        hist_cats = torch.zeros(len(dm.user_ids), cat.n_categories)
        users = torch.repeat_interleave(torch.arange(len(dm.user_ids)),
                                        dm.history.indptr.diff())
        hist_cats.index_add_(0, users, cat.category_matrix[dm.history.indices])
        self.register_buffer("user_categories",
                             hist_cats / hist_cats.sum(1, keepdim=True).clamp_min(1e-9),
                             persistent=False)
        n_train_users = int((dm.history.indptr.diff() > 0).sum())
        kw: dict[str, Any] = dict(
            metrics=self.metric_names, ks=self.ks, category_matrix=cat.category_matrix,
            popularity=pop, n_train_users=n_train_users, user_interests=dm.user_interests,
        )
        needs_emb = any(m == "ild_emb" for m in self.metric_names)
        emb = torch.zeros(len(cat), 1) if needs_emb else None
        self.val_metrics = RankingEvaluator(**kw, item_embeddings=emb, prefix="val")
        self.test_metrics = RankingEvaluator(**kw, item_embeddings=emb, prefix="test")

    # --------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        u = self.net.user_vectors(batch)
        v = self.net.item_vectors(batch["item_idx"])
        log_q = self.log_q if self.use_logq else None
        rel, logits = self.relevance(u, v, batch["item_idx"], self.net.temperature, log_q)
        div = self.diversity(logits, v, self.categories[batch["item_idx"]])
        loss = rel + self.diversity_weight * div
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss at step {self.global_step}: relevance={rel.item():.4g}, "
                f"diversity={div.item():.4g} (weight {self.diversity_weight})"
            )
        bs = len(batch["item_idx"])
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/relevance", rel, batch_size=bs)
        self.log("train/diversity", div, batch_size=bs)
        self.log("train/temperature", self.net.temperature, batch_size=bs)
        return loss

    def configure_optimizers(self):
        cfg = self.optim_cfg
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.get("lr", 1e-3),
                                weight_decay=cfg.get("weight_decay", 0.01))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(cfg.get("warmup_ratio", 0.05) * total)
        schedule = cfg.get("schedule", "cosine")

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            frac = min(1.0, (step - warmup) / max(1, total - warmup))
            if schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * frac))
            if schedule == "linear":
                return 1.0 - frac
            return 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --------------------------------------------------------------- evaluation
    @torch.no_grad()
    def score(self, batch: dict, item_vecs: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine scores of the batch's users against every item: [B, N]."""
        item_vecs = self.net.all_item_vectors() if item_vecs is None else item_vecs
        return self.net.user_vectors(batch, item_vecs) @ item_vecs.T

    def rank(self, scores: torch.Tensor, seen: torch.Tensor, users: torch.Tensor,
             k: int, item_vecs: torch.Tensor) -> torch.Tensor:
        """Top-``k`` item indices [B, k], re-ranked when ``rerank.name`` is not ``none``."""
        name = self.rerank_cfg.get("name", "none")
        if name == "none":
            return topk_unseen(scores, seen, k)
        from divrec.rerank import rerank

        masked = scores.masked_fill(seen, float("-inf"))
        return rerank(
            name, masked, k, float(self.rerank_cfg.get("diversity", 0.0)),
            embeddings=item_vecs, categories=self.categories,
            user_categories=self.user_categories[users],
            candidates=self.rerank_cfg.get("candidates", 200),
        )

    def _eval_epoch_start(self) -> None:
        self._eval_items = self.net.all_item_vectors()
        for m in (self.val_metrics, self.test_metrics):
            if getattr(m, "item_embeddings", None) is not None:
                m.item_embeddings = self._eval_items.detach().float()

    def on_validation_epoch_start(self) -> None:
        self._eval_epoch_start()

    def on_test_epoch_start(self) -> None:
        self._eval_epoch_start()
        self.recommendations = []

    def _eval_step(self, batch: dict, metrics: RankingEvaluator, keep: bool) -> None:
        items = self._eval_items
        scores = self.score(batch, items)
        k = max(self.ks[-1], self.save_topk if keep else 0)
        k = min(k, scores.shape[1])
        top = self.rank(scores, batch["seen"], batch["user_idx"], k, items)
        metrics.update(top[:, : self.ks[-1]], batch["truth"], batch["user_idx"])
        if keep:
            self.recommendations.append(
                (batch["user_idx"].cpu(), top.cpu(), scores.gather(1, top).float().cpu())
            )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, keep=False)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, keep=True)

    def _log_eval(self, metrics: RankingEvaluator) -> None:
        values = metrics.compute()
        self.log_dict({k: float(v) for k, v in values.items()}, prog_bar=False)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_eval(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_eval(self.test_metrics)


