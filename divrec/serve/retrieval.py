"""One request's list from an ANN candidate set instead of the full catalogue's scores.

``rank_with_index`` over-fetches ``M + |seen| + margin`` candidates from the index (M: the
list length, or the re-ranker's candidate count), adds any items the index does not hold
(``catalogue`` items appended at call time), re-scores them exactly (<v_u, v_i>), masks the
seen ones and runs the same :class:`~divrec.evaluation.pipeline.Ranker` on that sub-problem.
Candidates are kept in item-index order, so the tie rule (lower index first) is the exact
path's; when the index holds every top-M unseen item the list equals the exact one. A request
whose candidates leave fewer than M unseen items returns None (the caller scores exactly).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec.evaluation.pipeline import Ranker
from divrec.serve.ann import AnnIndex


def fetch_size(k: int, rerank_cfg: dict[str, Any], n_seen: int, margin: int) -> int | None:
    """Candidates to ask the index for; None when the re-ranker needs the whole catalogue.

    M is ``k`` without a re-ranker, else the re-ranker's candidate count as the Ranker reads
    it (a missing ``candidates`` key is the Ranker's default)."""
    ranker = Ranker.from_config(rerank_cfg)
    if ranker.name == "none":
        need = k
    elif ranker.candidates is None:
        return None
    else:
        need = max(k, int(ranker.candidates))
    return need + n_seen + margin


@torch.no_grad()
def rank_with_index(
    index: AnnIndex,
    items: Tensor,
    user_vec: Tensor,
    seen: Tensor | None,
    k: int,
    rerank_cfg: dict[str, Any],
    embeddings: Tensor,
    categories: Tensor,
    user_cats: Tensor | None = None,
    margin: int = 50,
) -> tuple[Tensor, Tensor] | None:
    """(item indices [1, k], their exact scores [1, k]) for one user, or None (see module).

    ``items [N', d]`` (N' >= the index's N), ``user_vec [1, d]``, ``seen [1, N']`` bool,
    ``embeddings [N', H]`` (re-ranker item space, unnormalised), ``categories [N', C]``.
    """
    n_seen = int(seen.count_nonzero()) if seen is not None else 0
    fetch = fetch_size(k, rerank_cfg, n_seen, margin)
    if fetch is None or fetch >= items.shape[0]:
        return None
    _, ids = index.search(user_vec.float().cpu().numpy(), fetch)
    cand = torch.from_numpy(ids[0][ids[0] >= 0]).to(items.device)
    if items.shape[0] > index.n_items:  # call-time catalogue items: always candidates
        extra = torch.arange(index.n_items, items.shape[0], device=items.device)
        cand = torch.cat([cand, extra])
    cand = torch.unique(cand)  # sorted: ties keep the lower item index first
    sub_seen = seen[:, cand] if seen is not None else None
    unseen = len(cand) - (int(sub_seen.sum()) if sub_seen is not None else 0)
    if unseen < fetch - n_seen - margin:
        return None
    scores = (user_vec @ items[cand].T).float()  # [1, C] exact
    ranker = Ranker.from_config(
        rerank_cfg,
        embeddings=F.normalize(embeddings[cand].float(), dim=-1),
        categories=categories[cand],
    )
    pos = ranker.rank(scores, sub_seen, k, user_cats)
    return cand[pos], scores.gather(1, pos)


def inner_product_scoring(module: Any) -> bool:
    """True when the run scores s_ui = <v_u, v_i> (what an ANN index retrieves): the
    two-tower CF variant with a user vector that does not depend on the candidate."""
    net = module.net
    target_aware = net.user_tower == "history" and net.pool.target_aware
    return module.cf.name == "two_tower" and not target_aware


def open_for_model(m: Any, raw: Any, seed: int = 0) -> AnnIndex | None:
    """The ``serve.ann`` index of a loaded run (``m``: a LoadedModel), over ``m.ctx.items``,
    kept in ``RUN/ann/``; None when the config resolves to exact (or, under ``auto``, the run
    cannot use one or FAISS is missing). The recall line uses up to ``recall_queries`` of the
    run's users."""
    import logging

    from divrec.errors import ConfigError
    from divrec.serve.ann import AnnConfig, import_faiss, open_index

    log = logging.getLogger(__name__)
    cfg = AnnConfig.from_dict(raw)
    kind = cfg.resolve(int(m.ctx.items.shape[0]))
    if kind == "exact":
        return None
    if not inner_product_scoring(m.module):
        why = f"model.cf.name={m.module.cf.name}, user_tower={m.module.net.user_tower}"
        if cfg.kind == "auto":
            log.info("serve.ann: exact scoring (the run's %s is not an inner product)", why)
            return None
        raise ConfigError(
            f"serve.ann.kind={kind}: needs inner-product scoring (model.cf.name=two_tower and a "
            f"pooling that is not target-aware); this run has {why}"
        )
    if cfg.kind == "auto":
        try:
            import_faiss(kind)
        except ConfigError as e:
            log.warning("%s; scoring exactly", e)
            return None
    items = m.ctx.items.float().cpu().numpy()
    return open_index(m.run_dir / "ann", items, cfg, _user_vectors(m, cfg.recall_queries, seed))


def _user_vectors(m: Any, n: int, seed: int, batch: int = 64):
    """Vectors [<= n, d] of a seeded sample of the run's users (their test-pass input)."""
    import numpy as np

    users = sorted(m.dm.user_index)
    if not users or n <= 0:
        return None
    rng = np.random.default_rng(seed)
    pick = [users[i] for i in np.sort(rng.choice(len(users), min(n, len(users)), replace=False))]
    dev = m.ctx.items.device
    out = []
    with torch.inference_mode():
        for s in range(0, len(pick), batch):
            b = {key: v.to(dev) for key, v in m.dm.eval_batch("test", pick[s : s + batch]).items()}
            out.append(m.module.query(b, m.ctx).user_vecs.float().cpu())
    return torch.cat(out).numpy()
