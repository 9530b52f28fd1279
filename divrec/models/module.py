"""``RecModule``: the LightningModule that trains the two towers.

Loss = relevance (in-batch sampled softmax with logQ correction, or BPR) + lambda * diversity
term; evaluation is inherited from :class:`~divrec.models.ranking.RankingModule`.
"""

from __future__ import annotations

import math

import torch

from divrec.errors import ConfigError, DivrecError
from divrec.losses import RELEVANCE_LOSSES, build_diversity_term
from divrec.models.ranking import RankingModule
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
        self.net = TwoTower(**model)
        name = loss.get("relevance", "softmax")
        if name not in RELEVANCE_LOSSES:
            raise ConfigError(
                f"loss.relevance: '{name}' unknown; choose {sorted(RELEVANCE_LOSSES)}"
            )
        self.relevance = RELEVANCE_LOSSES[name]
        self.use_logq = bool(loss.get("logq", True))
        div = dict(loss.get("diversity") or {"name": "none"})
        self.diversity = build_diversity_term(div.pop("name"), **div)
        self.diversity_weight = float(loss.get("diversity_weight", 0.0))
        self.optim_cfg = optim
        self._eval_items: torch.Tensor | None = None
        # A frozen backbone is not saved in checkpoints: it is the pretrained file itself.
        self.strict_loading = not self.net.frozen

    def attach(self, dm, item_base=None, user_base=None, reference=None) -> None:
        """Bind a set-up ``RecDataModule``: tokens, frozen vectors, popularity, metrics."""
        self.net.attach(dm.item_tokens, dm.user_tokens, item_base, user_base)
        pop = dm.catalogue.popularity
        log_q = torch.log(pop.clamp_min(1.0) / pop.sum().clamp_min(1.0))
        self.register_buffer("log_q", log_q, persistent=False)
        self.attach_eval(dm, reference)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.net.frozen:
            state = checkpoint["state_dict"]
            for key in [k for k in state if ".backbone." in k]:
                del state[key]

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
        opt = torch.optim.AdamW(
            params, lr=cfg.get("lr", 1e-3), weight_decay=cfg.get("weight_decay", 0.01)
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
    def on_eval_start(self) -> None:
        self._eval_items = self.net.all_item_vectors()

    def score(self, batch: dict) -> torch.Tensor:
        """Cosine scores of the batch's users against every item: [B, N]."""
        items = self._eval_items if self._eval_items is not None else self.net.all_item_vectors()
        return self.net.user_vectors(batch, items) @ items.T
