"""Per-user category metrics of a run's saved lists, from the run's rebuilt item catalogue.

A run folder stores no catalogue, so ``ild_cat``, ``cat_coverage`` and ``alpha_ndcg`` (see
:data:`CATALOGUE_METRICS`) need it rebuilt from the run's own ``.hydra/config.yaml``
(:func:`divrec.serve.loading.run_config` + :func:`divrec.run.build.build_datamodule`, as
``divrec.serve.recommend.load_model`` does, without Lightning). Items are mapped by id and
the values come from the evaluator's own functions (:mod:`divrec.metrics.diversity`,
:func:`divrec.metrics.beyond.alpha_ndcg`), so their means are the run's ``metrics.json``
values. When the catalogue cannot be rebuilt (data missing, ...) or has no category, the
metrics are left out with one warning line.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from divrec.errors import DataError, DivrecError
from divrec.metrics import beyond, diversity
from divrec.metrics.evaluator import ALPHA, has_categories

CATALOGUE_METRICS = ("ild_cat", "cat_coverage", "alpha_ndcg")
_USERS = 1024  # users per chunk of category_values (bounds the [users, N] truth mask)
log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _catalogue(run: Path):
    from divrec.run.build import build_datamodule
    from divrec.serve.loading import run_config

    return build_datamodule(run_config(run), lightning=False).catalogue


def run_catalogue(run: str | Path):
    """The run's ``Catalogue`` rebuilt from its saved config, or None (one warning line)
    when that fails or no item has a category."""
    run = Path(run).resolve()
    from hydra.errors import HydraException

    try:
        cat = _catalogue(run)
    except (DivrecError, HydraException, OSError, ValueError, KeyError) as exc:
        cause = exc.__cause__ or exc  # Hydra's instantiate wraps the source's own error
        msg = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        names = ", ".join(CATALOGUE_METRICS)
        log.warning("%s: %s left out: cannot rebuild the catalogue (%s)", run, names, msg)
        return None
    if not has_categories(cat.category_matrix):
        log.warning(
            "%s: %s left out: the catalogue has no categories", run, ", ".join(CATALOGUE_METRICS)
        )
        return None
    return cat


def run_category_values(
    run: str | Path, lists: list[list[str]], truth: list[set[str]], ks: list[int]
) -> dict[str, np.ndarray]:
    """:func:`category_values` with the run's rebuilt catalogue; ``{}`` (one warning line)
    when it cannot be rebuilt, has no category or lacks an item of the lists."""
    cat = run_catalogue(run)
    if cat is None:
        return {}
    try:
        return category_values(cat, lists, truth, ks)
    except DataError as exc:
        log.warning("%s: %s left out: %s", run, ", ".join(CATALOGUE_METRICS), exc)
        return {}


def category_values(
    cat, lists: list[list[str]], truth: list[set[str]], ks: list[int], alpha: float = ALPHA
) -> dict[str, np.ndarray]:
    """``{"ild_cat": [users, len(ks)], ...}`` float64 of each user's list ``lists[u]`` (item
    ids as strings, best first, at least ``max(ks)``) against the truth ids ``truth[u]``."""
    k_max = max(ks)
    index = {str(i): j for i, j in cat.index.items()}  # saved lists hold ids as strings
    missing = {i for items in lists for i in items[:k_max] if i not in index}
    missing |= {i for t in truth for i in t if i not in index}
    if missing:
        raise DataError(
            f"rebuilt catalogue lacks {len(missing)} listed/test item id(s), e.g. "
            f"{sorted(missing)[:3]}; the data changed since the run"
        )
    parts = [
        _chunk(cat, index, lists[lo : lo + _USERS], truth[lo : lo + _USERS], ks, alpha)
        for lo in range(0, len(lists), _USERS)
    ]
    return {m: np.concatenate([p[m] for p in parts]) for m in CATALOGUE_METRICS}


def _chunk(cat, index, lists, truth, ks: list[int], alpha: float) -> dict[str, np.ndarray]:
    """:func:`category_values` of a few users (a ``[users, N]`` truth mask at a time)."""
    k_max = max(ks)
    topk = torch.tensor([[index[i] for i in items[:k_max]] for items in lists]).long()
    truth_mask = torch.zeros(len(lists), len(cat), dtype=torch.bool)
    for u, t in enumerate(truth):
        truth_mask[u, [index[i] for i in t]] = True
    cm = cat.category_matrix.float()  # as the evaluator holds it
    cats = cm[topk]  # [users, K, C]
    hits = truth_mask.gather(1, topk).double()
    ids, valid = beyond.truth_items(truth_mask)  # ascending catalogue indices, as evaluated
    truth_cats = cm[ids] * valid[:, :, None]
    return {
        "ild_cat": diversity.ild_cat(cats, ks).numpy(),
        "cat_coverage": diversity.cat_coverage(cats, ks).numpy(),
        "alpha_ndcg": beyond.alpha_ndcg(hits, cats, truth_cats, valid, alpha, ks).numpy(),
    }
