"""Paired significance of two runs on the same split: per-user metrics, tests, Holm.

Per-user values are recomputed from each run's ``recommendations.parquet`` (top-K lists) and
its saved ``split/`` (test items = truth, train = popularity) with divrec's own metric code
(:mod:`divrec.metrics.accuracy`, :func:`divrec.metrics.beyond.novelty`; the category metrics
of :mod:`divrec.reports.catalogue_metrics` from the run's rebuilt catalogue, left out with one
warning when it cannot be rebuilt), so their means are the run's ``metrics.json`` values. Per metric: paired t-test and Wilcoxon signed-rank
(``scipy.stats``), Cohen's d_z = mean(d) / sd(d) of the differences d = B - A, mean d with a
95% t confidence interval, and Holm-adjusted p-values across the metrics.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from divrec.errors import DataError
from divrec.metrics.accuracy import ACCURACY_METRICS, accuracy
from divrec.metrics.beyond import novelty, self_information
from divrec.reports.catalogue_metrics import CATALOGUE_METRICS, run_category_values

PER_USER = (*ACCURACY_METRICS, "novelty", *CATALOGUE_METRICS)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values: sorted p_(i) * (m - i), running max, capped at 1."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adj
    return out


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired tests of ``b - a`` (``[users]`` each): mean diff, 95% CI, d_z, t and Wilcoxon p."""
    d = np.asarray(b, float) - np.asarray(a, float)
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if n > 1 else np.nan
    p_t = float(stats.ttest_rel(b, a).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    p_w = float(stats.wilcoxon(b, a).pvalue) if np.any(d != 0) else 1.0
    return {
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
        "diff": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "d_z": mean / sd if sd > 0 else np.nan,
        "p_t": p_t,
        "p_wilcoxon": p_w,
    }


def split_hash(run: Path) -> str:
    """SHA-256 of the run's saved train/valid/test parquet files (DataError if missing)."""
    h = hashlib.sha256()
    for part in ("train", "valid", "test"):
        path = run / "split" / f"{part}.parquet"
        if not path.is_file():
            raise DataError(f"{path}: missing; cannot test significance without the saved split")
        frame = pd.read_parquet(path, columns=["user_id", "item_id"])
        h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def per_user_metrics(run: str | Path, ks: list[int]) -> pd.DataFrame:
    """One row per evaluated user (index ``user_id``), columns ``test/<metric>@k``."""
    run = Path(run)
    rec_path = run / "recommendations.parquet"
    if not rec_path.is_file():
        raise DataError(f"{rec_path}: missing; the run saved no recommendations")
    split_hash(run)  # clear error for a missing split file
    rec = pd.read_parquet(rec_path).sort_values(["user_id", "rank"], kind="stable")
    train = pd.read_parquet(run / "split" / "train.parquet", columns=["user_id", "item_id"])
    test = pd.read_parquet(run / "split" / "test.parquet", columns=["user_id", "item_id"])
    rec, train, test = (f.astype({"user_id": str, "item_id": str}) for f in (rec, train, test))
    k_max = int(rec["rank"].max())
    if max(ks) > k_max:
        raise DataError(f"{rec_path}: lists have {k_max} items, fewer than @{max(ks)}")
    truth = test.groupby("user_id")["item_id"].agg(set)
    users = [u for u in rec["user_id"].unique() if u in truth.index]
    lists = rec[rec["user_id"].isin(users)].groupby("user_id", sort=False)["item_id"].agg(list)
    lists = lists.loc[users]
    hits = torch.tensor(
        [[float(i in truth[u]) for i in items[:k_max]] for u, items in lists.items()],
        dtype=torch.float64,
    )
    n_truth = torch.tensor([float(len(truth[u])) for u in users], dtype=torch.float64)
    pop = train.drop_duplicates().groupby("item_id")["user_id"].size()
    n_train_users = train["user_id"].nunique()
    pop_info = self_information(torch.tensor(pop.to_numpy()), n_train_users).tolist()
    info_of = dict(zip(pop.index, pop_info, strict=True))
    unseen = float(self_information(torch.zeros(1), n_train_users)[0])
    info = torch.tensor(
        [[float(info_of.get(i, unseen)) for i in items[:k_max]] for items in lists],
        dtype=torch.float64,
    )
    values = {"novelty": novelty(info, ks).numpy()}
    values |= {name: accuracy(name, hits, n_truth, ks).numpy() for name in ACCURACY_METRICS}
    values |= run_category_values(run, list(lists), [truth[u] for u in users], ks)
    cols = {}
    for name in PER_USER:
        for j, k in enumerate(ks):
            if name in values:
                cols[f"test/{name}@{k}"] = values[name][:, j]
    return pd.DataFrame(cols, index=pd.Index(users, name="user_id"))


def compare_runs(run_a: str | Path, run_b: str | Path, ks: list[int]) -> pd.DataFrame:
    """One row per metric: means, diff (B - A) with 95% CI, d_z, p-values and Holm-adjusted ones
    (Holm over every metric both runs have).

    DataError (one line) when the runs' saved splits differ, their users differ, or a file is
    missing."""
    a_dir, b_dir = Path(run_a), Path(run_b)
    if split_hash(a_dir) != split_hash(b_dir):
        raise DataError(f"{a_dir} and {b_dir} do not share the same saved split (contents differ)")
    a, b = per_user_metrics(a_dir, ks), per_user_metrics(b_dir, ks)
    if set(a.index) != set(b.index):
        only = len(set(a.index) ^ set(b.index))
        raise DataError(f"{a_dir} and {b_dir} evaluate different users ({only} not in both)")
    b = b.loc[a.index]
    both = [m for m in a.columns if m in b.columns]  # a run without its catalogue lacks some
    rows = [{"metric": m, **paired_tests(a[m].to_numpy(), b[m].to_numpy())} for m in both]
    out = pd.DataFrame(rows)
    out.insert(1, "n_users", len(a))
    out["p_t_holm"] = holm(out["p_t"].to_numpy())
    out["p_wilcoxon_holm"] = holm(out["p_wilcoxon"].to_numpy())
    return out
