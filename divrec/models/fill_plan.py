"""``FillPlan``: how a frozen-embedding cache miss is filled (``model.cache.{devices, num_nodes,
strategy, accelerator}``). Kept apart from :mod:`divrec.models.cache_fill` so that reading a
config never imports Lightning (the closed-form baselines' runs do without it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from divrec.errors import ConfigError

FILL_STRATEGIES = ("ddp_spawn", "ddp")
FILL_ACCELERATORS = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class FillPlan:
    """How a cache miss is filled: ``model.cache.{devices, num_nodes, strategy, accelerator}``."""

    devices: int = 1
    num_nodes: int = 1
    strategy: str = "ddp_spawn"
    accelerator: str = "auto"

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def sharded(self) -> bool:
        """False: today's one-process fill (:func:`~divrec.models.embed_cache.encode_in_batches`)."""
        return self.world_size > 1


def fill_plan(cache_cfg: Mapping[str, Any] | None) -> FillPlan:
    """The :class:`FillPlan` of a ``model.cache`` mapping; a bad value raises one ConfigError."""
    cfg = dict(cache_cfg or {})
    plan = FillPlan(
        devices=cfg.get("devices", 1),
        num_nodes=cfg.get("num_nodes", 1),
        strategy=cfg.get("strategy", "ddp_spawn"),
        accelerator=cfg.get("accelerator", "auto"),
    )
    for name in ("devices", "num_nodes"):
        value = getattr(plan, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.cache.{name}: expected an int >= 1, got {value!r}")
    if plan.strategy not in FILL_STRATEGIES:
        raise ConfigError(
            f"model.cache.strategy: expected one of {FILL_STRATEGIES}, got {plan.strategy!r}"
        )
    if plan.accelerator not in FILL_ACCELERATORS:
        raise ConfigError(
            f"model.cache.accelerator: expected one of {FILL_ACCELERATORS}, got {plan.accelerator!r}"
        )
    if plan.strategy == "ddp_spawn" and plan.num_nodes > 1:
        raise ConfigError(
            "model.cache.strategy=ddp_spawn starts processes on this machine only; with "
            "model.cache.num_nodes > 1 use strategy=ddp under srun or torchrun"
        )
    return plan
