"""``sorted_codes``: integer codes in sorted id order, so that dedup and the split's canonical
order sort on integers instead of Python strings; results must equal the string sorts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divrec.data import preprocess as pre_mod
from divrec.data import split as split_mod
from divrec.data.dataset import sorted_codes

IDS = ["u10", "u9", "u1", "a", "ab", "Z", "é", "e", "u10", "", "Ω", "a", "zz", "u100"]


def _np_codes(values) -> np.ndarray:
    """Reference: ``np.unique`` over the strings (the code before ``sorted_codes``)."""
    return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1].astype(np.int64)


@pytest.mark.parametrize("dtype", [object, "string"])
def test_codes_follow_code_point_order(dtype):
    values = pd.Series(IDS, dtype=dtype)
    codes = sorted_codes(values)
    assert codes.tolist() == _np_codes(IDS).tolist()
    # by hand: "" < "Z" < "a" < "ab" < "e" < "u1" < "u10" < "u100" < "u9" < "zz" < "é" < "Ω"
    order = ["", "Z", "a", "ab", "e", "u1", "u10", "u100", "u9", "zz", "é", "Ω"]
    assert [order[c] for c in codes] == IDS


def _frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, 30, n)],  # "u3" vs "u29": string order
            "item_id": [f"i{x}" for x in rng.integers(0, 25, n)],
            "rating": rng.integers(1, 6, n).astype(float),
            "timestamp": rng.integers(0, 50, n),  # many ties: row position decides
        }
    )


@pytest.mark.parametrize("mode", ["latest", "first"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dedup_equals_the_string_sort(mode, seed):
    df = _frame(seed)
    pos = np.arange(len(df))
    ref_order = np.lexsort(  # the string lexsort dedup used before
        (pos, df["timestamp"].to_numpy(), df["item_id"].to_numpy(), df["user_id"].to_numpy())
    )
    s = df.iloc[ref_order]
    keep = ~s.duplicated(["user_id", "item_id"], keep="last" if mode == "latest" else "first")
    expected = df.iloc[np.sort(ref_order[keep.to_numpy()])]
    pd.testing.assert_frame_equal(pre_mod._dedup(df, mode), expected)
    assert len(expected) < len(df)  # the frame has duplicates to remove


@pytest.mark.parametrize("method", ["random", "temporal_loo", "cold_start_items"])
def test_split_equals_the_string_sort(method, monkeypatch):
    df = pre_mod._dedup(_frame(2), "latest")
    fast = split_mod.make_split(df, method, seed=7)
    monkeypatch.setattr(split_mod, "sorted_codes", _np_codes)
    slow = split_mod.make_split(df, method, seed=7)
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(fast, part), getattr(slow, part))
    assert fast.cold_items == slow.cold_items
