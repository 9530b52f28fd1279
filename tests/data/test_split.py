"""make_split / save / load / given splits: partition, rounding, determinism, cold items."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divrec.data.sources.shop_sim import load_shop_sim
from divrec.data.split import (
    SPLIT_METHODS,
    load_given_split,
    load_split,
    make_split,
    ratio_counts,
    save_split,
)
from divrec.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inter() -> pd.DataFrame:
    df = load_shop_sim(n_items=300, n_users=150, n_interactions=4000, seed=1).interactions
    return df.assign(row=np.arange(len(df)))  # extra column survives the split: tracks rows


def _recbole_counts(tot: int, ratios) -> list[int]:
    """RecBole 1.x Dataset._calcu_split_ids, re-typed as part sizes (reference)."""
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.6, 0.0, 0.4)])
def test_ratio_counts_match_recbole(ratios):
    got = ratio_counts(np.arange(0, 60), ratios)
    assert got.tolist() == [_recbole_counts(n, list(ratios)) for n in range(60)]


def test_ratio_counts_hand_values():
    # 8:1:1 -> n=1: (1,0,0); n=2: 0.1*2=0.2 in (0,1) so test gets 1, then train has 1 -> stop;
    # n=3: test +1, valid +1 -> (1,1,1); n=10: floor(1.0)=1 each -> (8,1,1); n=25: (21,2,2)
    got = ratio_counts(np.array([1, 2, 3, 10, 25]), (0.8, 0.1, 0.1)).tolist()
    assert got == [[1, 0, 0], [1, 0, 1], [1, 1, 1], [8, 1, 1], [21, 2, 2]]


@pytest.mark.parametrize("method", SPLIT_METHODS)
def test_partition_disjoint_and_complete(inter, method):
    s = make_split(inter, method=method, seed=3)
    rows = np.concatenate([s.train["row"], s.valid["row"], s.test["row"]])
    assert sorted(rows.tolist()) == list(range(len(inter)))  # each row exactly once
    for part in (s.train, s.valid, s.test):
        assert list(part.columns) == list(inter.columns)
        # rows are copied intact (not re-typed or re-ordered inside a row)
        pd.testing.assert_frame_equal(
            part.reset_index(drop=True),
            inter.set_index("row").loc[part["row"]].reset_index()[inter.columns],
        )
    assert len(s.test) > 0 and len(s.train) > len(s.test)


def test_random_per_user_counts_follow_recbole(inter):
    s = make_split(inter, "random", seed=0)
    counts = {p: getattr(s, p).groupby("user_id").size() for p in ("train", "valid", "test")}
    for u, n in inter.groupby("user_id").size().items():
        got = [int(counts[p].get(u, 0)) for p in ("train", "valid", "test")]
        assert got == _recbole_counts(int(n), [0.8, 0.1, 0.1])
    total = len(inter)
    assert abs(len(s.train) / total - 0.8) < 0.05
    assert abs(len(s.valid) / total - 0.1) < 0.03 and abs(len(s.test) / total - 0.1) < 0.03


def test_random_depends_on_seed_not_row_order(inter):
    a = make_split(inter, "random", seed=5)
    b = make_split(inter.sample(frac=1.0, random_state=0), "random", seed=5)
    for p in ("train", "valid", "test"):
        assert set(getattr(a, p)["row"]) == set(getattr(b, p)["row"])
    c = make_split(inter, "random", seed=6)
    assert set(a.test["row"]) != set(c.test["row"])


_CHILD = """
import hashlib, sys
from divrec.data.sources.shop_sim import load_shop_sim
from divrec.data.split import make_split
df = load_shop_sim(n_items=300, n_users=150, n_interactions=4000, seed=1).interactions
for method in ("random", "cold_start_items"):
    s = make_split(df, method, seed=11)
    for part in (s.train, s.valid, s.test):
        key = "|".join(part["user_id"] + ":" + part["item_id"])
        print(method, hashlib.sha256(key.encode()).hexdigest())
