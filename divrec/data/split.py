"""Train / valid / test splits of an interaction frame, plus saving and loading them.

Methods (``make_split``):

- ``random``: per user, shuffle the user's rows and cut by ``ratios`` with RecBole's rounding
  (``Dataset._calcu_split_ids`` used by ``split_by_ratio(group_by=user)``, RecBole 1.x): for a
  user with ``n`` rows, ``valid = floor(r_valid * n)``, ``test = floor(r_test * n)``,
  ``train = n - valid - test``; then, test first and valid second, a part whose exact share
  ``r * n`` lies strictly between 0 and 1 gets one row taken from train, as long as train still
  has more than one. For 8:1:1: n=1 -> (1,0,0), n=2 -> (1,0,1), n=3..10 -> (n-2,1,1),
  n=20 -> (16,2,2). Every user with >= 3 rows keeps >= 1 in train.
- ``temporal_loo``: per user, order by timestamp (ties: original row order); last -> test,
  second-to-last -> valid, the rest -> train. Like RecBole's leave-one-out, a user keeps at
  least one training row: n=1 -> train only, n=2 -> train + test.
- ``global_temporal``: order all rows by timestamp (ties: row order) and cut at positions given
  by ``ratios`` (same rounding as above on the total count).
- ``cold_start_items``: ``round(cold_item_share * n_items)`` items (at least one when the
  share is > 0), drawn uniformly, are *cold*: all their rows go to valid/test, never train. Per
  user, the cold rows are shuffled and ``floor(n_cold * p + U[0,1))`` of them go to valid, the
  rest to test, with ``p = r_valid / (r_valid + r_test)`` (0.5 when both are 0); stochastic
  rounding keeps the valid:test ratio unbiased for users with a single cold row. The other
  rows are split per user exactly like ``random``.

Determinism: rows are first put in a canonical order (stable sort by user_id, timestamp,
item_id, original position; string ids sort by code point), every random number comes from
``numpy.random.default_rng(seed)`` in that order, so a split depends only on the data and the
seed, never on ``PYTHONHASHSEED`` or the input row order of distinct rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from divrec.data.dataset import INTERACTION_COLUMNS, normalise_interactions, sorted_codes
from divrec.errors import ConfigError, DataError
from divrec.utils.io import write_json, write_parquet

SPLIT_METHODS = ("random", "temporal_loo", "global_temporal", "cold_start_items")
PARTS = ("train", "valid", "test")

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Three interaction frames (same columns as the input) and how they were made."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    method: str
    cold_items: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        """Rows per part."""
        return {p: len(getattr(self, p)) for p in PARTS}


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    try:
        vals = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ConfigError(f"split.ratios={ratios!r}: expected three numbers") from None
    if len(vals) != 3 or any(not np.isfinite(v) or v < 0 for v in vals):
        raise ConfigError(f"split.ratios={ratios!r}: expected three non-negative numbers")
    if abs(sum(vals) - 1.0) > 1e-6:
        raise ConfigError(f"split.ratios={ratios!r}: must sum to 1 (sum is {sum(vals):g})")
    return vals  # type: ignore[return-value]


def ratio_counts(tot: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """RecBole's per-group part sizes. tot: [groups] -> [groups, 3] (train, valid, test)."""
    tot = np.asarray(tot, dtype=np.int64)
    total = sum(float(x) for x in ratios)  # Python sum, exactly as RecBole normalises
    r = [float(x) / total for x in ratios]
    cnt = np.stack([np.floor(r[i] * tot).astype(np.int64) for i in range(3)], axis=1)
    cnt[:, 0] = tot - cnt[:, 1] - cnt[:, 2]
    for i in (2, 1):  # RecBole walks ratios[-1], ratios[-2]; stops once train has <= 1
        exact = r[i] * tot
        bump = (cnt[:, 0] > 1) & (exact > 0) & (exact < 1)
        cnt[bump, i] += 1
        cnt[bump, 0] -= 1
    return cnt


