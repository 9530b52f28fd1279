"""Plackett-Luce sampling of each user's list via the Gumbel-top-k trick, batched and seeded.

``argtopk(score / T + G)`` with i.i.d. standard Gumbel ``G`` is an exact sample without
replacement from the Plackett-Luce model with weights ``exp(score / T)`` (Kool, van Hoof &
Welling, ICML 2019, "Stochastic Beams and Where to Find Them", sec. 3). Seen items (-inf)
never enter; only each user's top-``candidates`` items are sampled from (None = all).

The Gumbel noise of (user, item) in draw ``sample`` is a counter-based hash of
``(seed, user, sample, item)`` (:func:`uniform_hash`), not a stateful generator: a user's list
depends only on those four numbers and the scores, never on the batch the user is in, the
device or the other users, so a batched evaluation, a per-user loop, a DDP shard and the
recommend API all draw the same list for the same request, and request ``sample = r`` of a
user is the list evaluated as that user's ``r``-th sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.errors import ConfigError, DataError
from divrec.rerank.candidates import user_candidates
from divrec.rerank.kernels import limit_cpu_threads

_M32 = 0xFFFFFFFF


def mix32(x: Tensor) -> Tensor:
    """Chris Wellons' ``lowbias32`` bijective 32-bit mixer on int64 tensors holding [0, 2^32).

    int64 products wrap, and their low 32 bits are the exact 32-bit products.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def uniform_hash(seed: int, users: Tensor, sample: int, items: Tensor) -> Tensor:
    """Uniforms in (0, 1), float64 with 53 random bits: ``users: [B]``, ``items: [B, M]`` -> ``[B, M]``.

    ``h = mix(mix(mix(seed) ^ user) ^ sample)``; per item ``a = mix(h ^ item)``,
    ``b = mix(a ^ 0x9E3779B9)``; ``u = (a * 2^21 + b // 2^11 + 0.5) / 2^53``.
    """
    base = torch.full_like(users, int(seed) & _M32, dtype=torch.long)
    h = mix32(mix32(mix32(base) ^ (users.long() & _M32)) ^ (int(sample) & _M32))
    a = mix32(h[:, None] ^ (items.long() & _M32))
    b = mix32(a ^ 0x9E3779B9)
    return ((a << 21) + (b >> 11)).double().add_(0.5).div_(float(1 << 53))


def check_temperature(temperature: float) -> float:
    """``temperature`` as float; ConfigError unless it is a number > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(f"rerank.temperature must be a number > 0, got {temperature!r}") from None
    if not value > 0:
        raise ConfigError(f"rerank.temperature must be > 0, got {temperature!r}")
    return value


@limit_cpu_threads
def plackett_luce(
    scores: Tensor,
    k: int,
    temperature: float = 1.0,
    seed: int = 0,
    sample: int = 0,
    users: Tensor | None = None,
    candidates: int | None = None,
) -> Tensor:
    """One PL list per user: ``scores: [B, N]`` (-inf = seen) -> ``[B, k]`` item indices.

    ``users: [B]`` int ids keying the noise (None: ``0..B-1``); ``sample``: the draw / request
    index (same ``(seed, user, sample)`` -> same list). ``temperature`` > 0; as it goes to 0
    the list becomes the top-k by score (distinct scores).
    """
    temperature = check_temperature(temperature)
    k, _, idx, vals, valid = user_candidates(scores, k, candidates)
    if users is None:
        users = torch.arange(scores.shape[0], device=scores.device)
    if users.shape != (scores.shape[0],):
        raise DataError(f"plackett_luce: users must be [{scores.shape[0]}], got {users.shape}")
    u = uniform_hash(seed, users.to(idx.device), sample, idx)
    gumbel = -torch.log(-torch.log(u))
    keys = (vals.double() / temperature + gumbel).masked_fill(~valid, -torch.inf)
    pos = torch.topk(keys, k, dim=1).indices
    return idx.gather(1, pos)
