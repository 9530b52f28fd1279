"""Explanations: for each recommended item, the history items that most support it.

The weight of history item j for recommended item i is

- the candidate-specific attention a_uj(i) for a target-aware pooling (``additive``);
- the user's attention weight a_uj for the other attentive poolings (``similarity``,
  ``multihead``): the same ranking of the history for every recommended item;
- cos(v_j, v_i) otherwise (``mean`` pooling or the text user tower).

Only the saved top list is explained (``[B, K]`` items, never the whole catalogue), and the
strings read ``"because you liked: Toy Story (0.41), Heat (0.22), Alien (0.10)"``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.models.cf import CFContext, Query

PREFIX = "because you liked: "


def explanation_weights(
    net, q: Query, ctx: CFContext, top: Tensor, n: int = 3
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``n`` history items for each recommended item ``top [B, K]``.

    Returns (item indices [B, K, m], weights [B, K, m], valid [B, K, m] bool), m = min(n, H),
    highest weight first; ``valid`` is False past the end of a short history.
    """
    b, k = top.shape
    h = ctx.items[q.hist]  # [B, H, d]
    cands = ctx.items[top]  # [B, K, d]
    pool = net.pool
    history_tower = net.user_tower == "history"
    if history_tower and pool.target_aware:
        step = pool.chunk_size(b, q.hist.shape[1])
        w = torch.cat(
            [pool.candidate_weights(h, q.mask, cands[:, s : s + step]) for s in range(0, k, step)],
            dim=1,
        )
    elif history_tower and pool.attentive:
        w = q.weights.unsqueeze(1).expand(b, k, -1)
    else:
        w = torch.einsum("bhd,bkd->bkh", h, cands)
    w = w.float().masked_fill(~q.mask.bool().unsqueeze(1), float("-inf"))
    m = min(int(n), w.shape[-1])
    val, pos = w.topk(m, dim=-1)
    items = q.hist.gather(1, pos.flatten(1)).view(b, k, m)
    return items, val, torch.isfinite(val)


def because_strings(
    titles: list[str], items: Tensor, weights: Tensor, valid: Tensor
) -> list[list[str]]:
    """Per user, per recommended item: ``"because you liked: A (0.41), B (0.22)"`` ("" when
    the history is empty). Inputs as returned by :func:`explanation_weights`."""
    out = []
    for row_i, row_w, row_v in zip(items.tolist(), weights.tolist(), valid.tolist(), strict=True):
        strings = []
        for it, ws, vs in zip(row_i, row_w, row_v, strict=True):
            parts = [f"{titles[i]} ({w:.2f})" for i, w, v in zip(it, ws, vs, strict=True) if v]
            strings.append(PREFIX + ", ".join(parts) if parts else "")
        out.append(strings)
    return out


def explain(net, q: Query, ctx: CFContext, top: Tensor, titles: list[str], n: int = 3):
    """``because`` strings [B][K] for the recommended items ``top [B, K]``."""
    return because_strings(titles, *explanation_weights(net, q, ctx, top, n))