def _group_ranks(groups: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each row within its group when ordered by ``keys``; also group sizes per row."""
    order = np.lexsort((keys, groups))
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    lengths = np.diff(np.r_[starts, len(order)])
    rank_sorted = np.arange(len(order)) - np.repeat(starts, lengths)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = rank_sorted
    size = np.empty(len(order), dtype=np.int64)
    size[order] = np.repeat(lengths, lengths)
    return rank, size


def _assign_by_counts(groups, keys, ratios) -> np.ndarray:
    """Part (0 train, 1 valid, 2 test) per row: per group, ordered by keys, cut by counts."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    rank, size = _group_ranks(groups, keys)
    cnt = ratio_counts(size, ratios)
    return (rank >= cnt[:, 0]).astype(np.int64) + (rank >= cnt[:, 0] + cnt[:, 1])


def _canonical(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical row order and integer codes of users and items (sorted string order)."""
    pos = np.arange(len(df))
    ucode = sorted_codes(df["user_id"].astype(str).to_numpy())
    icode = sorted_codes(df["item_id"].astype(str).to_numpy())
    order = np.lexsort((pos, icode, df["timestamp"].to_numpy(), ucode))
    return order, ucode, icode


def _parts_random(df, ratios, rng) -> np.ndarray:
    order, ucode, _ = _canonical(df)
    keys = np.empty(len(df))
    keys[order] = rng.random(len(df))
    return _assign_by_counts(ucode, keys, ratios)


def _parts_temporal_loo(df) -> np.ndarray:
    _, ucode, _ = _canonical(df)
    rank, size = _group_ranks(ucode, _time_keys(df))
    from_end = size - 1 - rank  # 0 = last
    part = np.zeros(len(df), dtype=np.int64)
    part[(from_end == 0) & (size >= 2)] = 2
    part[(from_end == 1) & (size >= 3)] = 1
    return part


def _time_keys(df: pd.DataFrame) -> np.ndarray:
    """Order key: timestamp, ties by original row position (exact for int64 timestamps)."""
    ts = df["timestamp"].to_numpy().astype(np.int64)
    return np.lexsort((np.arange(len(df)), ts)).argsort()


def _parts_global_temporal(df, ratios) -> np.ndarray:
    return _assign_by_counts(np.zeros(len(df), dtype=np.int64), _time_keys(df), ratios)


def _parts_cold(df, ratios, rng, share) -> tuple[np.ndarray, list[str]]:
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"split.cold_item_share={share!r}: expected a number in [0, 1)")
    all_items = np.unique(df["item_id"].astype(str).to_numpy())
    n_cold = int(round(share * len(all_items)))
    n_cold = min(max(n_cold, 1 if share > 0 else 0), len(all_items) - 1)
    cold = np.sort(all_items[rng.permutation(len(all_items))[:n_cold]])
    order, ucode, _ = _canonical(df)
    keys = np.empty(len(df))
    keys[order] = rng.random(len(df))
    rounding = rng.random(int(ucode.max()) + 1 if len(df) else 0)  # one U[0,1) per user
    is_cold = np.isin(df["item_id"].astype(str).to_numpy(), cold)
    part = np.zeros(len(df), dtype=np.int64)
    warm = ~is_cold
    part[warm] = _assign_by_counts(ucode[warm], keys[warm], ratios)
    if is_cold.any():
        rv, rt = ratios[1], ratios[2]
        p = rv / (rv + rt) if rv + rt > 0 else 0.5
        rank, size = _group_ranks(ucode[is_cold], keys[is_cold])
        n_valid = np.floor(size * p + rounding[ucode[is_cold]]).astype(np.int64)
        part[is_cold] = np.where(rank < n_valid, 1, 2)
    return part, cold.tolist()


def make_split(
    interactions: pd.DataFrame,
    method: str = "random",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    cold_item_share: float = 0.1,
) -> Split:
    """Split interactions by ``method`` (see module docstring); each row lands in one part."""
    if method not in SPLIT_METHODS:
        raise ConfigError(f"split.method={method!r}: expected one of {list(SPLIT_METHODS)}")
    r = _check_ratios(ratios)
    missing = [c for c in INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        raise DataError(f"make_split: interactions miss column(s) {missing}")
    if len(interactions) == 0:
        raise DataError("make_split: no interactions to split")
    df = interactions.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    cold: list[str] = []
    if method == "random":
        part = _parts_random(df, r, rng)
    elif method == "temporal_loo":
        part = _parts_temporal_loo(df)
    elif method == "global_temporal":
        part = _parts_global_temporal(df, r)
    else:
        part, cold = _parts_cold(df, r, rng, float(cold_item_share))
    frames = [df[part == k].reset_index(drop=True) for k in range(3)]
    return Split(*frames, method=method, cold_items=cold)


def save_split(split: Split, folder: str | Path) -> None:
    """Write ``{train,valid,test}.parquet`` then ``split.json`` (its presence marks success)."""
    folder = Path(folder)
    for p in PARTS:
        write_parquet(folder / f"{p}.parquet", getattr(split, p))
    meta = {
        "method": split.method,
        "sizes": split.sizes(),
        "n_cold_items": len(split.cold_items),
        "cold_items": list(split.cold_items),
    }
    write_json(folder / "split.json", meta)


def load_split(folder: str | Path) -> Split:
    """Read a folder written by ``save_split``; checks sizes against ``split.json``."""
    folder = Path(folder)
    meta_path = folder / "split.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: missing; {folder} is not a saved split (or was cut short)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path}: invalid JSON ({e})") from None
    frames = {}
    for p in PARTS:
        path = folder / f"{p}.parquet"
        if not path.is_file():
            raise DataError(f"{path}: missing part of saved split")
        frames[p] = coerce_frame(pd.read_parquet(path), str(path))
        want = meta.get("sizes", {}).get(p)
        if want is not None and want != len(frames[p]):
            raise DataError(f"{path}: {len(frames[p])} rows but split.json says {want}")
    return Split(
        **frames,
        method=str(meta.get("method", "given")),
        cold_items=[str(i) for i in meta.get("cold_items", [])],
    )


def coerce_frame(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Interaction contract columns and dtypes; unlike RecDataset, an empty frame is allowed."""
    missing = [c for c in INTERACTION_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {missing}; have {list(df.columns)}")
    if len(df) == 0:
        empty = {"user_id": object, "item_id": object, "rating": "float64", "timestamp": "int64"}
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in empty.items()})
    return normalise_interactions(df, what)


def read_given_file(path: str | Path, time_offset: int) -> pd.DataFrame:
    """One part of a given split: ``.inter`` (RecBole, tab, ``name:type`` header) or CSV/TSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: given split file not found")
    inter = path.suffix == ".inter"
    sep = "\t" if inter or path.suffix in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot parse ({type(e).__name__}: {e})") from None
    df.columns = [str(c).strip().split(":", 1)[0] if inter else str(c).strip() for c in df.columns]
    if "user_id" not in df.columns or "item_id" not in df.columns:
        raise DataError(
            f"{path}: header needs user_id and item_id columns"
            f"{' (as user_id:token, item_id:token)' if inter else ''}; got {list(df.columns)}"
        )
    if "rating" not in df.columns:
        df["rating"] = 1.0
    if "timestamp" not in df.columns:
        df["timestamp"] = np.arange(len(df), dtype=np.int64) + time_offset
    else:
        df["timestamp"] = pd.to_numeric(df["timestamp"], errors="coerce").round()
    return coerce_frame(df, str(path))


def load_given_split(
    train_path: str | Path, valid_path: str | Path | None, test_path: str | Path
) -> Split:
    """A split supplied by the user: CSV/TSV (``user_id,item_id[,rating,timestamp]``) or
    RecBole atomic files (``NAME.train.inter`` ..., tab-separated ``name:type`` headers).

    Missing ratings become 1.0; missing timestamps become the row position counted over
    train, valid, test in that order. ``cold_items``: items in valid/test but not in train.
    """
    train = read_given_file(train_path, 0)
    valid = (
        read_given_file(valid_path, len(train))
        if valid_path is not None
        else coerce_frame(pd.DataFrame(columns=list(INTERACTION_COLUMNS)), "valid")
    )
    test = read_given_file(test_path, len(train) + len(valid))
    if len(train) == 0 or len(test) == 0:
        which = train_path if len(train) == 0 else test_path
        raise DataError(f"{which}: no interactions (a given split needs train and test rows)")
    seen = set(train["item_id"])
    cold = sorted(set(valid["item_id"]).union(test["item_id"]) - seen)
    return Split(train, valid, test, method="given", cold_items=cold)


def _pairs(df: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(df[["user_id", "item_id"]])


def given_split(
    train_file: str | None,
    valid_file: str | None,
    test_file: str | None,
    known_items: set[str],
) -> tuple[Split, dict[str, int]]:
    """Read a user-supplied split and check it like the splits divrec makes itself.

    No ``data.preprocess`` step (min_rating, dedup, k-core, min_user_history) applies to given
    files: their rows are the positives as written. Two checks do: rows whose item is not in
    the source's catalogue are dropped (per part, warned), and held-out rows that evaluation
    would mask as seen are dropped from the truth: valid rows whose (user, item) is in train,
    and test rows whose pair is in train or valid (test masks both). Such a row could never be
    hit yet would count in the truth, deflating recall. Returns ``(split, stats)`` with
    ``split/dropped_overlap_valid`` and ``split/dropped_overlap_test``.
    """
    if not train_file or not test_file:
        raise ConfigError("data.split: method=given needs train_file and test_file")
    split = load_given_split(train_file, valid_file, test_file)
    parts = {}
    for name in PARTS:
        df = getattr(split, name)
        unknown = ~df["item_id"].isin(known_items)
        if unknown.any():
            log.warning(
                "given %s split: dropped %d row(s) with items missing from the catalogue",
                name,
                int(unknown.sum()),
            )
        parts[name] = df[~unknown].reset_index(drop=True)
    train_pairs = _pairs(parts["train"])
    in_train = _pairs(parts["valid"]).isin(train_pairs)
    valid = parts["valid"][~in_train].reset_index(drop=True)
    test_pairs = _pairs(parts["test"])
    in_seen = test_pairs.isin(train_pairs) | test_pairs.isin(_pairs(valid))
    test = parts["test"][~in_seen].reset_index(drop=True)
    if len(test) == 0:
        raise DataError(f"{test_file}: every test row is also in train or valid")
    stats = {
        "split/dropped_overlap_valid": int(in_train.sum()),
        "split/dropped_overlap_test": int(in_seen.sum()),
    }
    if any(stats.values()):
        log.warning(
            "given split: dropped %d valid row(s) whose (user, item) is in train and %d test "
            "row(s) whose pair is in train or valid (evaluation masks them as seen)",
            *stats.values(),
        )
    out = Split(parts["train"], valid, test, method="given", cold_items=split.cold_items)
    return out, stats
