"""Recommendations for any history from a trained run: ``recommend()`` and ``divrec-recommend``.

``load_model(path)`` rebuilds the data module and the two-tower module from the run folder's
``.hydra/config.yaml`` (``path``: a checkpoint ``RUN/checkpoints/*.ckpt`` or the run folder,
whose best checkpoint is then used) and loads the trained weights, offline. A frozen backbone
is not in the checkpoint: it is reloaded from ``model.encoder.pretrained``. Loading re-runs
the data pipeline (tokens and frozen embeddings come from the content-keyed caches under
``paths.cache_dir``, recomputed if absent) and encodes the catalogue once.

``recommend(model, history, ...)`` then scores the whole catalogue for a history of original
item ids, in the run's CF variant (``model.cf``), with no retraining:

- history user tower: the user vector is the history pooling of the items' vectors;
- text user tower: the user text is rendered from the history titles with the run's
  ``data.text.user_template`` (no profile) and encoded;
- ``catalogue``: extra items (``item_id``, ``title``, ``categories`` and the columns the item
  template uses) are encoded from their text at call time and become recommendable (and usable
  in the history). Their vectors have no ID embedding, and nobody has interacted with them, so
  their user-based score is 0.

Texts encoded at call time (a text-tower user, ``catalogue`` items) use bf16 autocast only
where the run allowed it (``model.cache.bf16``) and the device has native bf16 (a GPU, an
AVX512-BF16/AMX CPU); elsewhere float32, which may differ from a cache filled under bf16 by
bf16 rounding only.

ANN retrieval (``serve.ann``, :mod:`divrec.serve.ann`): with an index, a request fetches
``M + |seen| + margin`` candidates from it, re-scores them exactly and ranks them as above;
``auto`` uses one from 100,000 items on (two-tower scoring only), below that the full product.

Re-rankers: ``mmr``/``dpp`` use the frozen encoder's mean-pooled vectors when the run has them
(frozen backbone, mean pooling), else the model's item vectors; ``xquad`` the history's
category distribution.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from divrec.errors import ConfigError, DataError, DivrecError
from divrec.evaluation.pipeline import Ranker
from divrec.models.cf import CFContext, Query
from divrec.models.explain import explain
from divrec.serve.catalogue import View, base_view, encode, extend
from divrec.serve.loading import (
    check_hparams,
    load_checkpoint,
    load_weights,
    locate,
    read_items,
    run_config,
)
from divrec.serve.retrieval import open_for_model, rank_with_index

log = logging.getLogger(__name__)
QUERY_USER = "__query__"


@dataclass
class LoadedModel:
    """A trained two-tower module with its data module and the catalogue's vectors."""

    module: Any  # divrec.models.module.RecModule
    dm: Any  # divrec.data.datamodule.RecDataModule
    run_dir: Path
    checkpoint: Path
    ctx: CFContext
    tokenizer: Any
    bf16: bool | str = False  # the run's model.cache.bf16
    ann: Any = None  # divrec.serve.ann.AnnIndex over ctx.items, or None (exact scoring)


def load_model(checkpoint_path: str | Path, device: str = "cpu", ann: Any = None) -> LoadedModel:
    """Rebuild a run's module + data module and load its trained weights (offline).

    ``ann``: the ``serve.ann`` settings (a kind string or a dict), default the run config's
    (``auto`` for runs saved without them); the index is loaded or built here."""
    from omegaconf import OmegaConf

    from divrec.run.build import build_datamodule, build_module

    run, ckpt = locate(checkpoint_path)
    cfg_file = run / ".hydra" / "config.yaml"
    cfg = run_config(run)
    if cfg.model.get("kind", "two_tower") != "two_tower":
        raise ConfigError(
            f"{cfg_file}: model.kind={cfg.model.kind}; recommend needs a two_tower run"
        )
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    ckpt_obj = load_checkpoint(ckpt)
    check_hparams(ckpt, ckpt_obj.get("hyper_parameters"), module.hparams, cfg_file)
    load_weights(module, ckpt_obj["state_dict"], ckpt, cfg_file)
    module.to(device).eval()
    from divrec.models.pretrained import load_tokenizer

    with torch.inference_mode():
        ctx = module.build_context()
    bf16 = (cfg.model.get("cache") or {}).get("bf16", False)
    m = LoadedModel(module, dm, run, ckpt, ctx, load_tokenizer(dm.tokenizer_path), bf16)
    if ann is None and cfg.get("serve") is not None and cfg.serve.get("ann") is not None:
        ann = OmegaConf.to_container(cfg.serve.ann, resolve=True)
    m.ann = open_for_model(m, ann, int(cfg.get("seed", 0) or 0))
    return m


