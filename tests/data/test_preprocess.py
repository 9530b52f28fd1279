"""preprocess: each step against hand-made frames, k-core fixed point, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divrec.data.dataset import RecDataset
from divrec.data.preprocess import preprocess
from divrec.errors import ConfigError, DataError


def _ds(rows, items=None, users=None) -> RecDataset:
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    ids = items or sorted(set(inter["item_id"]))
    cat = pd.DataFrame(
        {"item_id": ids, "title": [f"T{i}" for i in ids], "categories": [[]] * len(ids)}
    )
    return RecDataset("toy", inter, cat, users)


def _pairs(ds: RecDataset) -> list[tuple]:
    return list(ds.interactions.itertuples(index=False, name=None))


# (u1, a) appears twice: rated 5 at t=10, then 2 at t=20.
DUP_ROWS = [
    ("u1", "a", 5, 10),  # row 0
    ("u1", "a", 2, 20),  # row 1
    ("u1", "b", 4, 5),  # row 2
    ("u2", "a", 4, 1),  # row 3
    ("u2", "c", 1, 2),  # row 4
    ("u3", "b", 5, 3),  # row 5
]


def test_dedup_latest_first_none():
    # latest keeps row 1 (t=20 > 10) and drops row 0; the others keep their order
    out, st = preprocess(_ds(DUP_ROWS))
    assert _pairs(out) == [
        ("u1", "a", 2.0, 20),
        *[(u, i, float(r), t) for u, i, r, t in DUP_ROWS[2:]],
    ]
    assert st["removed_dedup"] == 1 and st["rows_in"] == 6 and st["rows_out"] == 5
    # first keeps row 0 (t=10) and drops row 1
    out, st = preprocess(_ds(DUP_ROWS), dedup="first")
    assert _pairs(out)[0] == ("u1", "a", 5.0, 10) and len(out.interactions) == 5
    out, st = preprocess(_ds(DUP_ROWS), dedup="none")
    assert len(out.interactions) == 6 and st["removed_dedup"] == 0


def test_dedup_tie_keeps_later_row_for_latest():
    rows = [("u1", "a", 3, 7), ("u1", "a", 4, 7), ("u1", "b", 1, 1)]
    out, _ = preprocess(_ds(rows))  # same timestamp: the later row (rating 4) is "latest"
    assert _pairs(out) == [("u1", "a", 4.0, 7), ("u1", "b", 1.0, 1)]
    out, _ = preprocess(_ds(rows), dedup="first")
    assert _pairs(out) == [("u1", "a", 3.0, 7), ("u1", "b", 1.0, 1)]


def test_min_rating_after_dedup():
    # latest: (u1,a) is now rated 2, so min_rating=4 drops it together with (u2,c, rating 1):
    # left (u1,b,4), (u2,a,4), (u3,b,5)
    out, st = preprocess(_ds(DUP_ROWS), min_rating=4)
    assert [(u, i) for u, i, _, _ in _pairs(out)] == [("u1", "b"), ("u2", "a"), ("u3", "b")]
    assert st["removed_dedup"] == 1 and st["removed_min_rating"] == 2
    # first: (u1,a) keeps its 5 -> 4 rows left
    out, st = preprocess(_ds(DUP_ROWS), min_rating=4, dedup="first")
    assert len(out.interactions) == 4 and st["removed_min_rating"] == 1


def test_kcore_needs_several_rounds():
    # u1, u2 rate a,b,c; u3 rates a,d; u4 rates d.  k=2 for users and items:
    # round 1: u4 has 1 row -> out (d still has 2 when counted) ; round 2: d has 1 -> out;
    # round 3: u3 has 1 row (a) -> out; round 4: nothing changes.  Core: {u1,u2} x {a,b,c}.
    rows = [(u, i, 1, 0) for u in ("u1", "u2") for i in "abc"]
    rows += [("u3", "a", 1, 0), ("u3", "d", 1, 0), ("u4", "d", 1, 0)]
    out, st = preprocess(_ds(rows), kcore_user=2, kcore_item=2)
    assert sorted((u, i) for u, i, _, _ in _pairs(out)) == [
        (u, i) for u in ("u1", "u2") for i in "abc"
    ]
    assert st["removed_kcore"] == 3 and st["kcore_iterations"] == 4
    assert st["users_out"] == 2 and st["items_out"] == 3
    # the catalogue keeps d (cold-start items need their text) unless asked otherwise
    assert "d" in set(out.items["item_id"])
    out, st = preprocess(
        _ds(rows), kcore_user=2, kcore_item=2, drop_items_without_interactions=True
    )
    assert sorted(out.items["item_id"]) == ["a", "b", "c"] and st["catalogue_items_dropped"] == 1


def _core_reference(pairs: set[tuple[str, str]], ku: int, ki: int) -> set[tuple[str, str]]:
    """Brute force: remove one offending user or item at a time until none is left."""
    pairs = set(pairs)
    while True:
        uc, ic = {}, {}
        for u, i in pairs:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        bad_u = next((u for u, c in sorted(uc.items()) if c < ku), None)
        if bad_u is not None:
            pairs = {p for p in pairs if p[0] != bad_u}
            continue
        bad_i = next((i for i, c in sorted(ic.items()) if c < ki), None)
        if bad_i is None:
            return pairs
        pairs = {p for p in pairs if p[1] != bad_i}


@pytest.mark.parametrize("seed", range(5))
def test_kcore_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pairs = {(f"u{rng.integers(30)}", f"i{rng.zipf(1.6) % 40}") for _ in range(250)}
    rows = [(u, i, 1.0, 0) for u, i in sorted(pairs)]
    ku, ki = 3 + seed % 2, 2 + seed % 3
    want = _core_reference(pairs, ku, ki)
    try:
        out, _ = preprocess(_ds(rows), kcore_user=ku, kcore_item=ki)
    except DataError:
        assert want == set()
        return
    got = set(zip(out.interactions["user_id"], out.interactions["item_id"], strict=True))
    assert got == want
    # fixed point: every survivor meets its threshold
    assert out.interactions.groupby("user_id").size().min() >= ku
    assert out.interactions.groupby("item_id").size().min() >= ki


def test_min_user_history_and_users_frame():
    # u1: 1 row, u2: 2 rows, u3: 3 rows; min_user_history=3 keeps only u3's 3 rows
    rows = [("u1", "a", 1, 0), ("u2", "a", 1, 0), ("u2", "b", 1, 1)]
    rows += [("u3", "a", 1, 0), ("u3", "b", 1, 1), ("u3", "c", 1, 2)]
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u9"], "region": ["x"] * 4})
    out, st = preprocess(_ds(rows, users=users), min_user_history=3)
    assert set(out.interactions["user_id"]) == {"u3"} and st["removed_min_user_history"] == 3
    assert list(out.users["user_id"]) == ["u3"]  # u9 had no interactions at all
    assert len(out.items) == 3  # catalogue untouched


def test_min_user_history_restores_item_core():
    # kcore_item=2, min_user_history=2.  u1:{a,b}, u2:{a,b}, u3:{c}, u4:{c}... u3 and u4 have
    # 1 row each -> dropped by min_user_history; then c has 0 rows and a,b still 2: fine.
    # u5:{a,d}, u6:{d}: u6 is dropped (1 row), d then has 1 row -> d must go, then u5 has 1
    # row -> u5 goes.  Result {u1,u2} x {a,b}.
    rows = [(u, i, 1, 0) for u in ("u1", "u2") for i in "ab"]
    rows += [("u3", "c", 1, 0), ("u4", "c", 1, 0), ("u5", "a", 1, 0), ("u5", "d", 1, 0)]
    rows += [("u6", "d", 1, 0)]
    out, st = preprocess(_ds(rows), kcore_item=2, min_user_history=2)
    assert sorted(zip(out.interactions["user_id"], out.interactions["item_id"], strict=True)) == [
        (u, i) for u in ("u1", "u2") for i in "ab"
    ]
    # k-core alone (items >= 2) removes nothing: a:3, b:2, c:2, d:2
    assert st["removed_kcore"] == 0 and st["removed_min_user_history"] == 5


def test_empty_after_filter_names_step_and_thresholds():
    with pytest.raises(DataError, match=r"min_rating.*min_rating=9"):
        preprocess(_ds(DUP_ROWS), min_rating=9)
    with pytest.raises(DataError, match=r"'kcore'.*kcore_user=50"):
        preprocess(_ds(DUP_ROWS), kcore_user=50)
    with pytest.raises(DataError, match=r"min_user_history=10"):
        preprocess(_ds(DUP_ROWS), min_user_history=10)


@pytest.mark.parametrize(
    "kwargs",
    [{"dedup": "newest"}, {"kcore_user": -1}, {"kcore_item": 1.5}, {"min_rating": float("nan")}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        preprocess(_ds(DUP_ROWS), **kwargs)


def test_input_dataset_unchanged():
    ds = _ds(DUP_ROWS)
    before = ds.interactions.copy()
    preprocess(ds, min_rating=4, kcore_user=1)
    pd.testing.assert_frame_equal(ds.interactions, before)
