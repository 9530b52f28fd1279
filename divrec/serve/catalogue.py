"""The catalogue one ``recommend()`` call scores: the run's items plus items added at call time.

``extend`` encodes extra items (``item_id``, ``title``, ``categories`` and the columns the item
template uses) from their text alone; they become recommendable and usable in a history. They
have no ID embedding and no interactions, so their user-based score is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch
import torch.nn.functional as F

from divrec.errors import ConfigError, DataError
from divrec.models.cf import CFContext, item_neighbours

if TYPE_CHECKING:
    from divrec.serve.recommend import LoadedModel


@dataclass
class View:
    """The catalogue one call scores: the run's items plus any ``catalogue`` items."""

    ctx: CFContext
    item_ids: list[str]
    titles: list[str]
    index: dict[str, int]
    categories: torch.Tensor  # [N', C']
    embeddings: torch.Tensor  # [N', H] item space of mmr/dpp


def encode(m: LoadedModel, encoder, texts: list[str], max_len: int) -> torch.Tensor:
    """Pooled backbone vectors [n, H] of ``texts`` (as the run's frozen cache computes them)."""
    from divrec.models.embed_cache import encode_in_batches, resolve_bf16

    tok = m.tokenizer(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
    dev = m.module.net.log_temperature.device
    bf16 = bool(m.bf16) and resolve_bf16("auto", dev)  # only where bf16 is native: else fp32
    return encode_in_batches(
        encoder, tok["input_ids"], tok["attention_mask"], device=dev, bf16=bf16, pooled_only=True
    ).to(dev)


def base_view(m: LoadedModel) -> View:
    cat = m.dm.catalogue
    ref = m.module.reference_embeddings
    return View(  # the catalogue's own lists (never mutated: copying them costs O(N) a call)
        m.ctx,
        cat.item_ids,
        cat.titles,
        cat.index,
        m.module.categories,
        ref if ref is not None else m.ctx.items,
    )


def extend(m: LoadedModel, items: pd.DataFrame) -> View:
    """The base view plus ``items`` encoded from their text alone."""
    from divrec.data.text import render_items, with_prefix

    base = base_view(m)
    for col in ("item_id", "title", "categories"):
        if col not in items.columns:
            raise DataError(f"catalogue: missing column '{col}' (have {list(items.columns)})")
    items = items.copy()
    items["item_id"] = items["item_id"].astype(str)
    items["title"] = items["title"].fillna("").astype(str)
    items["categories"] = [
        [c for c in v.split("|") if c] if isinstance(v, str) else list(v)
        for v in items["categories"]
    ]
    clash = sorted(set(items["item_id"]) & set(base.index))
    if clash or items["item_id"].duplicated().any():
        raise DataError(f"catalogue: item ids must be new and unique; clashes: {clash[:5]}")
    try:
        texts, _ = render_items(items, m.dm.text_cfg.item_template)
        texts = with_prefix(texts, m.dm.text_cfg.item_prefix)
    except ConfigError as e:
        raise DataError(f"catalogue: {e}") from None
    net = m.module.net
    pooled = encode(m, net.item_encoder, texts, m.dm.text_cfg.max_item_len)
    new = F.normalize(net.item_head(pooled.float()), dim=-1)
    n_old, ctx = len(base.item_ids), m.ctx
    all_items = torch.cat([ctx.items, new])
    ext = CFContext(all_items, users=ctx.users, active=ctx.active)
    if ctx.interactions is not None:
        r = ctx.interactions
        ext.interactions = torch.sparse_coo_tensor(
            r.indices(), r.values(), (len(all_items), r.shape[1]), check_invariants=False
        ).coalesce()
    if ctx.neighbours is not None:
        ext.neighbours = extend_neighbours(ctx.neighbours, ctx.items, new)
    names = list(m.dm.catalogue.category_names)
    col = {c: j for j, c in enumerate(names)}
    for cats in items["categories"]:
        for c in cats:
            col.setdefault(c, len(col))
    cats = torch.zeros(len(all_items), len(col), device=new.device)
    cats[:n_old, : base.categories.shape[1]] = base.categories
    for i, item_cats in enumerate(items["categories"]):
        for c in item_cats:
            cats[n_old + i, col[c]] = 1.0
    if m.module.reference_embeddings is not None and net.frozen:
        if net.item_encoder.pooling == "mean":
            emb = torch.cat([base.embeddings, F.normalize(pooled.float(), dim=-1)])
        else:
            emb = all_items
    else:
        emb = all_items
    ids = base.item_ids + items["item_id"].tolist()
    return View(
        ext,
        ids,
        base.titles + items["title"].tolist(),
        {i: j for j, i in enumerate(ids)},
        cats,
        emb,
    )


def extend_neighbours(nb: tuple[torch.Tensor, torch.Tensor], old: torch.Tensor, new: torch.Tensor):
    """Top-n neighbour lists over old + new items, from the old lists: [N + M, n]."""
    idx, val = nb
    n, n_old = idx.shape[1], old.shape[0]
    cand_val = torch.cat([val, old @ new.T], 1)  # old items: old top-n or a new item
    extra = torch.arange(n_old, n_old + len(new), device=idx.device).expand(n_old, -1)
    cand_idx = torch.cat([idx, extra], 1)
    v, pos = cand_val.topk(n, dim=1)
    new_idx, new_val = item_neighbours(torch.cat([old, new]), n)  # self excluded
    return (
        torch.cat([cand_idx.gather(1, pos), new_idx[n_old:]]),
        torch.cat([v, new_val[n_old:]]),
    )