# --------------------------------------------------------------------- recommend
def _user_query(m: LoadedModel, view: View, idx: list[int]) -> Query:
    """Query for one fresh user with history ``idx`` (view indices, oldest first)."""
    net, dm = m.module.net, m.dm
    recent = idx[-dm.history_len :] or [0]
    hist = torch.tensor([recent], device=view.ctx.items.device)
    mask = torch.tensor([[bool(idx)] * len(recent)], device=hist.device)
    h = view.ctx.items[hist]
    users = torch.tensor([-1], device=hist.device)
    if net.user_tower == "history":
        v, w = net.pool_history(h, mask, users)
        return Query(hist, mask, v, w, users)
    from divrec.data.text import render_users

    frame = pd.DataFrame(
        {
            "user_id": QUERY_USER,
            "item_id": [view.item_ids[i] for i in idx],
            "timestamp": range(len(idx)),
        }
    )
    titles = dict(zip(view.item_ids, view.titles, strict=True))
    text = render_users([QUERY_USER], frame, titles, None, dm.text_cfg)[0]
    pooled = encode(m, net.user_encoder, [text], dm.text_cfg.max_user_len)
    v = F.normalize(net.user_head(pooled.float()), dim=-1)
    return Query(hist, mask, v, net.pool.weights(h, mask), users)


def recommend(
    checkpoint_or_model: str | Path | LoadedModel,
    history: list[str] | None = None,
    k: int = 10,
    rerank: str = "none",
    diversity: float = 0.0,
    exclude_seen: bool | None = None,
    catalogue: pd.DataFrame | None = None,
    user: str | None = None,
    temperature: float | None = None,
    request: int = 0,
) -> pd.DataFrame:
    """Top-``k`` items for ``history`` (original item ids, oldest first) or for ``user``.

    ``exclude_seen``: never list a history (``user``: training + validation) item; None: as the
    run evaluated (``eval.mask_seen``, true unless the run recommended repeat purchases).
    ``user``: a user id of the run, scored from the run's own data exactly as its test pass
    did (the same user input, seen = training + validation items), so with the run's re-ranker
    knobs the list is that user's rows of ``recommendations.parquet``. Both paths end in the
    evaluated :class:`~divrec.evaluation.pipeline.Ranker`.

    ``rerank="plackett_luce"`` samples the list (``temperature``; None: the run's
    ``rerank.temperature``, else 0.1): ``request`` r of the same user with the run's
    ``rerank.seed`` always gets the same list, another r another one; a run's user at request
    r gets its r-th evaluated draw (r = 0: its rows of ``recommendations.parquet``). A fresh
    history is keyed as user 0.

    Returns a frame with ``rank`` (from 1), ``item_id``, ``title``, ``score`` (the model's
    score, before any re-ranking) and ``because``. Pass a :class:`LoadedModel` from
    :func:`load_model` to avoid reloading the run on every call.
    """
    m = (
        checkpoint_or_model
        if isinstance(checkpoint_or_model, LoadedModel)
        else load_model(checkpoint_or_model)
    )
    if int(k) < 1:
        raise ConfigError(f"k: expected a positive int, got {k!r}")
    if isinstance(request, bool) or not isinstance(request, int) or request < 0:
        raise ConfigError(f"request: expected an int >= 0, got {request!r}")
    if (history is None) == (user is None):
        raise ConfigError(
            "recommend: give either history (item ids) or user (a user id of the run)"
        )
    with torch.inference_mode():
        if user is not None:
            if catalogue is not None and len(catalogue):
                raise ConfigError("recommend: catalogue items need a history, not a run's user")
            view = base_view(m)
            q, seen, user_cats = _run_user(m, str(user))
        else:
            view = base_view(m) if catalogue is None or not len(catalogue) else extend(m, catalogue)
            q, seen, user_cats = _history_user(m, view, history)
        if exclude_seen is None:
            exclude_seen = m.module.mask_seen
        seen = seen if exclude_seen else None
        n_items = view.ctx.items.shape[0]
        k = min(int(k), n_items - (int(seen.count_nonzero()) if seen is not None else 0))
        if k <= 0:
            return pd.DataFrame(columns=["rank", "item_id", "title", "score", "because"])
        cfg = {**m.module.rerank_cfg, "name": rerank, "diversity": float(diversity)}
        if temperature is not None:
            cfg["temperature"] = temperature
        if cfg.get("candidates") is not None:
            cfg["candidates"] = max(k, int(cfg["candidates"]))
        found = None
        stochastic = rerank == "plackett_luce"  # keyed by catalogue positions: exact scoring
        if m.ann is not None and not stochastic:  # candidates from the index, re-scored exactly
            found = rank_with_index(
                m.ann, view.ctx.items, q.user_vecs, seen, k, cfg, view.embeddings,
                view.categories, user_cats, m.ann.cfg.margin,
            )  # fmt: skip
        if found is None:
            scores = m.module.cf.score(m.module.net, q, view.ctx).float()  # [1, N']
            emb = None if rerank == "none" else F.normalize(view.embeddings.float(), dim=-1)
            ranker = Ranker.from_config(cfg, embeddings=emb, categories=view.categories)
            uid = m.dm.user_index[str(user)] if user is not None else 0
            users = torch.tensor([uid], device=scores.device)
            top = ranker.rank(scores, seen, k, user_cats, users=users, sample=request)
            top_scores = scores.gather(1, top)
        else:
            top, top_scores = found
        n_explain = m.module.cf.explain if m.module.cf.explain > 0 else 3
        because = explain(m.module.net, q, view.ctx, top, view.titles, n_explain)[0]
        chosen = top[0].tolist()
        return pd.DataFrame(
            {
                "rank": range(1, len(chosen) + 1),
                "item_id": [view.item_ids[i] for i in chosen],
                "title": [view.titles[i] for i in chosen],
                "score": top_scores[0].cpu().numpy(),
                "because": because if bool(q.mask.any()) else [""] * len(chosen),
            }
        )


