"""History pooling for the ``history`` user tower: item vectors [B, H, d] -> user [B, d].

``mean`` is the plain masked average. A user with an empty history gets the zero vector
(scores 0 for every item); the evaluator counts such users.
"""

from __future__ import annotations

import torch
from torch import nn

from divrec.errors import ConfigError
from divrec.models.encoder import mean_pool


class MeanPooling(nn.Module):
    """Masked mean: ``h`` [B, H, d], ``mask`` [B, H] bool -> [B, d]."""

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(h, mask)


POOLINGS: dict[str, type[nn.Module]] = {"mean": MeanPooling}


def build_history_pooling(name: str = "mean", dim: int = 0, **kwargs) -> nn.Module:
    """Pooling module by name (``model.pooling.name``)."""
    if name not in POOLINGS:
        raise ConfigError(f"model.pooling.name: '{name}' unknown; choose from {sorted(POOLINGS)}")
    cls = POOLINGS[name]
    try:
        return cls(dim=dim, **kwargs) if kwargs or name != "mean" else cls()
    except TypeError as e:
        raise ConfigError(f"model.pooling: {e}") from None
