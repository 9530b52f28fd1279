"""``RecModule``: the LightningModule that trains the two towers.

Loss = relevance (in-batch sampled softmax with logQ correction, or BPR) + lambda * diversity
term; the diversity term sees the uncorrected in-batch scores (those served), never the
logQ-tilted ones. Evaluation is inherited from
:class:`~divrec.evaluation.module.RankingModule`, with full-catalogue scores from the CF
variant ``model.cf`` (:mod:`divrec.models.cf`) and ``because`` explanations of the saved
top lists (:mod:`divrec.models.explain`).

With a target-aware history pooling (``additive``) the in-batch scores are computed per
candidate (each item of the batch gets its own user vector) and handed to the relevance loss
as ``user = scores [B, B]``, ``item = identity``, so that ``user @ item.T`` is the score matrix.
A learned hybrid adds an in-batch softmax over the mix of the detached component scores
(``train/hybrid``): it trains the three mixing weights only.
"""

from __future__ import annotations

import math

import torch

from divrec.errors import ConfigError, DivrecError
from divrec.evaluation.module import RankingModule
from divrec.losses import (
    DIVERSITY_SCOPES,
    RELEVANCE_LOSSES,
    NoDiversity,
    build_diversity_term,
    in_batch_logits,
)
from divrec.losses.negatives import (
    check_negatives,
    mixed_softmax_loss,
    mixture_log_count,
    negative_distribution,
)
from divrec.models.cf import CFContext, CFScorer, Query
from divrec.models.explain import explain
from divrec.models.towers import TwoTower


class NonFiniteLossError(DivrecError):
    """The loss became NaN or infinite."""