def _history_user(m: LoadedModel, view: View, history: list[str]):
    """(query, seen [1, N'], category distribution [1, C']) of a fresh user's ``history``."""
    ids = [str(h) for h in history]
    unknown = [h for h in ids if h not in view.index]
    if unknown:
        raise DataError(f"history: unknown item id(s) {unknown[:5]} (not in the catalogue)")
    idx = [view.index[h] for h in ids]
    cats = view.categories
    seen = torch.zeros(1, len(view.item_ids), dtype=torch.bool, device=cats.device)
    seen[0, idx] = True
    user_cats = cats[idx].sum(0, keepdim=True) if idx else cats.new_zeros(1, cats.shape[1])
    return _user_query(m, view, idx), seen, user_cats / user_cats.sum().clamp_min(1e-9)


def _run_user(m: LoadedModel, user: str):
    """(query, seen [1, N], category distribution [1, C]) of a run's user, from its test batch."""
    if user not in m.dm.user_index:
        raise DataError(f"user: unknown user id {user!r} (not a user of this run)")
    dev = m.ctx.items.device
    batch = {k: v.to(dev) for k, v in m.dm.eval_batch("test", [user]).items()}
    q = m.module.query(batch, m.ctx)
    return q, batch["seen"], m.module.user_categories[batch["user_idx"]]


# --------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """``divrec-recommend --checkpoint PATH (--history 1,50,260 | --user U) [--k 10] [--rerank mmr ...]``."""
    ap = argparse.ArgumentParser(prog="divrec-recommend", description=main.__doc__)
    ap.add_argument("--checkpoint", required=True, help="RUN/checkpoints/*.ckpt or a run folder")
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--history", help="comma-separated item ids, oldest first")
    who.add_argument("--user", help="a user id of the run (scored as its test pass did)")
    ap.add_argument("--k", type=int, default=10, help="number of recommendations")
    ap.add_argument(
        "--rerank", default="none", help="none | mmr | dpp | xquad | calibrated | plackett_luce"
    )
    ap.add_argument("--diversity", type=float, default=0.0, help="re-ranker diversity in [0, 1]")
    ap.add_argument("--temperature", type=float, default=None, help="plackett_luce temperature")
    ap.add_argument("--request", type=int, default=0, help="plackett_luce: request index (draw)")
    seen_arg = ap.add_mutually_exclusive_group()
    seen_arg.add_argument(
        "--include-seen",
        dest="exclude_seen",
        action="store_false",
        help="allow history items in the list (default: as the run evaluated, eval.mask_seen)",
    )
    seen_arg.add_argument(
        "--exclude-seen", dest="exclude_seen", action="store_true", help="never list them"
    )
    ap.set_defaults(exclude_seen=None)
    ap.add_argument("--ann", help="serve.ann.kind: auto | exact | ivf | hnsw (default: the run's)")
    ap.add_argument("--catalogue", help="extra items (csv/parquet/jsonl; categories 'a|b' in csv)")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    err = Console(stderr=True)
    try:
        t0 = time.perf_counter()
        model = load_model(args.checkpoint, ann=args.ann)
        if model.ann is not None:
            err.print(model.ann.summary)
        t1 = time.perf_counter()
        extra = read_items(args.catalogue) if args.catalogue else None
        history = None
        if args.history is not None:
            history = [h.strip() for h in args.history.split(",") if h.strip()]
        recs = recommend(
            model,
            history,
            args.k,
            args.rerank,
            args.diversity,
            args.exclude_seen,
            extra,
            user=args.user,
            temperature=args.temperature,
            request=args.request,
        )
        t2 = time.perf_counter()
    except DivrecError as e:
        err.print(f"error: {e}")
        return 2
    who_txt = f"user {args.user}" if history is None else f"a history of {len(history)} items"
    table = Table(title=f"top {len(recs)} for {who_txt}")
    for col in ("rank", "item_id", "title", "score", "because"):
        table.add_column(col, overflow="fold")
    for r in recs.itertuples(index=False):
        table.add_row(str(r.rank), str(r.item_id), str(r.title), f"{r.score:.4f}", str(r.because))
    Console().print(table)
    err.print(f"loaded in {t1 - t0:.1f} s, recommended in {t2 - t1:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
