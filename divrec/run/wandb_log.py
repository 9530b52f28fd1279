"""Weights & Biases glue: finish every run (multirun jobs must never share one) and log a
table of sample users with their history and recommended titles."""

from __future__ import annotations

import logging
import sys

import pandas as pd

log = logging.getLogger(__name__)


def finish_wandb(exit_code: int = 0) -> None:
    """Close the active W&B run, if any (failed runs with ``exit_code=1``)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def sample_table(recs: pd.DataFrame, dm, n_users: int = 20, k: int = 10) -> pd.DataFrame:
    """One row per sample user: recent history titles and the top-``k`` recommended titles."""
    if recs.empty:
        return pd.DataFrame(columns=["user_id", "history", "recommended"])
    cat = dm.catalogue
    users = sorted(recs["user_id"].unique())[:n_users]
    rows = []
    for u in users:
        ui = dm.user_index[u]
        hist = dm.history.indices[dm.history.indptr[ui] : dm.history.indptr[ui + 1]][-5:]
        top = recs[(recs["user_id"] == u) & (recs["rank"] <= k)]
        rows.append(
            {
                "user_id": u,
                "history": "; ".join(cat.titles[i] for i in hist.tolist()[::-1]),
                "recommended": "; ".join(cat.titles[cat.index[i]] for i in top["item_id"]),
                **({"because": " | ".join(top["because"])} if "because" in top else {}),
            }
        )
    return pd.DataFrame(rows)


def log_recommendation_table(loggers: list, recs: pd.DataFrame, dm) -> None:
    """Log :func:`sample_table` to every W&B logger of the run."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            table = sample_table(recs, dm)
            lg.log_table("recommendations", dataframe=table)