"""


def _digests(df: pd.DataFrame) -> list[str]:
    out = []
    for method in ("random", "cold_start_items"):
        s = make_split(df, method, seed=11)
        for part in (s.train, s.valid, s.test):
            key = "|".join(part["user_id"] + ":" + part["item_id"])
            out.append(f"{method} {hashlib.sha256(key.encode()).hexdigest()}")
    return out


def test_reproducible_across_processes():
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        res = subprocess.run(
            [sys.executable, "-c", _CHILD],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        runs.append(res.stdout.split("\n")[:-1])
    df = load_shop_sim(n_items=300, n_users=150, n_interactions=4000, seed=1).interactions
    assert runs[0] == runs[1] == _digests(df)


def test_temporal_loo_picks_last_items():
    # u1: times 5,1,9,9 -> order by (time, row): rows 1(t1),0(t5),2(t9),3(t9): tie at 9 broken
    # by row order, so row 3 is last -> test, row 2 -> valid, rows 0,1 -> train.
    # u2: two rows -> train + test (at least one training row, like RecBole's leave-one-out).
    # u3: one row -> train.
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2", "u2", "u3"],
            "item_id": ["a", "b", "c", "d", "a", "b", "a"],
            "rating": 1.0,
            "timestamp": [5, 1, 9, 9, 4, 3, 7],
        }
    )
    s = make_split(df, "temporal_loo")
    assert sorted(zip(s.test["user_id"], s.test["item_id"], strict=True)) == [
        ("u1", "d"),
        ("u2", "a"),
    ]
    assert list(zip(s.valid["user_id"], s.valid["item_id"], strict=True)) == [("u1", "c")]
    assert sorted(zip(s.train["user_id"], s.train["item_id"], strict=True)) == [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "b"),
        ("u3", "a"),
    ]


def test_temporal_loo_on_sim(inter):
    s = make_split(inter, "temporal_loo")
    last = inter.loc[inter.groupby("user_id")["timestamp"].idxmax(), ["user_id", "item_id"]]
    assert set(map(tuple, last.to_numpy())) == set(
        map(tuple, s.test[["user_id", "item_id"]].to_numpy())
    )
    assert s.valid["user_id"].is_unique and s.test["user_id"].is_unique


def test_global_temporal_cuts(inter):
    s = make_split(inter, "global_temporal", ratios=(0.7, 0.2, 0.1))
    assert s.train["timestamp"].max() <= s.valid["timestamp"].min()
    assert s.valid["timestamp"].max() <= s.test["timestamp"].min()
    n = len(inter)  # floor(0.2 n) valid, floor(0.1 n) test (exact shares > 1 so no bump)
    total = 0.7 + 0.2 + 0.1
    assert (len(s.valid), len(s.test)) == (int(0.2 / total * n), int(0.1 / total * n))


def test_cold_start_items(inter):
    s = make_split(inter, "cold_start_items", seed=2, cold_item_share=0.1)
    n_items = inter["item_id"].nunique()
    assert len(s.cold_items) == round(0.1 * n_items)
    cold = set(s.cold_items)
    assert not cold & set(s.train["item_id"])
    # every interaction with a cold item is in valid or test
    held = pd.concat([s.valid, s.test])
    assert (held["item_id"].isin(cold)).sum() == inter["item_id"].isin(cold).sum()
    # cold rows split about 50/50 between valid and test (ratios 0.1 : 0.1)
    n_cold_valid = s.valid["item_id"].isin(cold).sum()
    n_cold = inter["item_id"].isin(cold).sum()
    assert n_cold > 50 and 0.35 < n_cold_valid / n_cold < 0.65
    # warm rows follow the per-user random rule
    warm = inter[~inter["item_id"].isin(cold)]
    warm_train = s.train.groupby("user_id").size()
    for u, n in warm.groupby("user_id").size().items():
        assert warm_train.get(u, 0) == _recbole_counts(int(n), [0.8, 0.1, 0.1])[0]
    other = make_split(inter, "cold_start_items", seed=3, cold_item_share=0.1)
    assert other.cold_items != s.cold_items


def test_save_load_round_trip(tmp_path, inter):
    df = inter.drop(columns="row").copy()
    df.loc[df.index[:5], "user_id"] = "007"  # id that would lose its zeros as a number
    s = make_split(df, "cold_start_items", seed=1)
    save_split(s, tmp_path / "split")
    meta = json.loads((tmp_path / "split" / "split.json").read_text())
    assert meta["method"] == "cold_start_items" and meta["n_cold_items"] == len(s.cold_items)
    assert meta["sizes"] == s.sizes()
    back = load_split(tmp_path / "split")
    for p in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(back, p), getattr(s, p))
    assert back.method == s.method and back.cold_items == s.cold_items
    assert "007" in set(back.train["user_id"]) | set(back.valid["user_id"]) | set(
        back.test["user_id"]
    )
    assert not list((tmp_path / "split").glob("*.tmp"))


def test_load_split_errors(tmp_path):
    with pytest.raises(DataError, match="split.json"):
        load_split(tmp_path)


def test_given_split_csv(tmp_path):
    (tmp_path / "train.csv").write_text("user_id,item_id\n007,a\n007,b\nu2,a\n")
    (tmp_path / "valid.csv").write_text("user_id,item_id\n007,c\n")
    (tmp_path / "test.csv").write_text("user_id,item_id,rating,timestamp\nu2,d,4,100\n")
    s = load_given_split(tmp_path / "train.csv", tmp_path / "valid.csv", tmp_path / "test.csv")
    assert s.method == "given" and list(s.train["user_id"]) == ["007", "007", "u2"]
    assert s.train["rating"].tolist() == [1.0, 1.0, 1.0]  # implicit when no rating column
    assert s.train["timestamp"].tolist() == [0, 1, 2] and s.valid["timestamp"].tolist() == [3]
    assert s.test.iloc[0].tolist() == ["u2", "d", 4.0, 100]
    assert s.cold_items == ["c", "d"]  # in valid/test, never in train


def test_given_split_recbole_inter(tmp_path):
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    for part, body in (
        ("train", "1\t10\t4\t881250949\n1\t11\t5\t881250950\n"),
        ("valid", "1\t12\t3\t881250951\n"),
        ("test", "2\t10\t2\t881250952.0\n"),
    ):
        (tmp_path / f"ml.{part}.inter").write_text(head + body)
    s = load_given_split(*(tmp_path / f"ml.{p}.inter" for p in ("train", "valid", "test")))
    assert s.train["item_id"].tolist() == ["10", "11"] and s.train["user_id"].tolist() == ["1", "1"]
    assert s.test.iloc[0].tolist() == ["2", "10", 2.0, 881250952]
    assert s.train["timestamp"].dtype == np.int64 and s.cold_items == ["12"]


def test_given_split_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("user,item\n1,2\n")
    (tmp_path / "ok.csv").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match="bad.csv.*user_id"):
        load_given_split(tmp_path / "bad.csv", None, tmp_path / "ok.csv")
    with pytest.raises(DataError, match="not found"):
        load_given_split(tmp_path / "missing.csv", None, tmp_path / "ok.csv")
    s = load_given_split(tmp_path / "ok.csv", None, tmp_path / "ok.csv")
    assert len(s.valid) == 0 and list(s.valid.columns) == [
        "user_id",
        "item_id",
        "rating",
        "timestamp",
    ]


@pytest.mark.parametrize(
    "ratios", [(0.8, 0.2), (0.5, 0.5, 0.5), (-0.1, 0.6, 0.5), ("a", 0.5, 0.5), (0.8, 0.1, 0.05)]
)
def test_bad_ratios(inter, ratios):
    with pytest.raises(ConfigError, match="ratios"):
        make_split(inter, "random", ratios=ratios)


def test_bad_method_and_share(inter):
    with pytest.raises(ConfigError, match="temporal_loo"):  # message lists the methods
        make_split(inter, "leave_one_out")
    with pytest.raises(ConfigError, match="cold_item_share"):
        make_split(inter, "cold_start_items", cold_item_share=1.0)
    with pytest.raises(DataError, match="no interactions"):
        make_split(inter.iloc[:0], "random")
