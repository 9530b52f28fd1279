"""Plackett-Luce sampling of each user's list via the Gumbel-top-k trick, batched.

``argtopk(score / T + G)`` with i.i.d. standard Gumbel ``G`` is an exact sample without
replacement from the Plackett-Luce model with weights ``exp(score / T)`` (Kool, van Hoof &
Welling, ICML 2019, "Stochastic Beams and Where to Find Them", sec. 3). Seen items (-inf)
never enter; only each user's top-``candidates`` items are sampled from (None = all).
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.errors import ConfigError
from divrec.rerank.candidates import user_candidates


def plackett_luce(
    scores: Tensor,
    k: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    candidates: int | None = None,
) -> Tensor:
    """One PL sample per user: ``scores: [B, N]`` (-inf = seen) -> ``[B, k]`` item indices.

    ``temperature`` > 0; as it goes to 0 the sample becomes the top-k by score.
    """
    if not temperature > 0:
        raise ConfigError(f"rerank.temperature: {temperature} must be > 0")
    k, _, idx, vals, valid = user_candidates(scores, k, candidates)
    u = torch.rand(vals.shape, generator=generator, dtype=torch.float64)
    gumbel = (-torch.log(-torch.log(u.clamp_min(1e-300)))).to(vals.device)
    keys = (vals.double() / temperature + gumbel).masked_fill(~valid, -torch.inf)
    pos = torch.topk(keys, k, dim=1).indices
    return idx.gather(1, pos)
