"""shop_sim: determinism, sizes, tree depth, long tail, time order, interests, text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divrec.data.sources.shop_sim import load_shop_sim
from divrec.data.sources.shop_vocab import TREE
from divrec.errors import ConfigError

SMALL = {"n_items": 300, "n_users": 120, "n_interactions": 3000}


@pytest.fixture(scope="module")
def default_ds():
    return load_shop_sim()  # its generation time is a `make bench` row (bench_latency)


def _leaf_of(ds) -> dict[str, str]:
    return dict(zip(ds.items["item_id"], ds.items["categories"].str[0], strict=True))


def test_same_seed_identical_and_other_seed_differs():
    a, b = load_shop_sim(seed=3, **SMALL), load_shop_sim(seed=3, **SMALL)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)
    assert a.extra == b.extra
    c = load_shop_sim(seed=4, **SMALL)
    assert not a.interactions.equals(c.interactions)
    assert a.extra["user_interests"] != c.extra["user_interests"]


def test_default_sizes(default_ds):
    ds = default_ds
    assert len(ds.items) == 5000
    assert len(ds.users) == 2000 and ds.interactions["user_id"].nunique() == 2000
    assert len(ds.interactions) == 60000
    assert ds.items["item_id"].iloc[0] == "i0001" and ds.users["user_id"].iloc[0] == "u0001"
    assert not ds.interactions.duplicated(["user_id", "item_id"]).any()


def test_small_sizes():
    ds = load_shop_sim(**SMALL)
    assert len(ds.items) == 300 and ds.interactions["user_id"].nunique() == 120
    assert len(ds.interactions) == 3000
    assert not ds.interactions.duplicated(["user_id", "item_id"]).any()


def test_category_tree_three_levels(default_ds):
    ds = default_ds
    cats = ds.items["categories"]
    assert (cats.map(len) == 1).all()
    levels = cats.str[0].str.split(" > ")
    assert (levels.map(len) == 3).all()
    assert levels.str[0].nunique() == 8
    assert 40 <= len(ds.category_names) <= 60
    assert "Electronics > Audio > Headphones" in ds.category_names
    # every leaf of the hard-coded tree has items
    n_leaves = sum(len(leaves) for spec in TREE.values() for leaves in spec[3].values())
    assert len(ds.category_names) == n_leaves


def test_zipf_long_tail(default_ds):
    ds = default_ds
    counts = ds.interactions["item_id"].value_counts().reindex(ds.items["item_id"], fill_value=0)
    top = np.sort(counts.to_numpy())[::-1][: len(ds.items) // 10]
    assert top.sum() / counts.sum() > 0.30
    # across categories too: the most popular leaf has several times the median leaf's volume
    per_leaf = ds.interactions["item_id"].map(_leaf_of(ds)).value_counts()
    assert per_leaf.max() > 3 * per_leaf.median()


def test_timestamps_strictly_increasing_per_user(default_ds):
    ds = default_ds
    df = ds.interactions
    assert df["timestamp"].is_monotonic_increasing  # rows come as a time-ordered log
    assert not df.duplicated(["user_id", "timestamp"]).any()
    assert df["timestamp"].min() > 1_600_000_000


def test_interactions_mostly_within_true_interests(default_ds):
    ds = default_ds
    interests = ds.extra["user_interests"]
    weights = ds.extra["user_interest_weights"]
    assert set(interests) == set(ds.users["user_id"])
    for u in list(interests)[:200]:
        assert 2 <= len(interests[u]) <= 4 and len(weights[u]) == len(interests[u])
        assert abs(sum(weights[u]) - 1) < 1e-9 and min(weights[u]) > 0
        assert len(set(interests[u])) == len(interests[u])
    leaf = _leaf_of(ds)
    df = ds.interactions
    hit = np.array(
        [leaf[i] in interests[u] for u, i in zip(df["user_id"], df["item_id"], strict=True)]
    )
    assert hit.mean() > 0.7
    # baseline: the same rows against another user's interests are rarely a hit
    users = sorted(interests)
    other = dict(zip(users, users[1:] + users[:1], strict=True))
    base = np.mean(
        [leaf[i] in interests[other[u]] for u, i in zip(df["user_id"], df["item_id"], strict=True)]
    )
    assert base < 0.3
    # ratings: in-interest rows are rated higher
    r = df["rating"].to_numpy()
    assert set(np.unique(r)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert r[hit].mean() > r[~hit].mean() + 1.0


def test_titles_name_the_leaf_noun(default_ds):
    ds = default_ds
    noun = {}
    for dept, spec in TREE.items():
        for sub, leaves in spec[3].items():
            for name, nouns, _adjs in leaves:
                noun[f"{dept} > {sub} > {name}"] = nouns.split("|")[0]
    titles = ds.items["title"].str.lower()
    leaf_nouns = ds.items["categories"].str[0].map(noun)
    assert all(n in t for n, t in zip(leaf_nouns, titles, strict=True))
    for col in ("description", "brand", "price", "attributes"):
        assert (ds.items[col].str.len() > 0).all()
    assert ds.items["price"].str.fullmatch(r"\d+\.99").all()
    assert set(ds.users.columns) >= {"user_id", "age_group", "region"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_items": 10},
        {"n_users": 0},
        {"n_users": 10, "n_interactions": 5},
        {"n_interests": (3, 2)},
        {"zipf_a": 0},
        {"noise": 1.5},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigError, match="shop_sim"):
        load_shop_sim(**{**SMALL, **kwargs})
