"""Fusion of an item's text vector with its image vector (``model.image.fusion``).

``t [B, H]`` is the text encoder's pooled vector (before the item head), ``x [B, D]`` the
frozen image vector, standardised per row (``layer_norm`` without weights), ``m [B]`` 1 where
the item has an image. The output keeps the text width ``H``, so the item head is unchanged:

- ``concat``: ``W [t; x'] + b`` with ``x' = x`` if ``m`` else a learned no-image vector
  ``e [D]``; ``W [H, H + D]`` starts as ``[I | 0]`` (the text vector alone).
- ``sum``: ``t + W x'`` (same ``x'``; ``W [H, D]`` starts at zero).
- ``gated``: ``t + m * g * (W x)``, ``g = sigmoid(G [t; x] + c) [B, H]``: an item without an
  image gets gate 0, so its vector is its text vector exactly (``W`` starts at zero).

Every mode starts as text-only and learns how much of the image to use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from divrec.errors import ConfigError

FUSIONS = ("concat", "sum", "gated")


class ImageFusion(nn.Module):
    """``(t [B, H], x [B, D], m [B]) -> [B, H]`` (see module docstring)."""

    def __init__(self, text_dim: int, image_dim: int, mode: str = "concat") -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ConfigError(f"model.image.fusion: expected one of {FUSIONS}, got {mode!r}")
        self.mode, self.text_dim, self.image_dim = mode, text_dim, image_dim
        if mode == "concat":
            self.proj = nn.Linear(text_dim + image_dim, text_dim)
            with torch.no_grad():
                self.proj.weight.zero_()
                self.proj.weight[:, :text_dim] = torch.eye(text_dim)
                self.proj.bias.zero_()
        else:
            self.proj = nn.Linear(image_dim, text_dim, bias=False)
            nn.init.zeros_(self.proj.weight)
        if mode == "gated":
            self.gate = nn.Linear(text_dim + image_dim, text_dim)
            self.register_parameter("missing", None)
        else:
            self.gate = None
            self.missing = nn.Parameter(torch.zeros(image_dim))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row zero mean, unit variance: ``[B, D] -> [B, D]``."""
        return F.layer_norm(x.float(), (self.image_dim,))

    def forward(self, t: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        x = self.standardise(x)
        m = m.to(t.dtype).unsqueeze(-1)  # [B, 1]
        if self.mode == "gated":
            g = torch.sigmoid(self.gate(torch.cat([t, x], dim=-1)))
            return t + m * g * self.proj(x)
        x = m * x + (1 - m) * self.missing
        if self.mode == "concat":
            return self.proj(torch.cat([t, x], dim=-1))
        return t + self.proj(x)