class RecModule(RankingModule):
    """Two-tower recommender. Config groups: ``model`` (towers), ``loss``, ``optim``, ``eval``,
    ``rerank``."""

    def __init__(
        self,
        model: dict,
        loss: dict,
        optim: dict,
        evaluation: dict,
        rerank_cfg: dict | None = None,
    ) -> None:
        super().__init__(evaluation, rerank_cfg)
        self.save_hyperparameters()
        model = dict(model)
        cf = dict(model.pop("cf", None) or {"name": "two_tower"})
        self.net = TwoTower(**model)
        try:
            self.cf = CFScorer(**cf)
        except TypeError as e:
            raise ConfigError(f"model.cf: {e}") from None
        name = loss.get("relevance", "softmax")
        if name not in RELEVANCE_LOSSES:
            raise ConfigError(
                f"loss.relevance: '{name}' unknown; choose {sorted(RELEVANCE_LOSSES)}"
            )
        self.relevance = RELEVANCE_LOSSES[name]
        self.use_logq = bool(loss.get("logq", True))
        # Extra sampled negatives (divrec.losses.negatives); in_batch = none, as before.
        self.negatives = str(loss.get("negatives", "in_batch"))
        self.n_negatives = loss.get("n_negatives", 256)
        self.negative_alpha = float(loss.get("negative_alpha", 0.75))
        check_negatives(self.negatives, self.n_negatives, self.negative_alpha, name)
        if self.negatives != "in_batch" and self.net.user_tower == "history":
            if self.net.pool.target_aware:
                raise ConfigError(
                    f"loss.negatives={self.negatives}: not with a target-aware pooling"
                )
        div = dict(loss.get("diversity") or {"name": "none"})
        self.diversity_scope = str(div.pop("scope", "batch"))
        self.diversity_top_c = int(div.pop("top_c", 50))
        self.diversity = build_diversity_term(div.pop("name"), **div)
        self.diversity_weight = float(loss.get("diversity_weight", 0.0))
        self.optim_cfg = optim
        # The catalogue's vectors and the CF variant's tensors for the current weights (the
        # only eval-time state): built by ``on_eval_start``, which ``RankingModule`` runs once
        # per val/test pass after the weights changed (``ScoreCache.begin``), and at each
        # training epoch start for a learned hybrid's detached parts.
        self.context: CFContext | None = None
        self.item_titles: list[str] = []
        self.train_users = self.train_items = torch.empty(0, dtype=torch.long)
        # A frozen backbone is not saved in checkpoints: it is the pretrained file itself.
        self.strict_loading = not self.net.frozen
        self._check_scope()

    def _check_scope(self) -> None:
        scope = self.diversity_scope
        if scope not in DIVERSITY_SCOPES:
            raise ConfigError(f"loss.diversity.scope: '{scope}' unknown; choose {DIVERSITY_SCOPES}")
        if scope != "topk":
            return
        if not self.net.frozen:
            raise ConfigError("loss.diversity.scope=topk needs model.encoder.finetune=frozen")
        if self.net.user_tower == "history" and self.net.pool.target_aware:
            raise ConfigError("loss.diversity.scope=topk: not with a target-aware pooling")
        if self.diversity_top_c < 2:
            raise ConfigError(f"loss.diversity.top_c must be >= 2, got {self.diversity_top_c}")

    def attach(self, dm, item_base=None, user_base=None, reference=None) -> None:
        """Bind a set-up ``RecDataModule``: tokens, frozen vectors, popularity, metrics."""
        self.net.attach(dm.item_tokens, dm.user_tokens, item_base, user_base)
        pop = dm.catalogue.popularity
        log_q = torch.log(pop.clamp_min(1.0) / pop.sum().clamp_min(1.0))
        self.register_buffer("log_q", log_q, persistent=False)
        neg_q = None
        if self.negatives != "in_batch":
            neg_q = negative_distribution(pop, self.negatives, self.negative_alpha).float()
        self.register_buffer("neg_q", neg_q, persistent=False)  # [N] q_n of the extra negatives
        self.register_buffer("recent", dm.history.recent, persistent=False)  # [U, H]
        self.register_buffer("recent_mask", dm.history.recent_mask, persistent=False)
        # Training pairs [nnz] stay on the CPU; user_based moves them when it needs them.
        self.train_users, self.train_items = dm.train_users, dm.train_items
        self.item_titles = list(dm.catalogue.titles)
        self.attach_eval(dm, reference)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.net.frozen:
            state = checkpoint["state_dict"]
            for key in [k for k in state if ".backbone." in k]:
                del state[key]

    # --------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        log_q = self.log_q if self.use_logq else None
        idx, temp = batch["item_idx"], self.net.temperature
        target_aware = self.net.user_tower == "history" and self.net.pool.target_aware
        if target_aware:
            v = self.net.item_vectors(idx)
            scores = self.net.target_scores(batch, v)  # [B, B] cosines, one user vector per item
            user, item = scores, torch.eye(len(scores), device=scores.device, dtype=scores.dtype)
        else:  # users first: the dropout RNG order of earlier versions (same seed, same run)
            user = self.net.user_vectors(batch)
            item = v = self.net.item_vectors(idx)
            scores = user @ v.T
        if self.neg_q is not None and not target_aware:  # (target-aware: refused in __init__)
            rel, logits = self._with_sampled_negatives(user, item, idx, temp)
        else:
            rel, logits = self.relevance(user, item, idx, temp, log_q)
        # The diversity term acts on the scores the model serves: no logQ tilt toward rare items.
        if self.diversity_scope == "topk" and not isinstance(self.diversity, NoDiversity):
            div = self._topk_diversity(user, temp)
        else:
            plain = log_q is None or isinstance(self.diversity, NoDiversity)
            served = logits if plain else in_batch_logits(user, item, idx, temp, None)
            div = self.diversity(served, v, self.categories[idx])
        loss = rel + self.diversity_weight * div
        bs = len(batch["item_idx"])
        if self.cf.learn:
            mix = self._hybrid_loss(batch, scores.detach(), log_q)
            loss = loss + mix
            self.log("train/hybrid", mix, batch_size=bs)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss at step {self.global_step}: relevance={rel.item():.4g}, "
                f"diversity={div.item():.4g} (weight {self.diversity_weight})"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        if batch_idx % max(1, self.trainer.log_every_n_steps) == 0:  # self.log costs per call
            self.log("train/relevance", rel, batch_size=bs)
            self.log("train/diversity", div, batch_size=bs)
            self.log("train/temperature", self.net.temperature, batch_size=bs)
        return loss

    def _with_sampled_negatives(self, user, item, idx, temp) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over the batch plus ``n_negatives`` items drawn from ``neg_q`` (shared by
        all rows; the step's seeded RNG); logits returned: the in-batch part ``[B, B]``."""
        neg_idx = torch.multinomial(self.neg_q, self.n_negatives, replacement=True)
        neg = self.net.item_vectors(neg_idx)
        log_count = None
        if self.use_logq:
            log_count = mixture_log_count(self.log_q, self.neg_q, len(idx), self.n_negatives)
        rel, logits = mixed_softmax_loss(user, item, idx, neg, neg_idx, temp, log_count)
        return rel, logits[:, : len(idx)]

    def _topk_diversity(self, u: torch.Tensor, temp: torch.Tensor) -> torch.Tensor:
        """The diversity term over each user's top-C catalogue items (``scope: topk``).

        ``u: [B, d]``. Candidates are chosen without gradient from the whole catalogue (the
        head, in eval mode, over the cached frozen vectors; seen items are not excluded: the
        training batch does not carry them); their vectors are then
        recomputed with gradient, and the term sees ``logits [B, C] = u . v_c / temperature``
        with each user's own candidates ``[B, C, d]`` and categories ``[B, C, K]``.
        """
        with torch.no_grad():
            was_training = self.net.training
            self.net.eval()  # the catalogue as served: no dropout
            try:
                every = self.net.all_item_vectors()  # [N, d]
            finally:
                self.net.train(was_training)
            c = min(self.diversity_top_c, len(every))
            top = (u.detach() @ every.T).topk(c, dim=1).indices  # [B, C]
        cand = self.net.item_vectors(top.flatten()).view(*top.shape, -1)  # [B, C, d]
        logits = (cand @ u.unsqueeze(2)).squeeze(2) / temp
        return self.diversity(logits, cand, self.categories[top])

    def _hybrid_loss(self, batch: dict, two_tower: torch.Tensor, log_q) -> torch.Tensor:
        """In-batch relevance loss of the learned mix of detached component scores [B, B]."""
        with torch.no_grad():
            if self.context is None:
                self.context = self.build_context()
            q = self.query(batch, self.context)
            parts = self.cf.components(self.net, q, self.context, {"item_based", "user_based"})
            cols = batch["item_idx"].unsqueeze(0).expand(len(two_tower), -1)
            parts = {c: p.gather(1, cols) for c, p in parts.items()}
        parts["two_tower"] = two_tower
        mix = sum(w * parts[c] for c, w in self.cf.mix().items())
        eye = torch.eye(len(mix), device=mix.device, dtype=mix.dtype)
        return self.relevance(mix, eye, batch["item_idx"], 1.0, log_q)[0]

    def on_train_epoch_start(self) -> None:
        if self.cf.learn:  # fresh user vectors / neighbours for the hybrid's detached parts
            self.context = self.build_context()

    def configure_optimizers(self):
        cfg = self.optim_cfg
        params = [p for p in self.parameters() if p.requires_grad]
        # Fused AdamW: one kernel for all parameters (CPU and CUDA). Lightning refuses gradient
        # clipping with a fused optimizer under mixed precision (it assumes the optimizer
        # unscales AMP gradients itself), so bf16/fp16-mixed runs use the foreach kernels.
        mixed = "mixed" in str(getattr(self.trainer, "precision", ""))
        opt = torch.optim.AdamW(
            params,
            lr=cfg.get("lr", 1e-3),
            weight_decay=cfg.get("weight_decay", 0.01),
            **({"foreach": True} if mixed else {"fused": True}),
        )
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
    def build_context(self) -> CFContext:
        """Catalogue vectors and the CF variant's precomputed tensors (eval start)."""
        was_training = self.net.training
        self.net.eval()  # no dropout in the vectors scoring relies on
        try:
            return self.cf.build_context(
                self.net,
                self.net.all_item_vectors(),
                self.recent,
                self.recent_mask,
                self.train_users,
                self.train_items,
            )
        finally:
            self.net.train(was_training)

    def on_eval_start(self) -> None:
        self.context = self.build_context()

    def query(self, batch: dict, ctx: CFContext) -> Query:
        """The batch's user vectors, histories and history weights for CF scoring."""
        v, w = self.net.user_vectors_and_weights(batch, ctx.items)
        hist, mask = batch["history_idx"], batch["history_mask"].bool()
        if w is None:  # text tower: the pooling's weights still rank the history
            w = self.net.pool.weights(ctx.items[hist], mask)
        return Query(hist, mask, v, w, batch["user_idx"])

    def score(self, batch: dict) -> torch.Tensor:
        """Scores of the batch's users against every item: [B, N]."""
        ctx = self.context if self.context is not None else self.build_context()
        return self.cf.score(self.net, self.query(batch, ctx), ctx)

    def explain(self, batch: dict, top: torch.Tensor) -> list[list[str]] | None:
        """``because`` strings for the saved top list ``top [B, K]`` (``model.cf.explain``)."""
        if self.cf.explain <= 0 or not self.item_titles:
            return None
        ctx = self.context if self.context is not None else self.build_context()
        q = self.query(batch, ctx)
        return explain(self.net, q, ctx, top, self.item_titles, self.cf.explain)
