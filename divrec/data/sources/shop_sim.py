"""``shop_sim``: a simulated online shop with known user interests (no download needed).

Generative process (all randomness from one ``numpy.random.default_rng(seed)``, drawn in the
order listed, so the same arguments always give identical frames):

1. **Category tree.** A hard-coded tree ``department > subcategory > leaf`` (8 departments,
   58 leaves, e.g. ``Electronics > Audio > Headphones``). Each leaf has a vocabulary: nouns
   (the first is the *leaf noun*) and adjectives; each department has brands, attributes
   (colour, size, material, format, ...) and a price range.
2. **Leaf preference.** Leaves are put in a random order; leaf at rank ``r`` (1-based) gets
   preference ``r ** -0.8``: a mild long tail across categories.
3. **Items.** Every leaf gets one item, the remaining ``n_items - 58`` are spread over leaves
   with shares ``~ Dirichlet(3, ..., 3)`` (multinomial); the assignment is shuffled so ids are
   not grouped by leaf. Item popularity is Zipf: a random permutation of ranks ``1..n_items``
   and weight ``rank ** -zipf_a``. Within a leaf, items are drawn proportionally to that
   weight (so each leaf has its own long tail). Item quality ``q ~ N(0, 0.35)``.
4. **Item text.** ``title = "{brand} {Adjective} {Leaf Noun}, {first attribute value}"``, so
   the title always names the leaf noun; ``description`` uses a second adjective, a synonym
   noun, the subcategory and department names and all attribute values; ``attributes`` is
   ``"colour: Black; size: M"`` (one uniform value per department attribute), ``brand`` uniform
   over the department's brands. ``price`` is
   log-uniform in the department's range, formatted ``"49.99"``.
5. **Users.** ``k ~ U{n_interests[0]..n_interests[1]}`` interest leaves, drawn without
   replacement with probability proportional to leaf preference (Gumbel top-k); interest
   weights ``~ Dirichlet(1, ..., 1)`` over the ``k`` leaves. ``age_group`` and ``region`` are
   categorical draws.
6. **Activity.** Every user gets ``m = clip(n_interactions // n_users, 1, 5)`` interactions
   plus a multinomial share of the rest with lognormal(0, 0.8) activity weights; counts are
   capped at ``min(n_items, max(n_items // 4, 3 * n_interactions // n_users))`` and the excess
   is re-dealt (multinomial by activity) to users under the cap, so the total is exact.
7. **Interactions.** Each draw is, with probability ``noise`` (default 0.1), an item from the
   global popularity distribution (off-interest noise); otherwise an interest leaf drawn by the
   user's weights and an item from that leaf by within-leaf popularity. Repeated (user, item)
   pairs are discarded and the deficit redrawn (30 rounds); a deficit still left (a heavy user
   who exhausted their interest leaves) is filled with unseen items drawn without replacement
   from global popularity. So pairs are unique and every user gets exactly their count.
8. **Time.** Each user starts at ``start_timestamp + U[0, 180 days)`` and successive
   interactions (in draw order) are ``1 + floor(Exp(mean 2 days))`` seconds apart: strictly
   increasing per user. Rows are sorted by timestamp (stable).
9. **Ratings.** ``clip(rint(mu + q_item + N(0, 0.7)), 1, 5)`` with ``mu = 4.2`` when the
   item's leaf is one of the user's interests and ``2.6`` otherwise.

With ``render_images=true`` each item also gets an ``image`` column: the path of a small PNG
whose shape is its department's and whose colour is its leaf's, plus noise
(:mod:`divrec.data.sources.shop_images`, its own random generator: nothing above changes).

``extra["user_interests"]`` (user_id -> leaf path strings) and ``extra["user_interest_weights"]``
(user_id -> floats, same order) hold the ground truth; ``extra["category_tree"]`` the tree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from divrec.data.dataset import CATEGORY_SEP, RecDataset
from divrec.data.sources.shop_images import render_shop_images
from divrec.data.sources.shop_vocab import AGE_GROUPS, AGE_PROBS, REGION_PROBS, REGIONS, TREE
from divrec.errors import ConfigError

DAY = 86_400


def category_tree() -> dict[str, dict[str, list[str]]]:
    """The hard-coded tree: department -> subcategory -> leaf names."""
    return {
        d: {s: [leaf[0] for leaf in leaves] for s, leaves in spec[3].items()}
        for d, spec in TREE.items()
    }


def _leaves() -> list[dict]:
    """Flat list of leaves with their path, vocabulary and department information."""
    out = []
    for dept, (brands, attrs, prices, subs) in TREE.items():
        for sub, leaves in subs.items():
            for name, nouns, adjs in leaves:
                out.append(
                    {
                        "path": CATEGORY_SEP.join((dept, sub, name)),
                        "dept": dept,
                        "sub": sub,
                        "nouns": nouns.split("|"),
                        "adjs": adjs.split("|"),
                        "brands": brands.split("|"),
                        "attrs": {k: v.split("|") for k, v in attrs.items()},
                        "prices": prices,
                    }
                )
    return out


def _article(word: str) -> str:
    return "An" if word[:1] in "aeiou" else "A"


def _cap(word: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in word.split(" "))


def _check(n_items, n_users, n_interactions, n_interests, zipf_a, noise, n_leaves) -> None:
    if n_items < n_leaves:
        raise ConfigError(f"shop_sim: n_items={n_items} must be >= {n_leaves} (one per leaf)")
    if n_users < 1 or not n_users <= n_interactions <= n_users * n_items // 2:
        raise ConfigError(
            f"shop_sim: need n_users >= 1 and n_users <= n_interactions <= n_users * n_items / 2"
            f", got n_users={n_users}, n_items={n_items}, n_interactions={n_interactions}"
        )
    lo, hi = (int(v) for v in n_interests)
    if not 1 <= lo <= hi <= n_leaves:
        raise ConfigError(f"shop_sim: n_interests={tuple(n_interests)} must be 1 <= lo <= hi")
    if zipf_a <= 0:
        raise ConfigError(f"shop_sim: zipf_a={zipf_a} must be > 0")
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"shop_sim: noise={noise} must be in [0, 1]")


def _item_frame(rng: np.random.Generator, leaves: list[dict], leaf_of_item: np.ndarray):
    """Titles, descriptions, brands, attributes and prices (one Python loop, ~ms per 1000)."""
    n = len(leaf_of_item)
    u = rng.random((n, 7))  # brand, adj1, adj2, synonym, price, attribute 1, attribute 2
    width = max(4, len(str(n)))
    rows = []
    for j in range(n):
        lf = leaves[leaf_of_item[j]]
        brand = lf["brands"][int(u[j, 0] * len(lf["brands"]))]
        a1 = int(u[j, 1] * len(lf["adjs"]))
        a2 = (a1 + 1 + int(u[j, 2] * (len(lf["adjs"]) - 1))) % len(lf["adjs"])
        syn = lf["nouns"][1 + int(u[j, 3] * (len(lf["nouns"]) - 1))]
        lo, hi = lf["prices"]
        price = math.floor(lo * (hi / lo) ** u[j, 4]) + 0.99  # log-uniform in [lo, hi)
        cols = u[j, 5 : 5 + len(lf["attrs"])]  # departments have <= 2 attributes
        attrs = {k: v[int(x * len(v))] for (k, v), x in zip(lf["attrs"].items(), cols, strict=True)}
        first = next(iter(attrs.values()))
        attr_txt = "; ".join(f"{k}: {v}" for k, v in attrs.items())
        rows.append(
            {
                "item_id": f"i{j + 1:0{width}d}",
                "title": f"{brand} {_cap(lf['adjs'][a1])} {_cap(lf['nouns'][0])}, {first}",
                "description": (
                    f"{_article(lf['adjs'][a2])} {lf['adjs'][a2]} {syn} by {brand}. Part of our "
                    f"{lf['sub']} range in {lf['dept']}. {attr_txt[:1].upper()}{attr_txt[1:]}."
                ),
                "brand": brand,
                "price": f"{price:.2f}",
                "attributes": attr_txt,
                "categories": [lf["path"]],
            }
        )
    return pd.DataFrame(rows)


def _draw(rng, users, noise, cum_w, interests, leaf_cum, leaf_start, by_leaf, pop_cum):
    """One vectorised round of draws; users: [draws] user indices -> [draws] item indices."""
    d = len(users)
    is_noise = rng.random(d) < noise
    # interest slot by the user's weights: count cumulative weights below u
    slot = (rng.random(d)[:, None] > cum_w[users]).sum(axis=1)
    slot = np.minimum(slot, (interests[users] >= 0).sum(axis=1) - 1)
    leaf = interests[users, slot]
    # item within leaf: leaf_cum holds leaf index + within-leaf cumulative share
    target = leaf + rng.random(d)
    pos = np.searchsorted(leaf_cum, target, side="right")
    pos = np.clip(pos, leaf_start[leaf], leaf_start[leaf + 1] - 1)
    noise_item = np.searchsorted(pop_cum, rng.random(d), side="right")
    return np.where(is_noise, np.minimum(noise_item, len(pop_cum) - 1), by_leaf[pos])


def load_shop_sim(
    n_items: int = 5000,
    n_users: int = 2000,
    n_interactions: int = 60000,
    n_interests: tuple[int, int] = (2, 4),
    zipf_a: float = 1.1,
    seed: int = 0,
    start_timestamp: int = 1_600_000_000,
    noise: float = 0.1,
    render_images: bool = False,
    image_size: int = 32,
    image_dir: str | None = None,
) -> RecDataset:
    """Generate the simulated shop (see module docstring); deterministic in all arguments.

    ``render_images``: add an ``image`` column, the path of a ``image_size`` pixel PNG per
    item drawn from its category, written once under ``image_dir`` (:mod:`.shop_images`)."""
    leaves = _leaves()
    n_leaves = len(leaves)
    _check(n_items, n_users, n_interactions, n_interests, zipf_a, noise, n_leaves)
    rng = np.random.default_rng(seed)

    # 2. leaf preference, 3. items per leaf and Zipf popularity
    leaf_pref = (rng.permutation(n_leaves) + 1.0) ** -0.8
    shares = rng.dirichlet(np.full(n_leaves, 3.0))
    sizes = 1 + rng.multinomial(n_items - n_leaves, shares)
    leaf_of_item = rng.permutation(np.repeat(np.arange(n_leaves), sizes))
    pop = (rng.permutation(n_items) + 1.0) ** -float(zipf_a)
    quality = rng.normal(0.0, 0.35, n_items)
    items = _item_frame(rng, leaves, leaf_of_item)
    if render_images:  # its own generator: the shop's draws are the same with or without
        depts = list(TREE)
        dept_of_leaf = np.array([depts.index(lf["dept"]) for lf in leaves])
        items["image"] = render_shop_images(
            items["item_id"].tolist(), leaf_of_item, dept_of_leaf, seed, image_size, image_dir
        )

    # items sorted by leaf; leaf_cum = leaf + within-leaf cumulative share (ends at leaf + 1)
    by_leaf = np.argsort(leaf_of_item, kind="stable")
    leaf_start = np.concatenate([[0], np.cumsum(sizes)])
    w = pop[by_leaf] / np.repeat(np.add.reduceat(pop[by_leaf], leaf_start[:-1]), sizes)
    within = np.cumsum(w) - np.repeat(np.cumsum(w)[leaf_start[:-1]] - w[leaf_start[:-1]], sizes)
    leaf_cum = leaf_of_item[by_leaf] + within
    pop_cum = np.cumsum(pop) / pop.sum()

    # 5. users: k interests by Gumbel top-k on log preference, Dirichlet(1) weights
    lo, hi = (int(v) for v in n_interests)
    k = rng.integers(lo, hi + 1, n_users)
    keys = np.log(leaf_pref)[None, :] + rng.gumbel(size=(n_users, n_leaves))
    top = np.argsort(-keys, axis=1)[:, :hi]
    valid_slot = np.arange(hi)[None, :] < k[:, None]
    interests = np.where(valid_slot, top, -1)
    gam = np.where(valid_slot, rng.gamma(1.0, size=(n_users, hi)), 0.0)
    weights = gam / gam.sum(axis=1, keepdims=True)
    cum_w = np.cumsum(weights, axis=1)
    age = rng.choice(len(AGE_GROUPS), n_users, p=AGE_PROBS)
    region = rng.choice(len(REGIONS), n_users, p=REGION_PROBS)

    # 6. activity
    m = int(np.clip(n_interactions // n_users, 1, 5))
    activity = rng.lognormal(0.0, 0.8, n_users)
    counts = m + rng.multinomial(n_interactions - m * n_users, activity / activity.sum())
    cap = min(n_items, max(n_items // 4, 3 * n_interactions // n_users))
    while (counts > cap).any():  # move the excess of capped users to the others
        excess = int(np.maximum(counts - cap, 0).sum())
        counts = np.minimum(counts, cap)
        room = np.where(counts < cap, activity, 0.0)
        counts += rng.multinomial(excess, room / room.sum())

    # 7. draws with redraw of duplicate pairs; 8. time; 9. ratings
    pair_u, pair_i = _unique_pairs(
        rng, counts, noise, cum_w, interests, leaf_cum, leaf_start, by_leaf, pop_cum
    )
    order = np.argsort(pair_u, kind="stable")  # per-user sequence = acceptance order
    pair_u, pair_i = pair_u[order], pair_i[order]
    ts = _timestamps(rng, pair_u, start_timestamp, n_users)
    in_interest = (interests[pair_u] == leaf_of_item[pair_i][:, None]).any(axis=1)
    mu = np.where(in_interest, 4.2, 2.6) + quality[pair_i]
    rating = np.clip(np.rint(mu + rng.normal(0.0, 0.7, len(pair_u))), 1, 5)

    uw = max(4, len(str(n_users)))
    user_ids = np.array([f"u{j + 1:0{uw}d}" for j in range(n_users)], dtype=object)
    inter = pd.DataFrame(
        {
            "user_id": user_ids[pair_u],
            "item_id": items["item_id"].to_numpy()[pair_i],
            "rating": rating,
            "timestamp": ts,
        }
    )
    inter = inter.iloc[np.argsort(ts, kind="stable")].reset_index(drop=True)
    users_df = pd.DataFrame(
        {
            "user_id": user_ids,
            "age_group": np.array(AGE_GROUPS)[age],
            "region": np.array(REGIONS)[region],
        }
    )
    paths = [lf["path"] for lf in leaves]
    slots = interests >= 0
    extra = {
        "user_interests": {
            u: [paths[x] for x in interests[j][slots[j]]] for j, u in enumerate(user_ids)
        },
        "user_interest_weights": {u: weights[j][slots[j]].tolist() for j, u in enumerate(user_ids)},
        "category_tree": category_tree(),
    }
    return RecDataset("shop_sim", inter, items, users_df, extra)


def _unique_pairs(rng, counts, noise, cum_w, interests, leaf_cum, leaf_start, by_leaf, pop_cum):
    """Draw ``counts[u]`` distinct items per user: mixture draws with duplicates redrawn (30
    rounds), then any remaining deficit filled from global popularity without replacement."""
    n_users, n_items = len(counts), len(pop_cum)
    acc_u = np.zeros(0, dtype=np.int64)
    acc_i = np.zeros(0, dtype=np.int64)
    deficit = counts.copy()
    for _ in range(30):
        if deficit.sum() == 0:
            break
        du = np.repeat(np.arange(n_users), deficit)
        di = _draw(rng, du, noise, cum_w, interests, leaf_cum, leaf_start, by_leaf, pop_cum)
        keys = np.concatenate([acc_u * n_items + acc_i, du * n_items + di])
        _, first = np.unique(keys, return_index=True)
        new = np.sort(first[first >= len(acc_u)]) - len(acc_u)
        acc_u = np.concatenate([acc_u, du[new]])
        acc_i = np.concatenate([acc_i, di[new]])
        deficit = counts - np.bincount(acc_u, minlength=n_users)
    short = np.flatnonzero(deficit)
    if len(short) == 0:
        return acc_u, acc_i
    # Gumbel top-k over each short user's unseen items: keys [short users, items]
    keys = np.log(np.diff(np.r_[0.0, pop_cum]) + 1e-300) + rng.gumbel(size=(len(short), n_items))
    row_of = np.full(n_users, -1)
    row_of[short] = np.arange(len(short))
    seen = row_of[acc_u] >= 0
    keys[row_of[acc_u[seen]], acc_i[seen]] = -np.inf
    ranked = np.argsort(-keys, axis=1, kind="stable")
    take = np.arange(n_items)[None, :] < deficit[short][:, None]
    fill_u = np.repeat(short, deficit[short])
    return np.concatenate([acc_u, fill_u]), np.concatenate([acc_i, ranked[take]])


def _timestamps(rng, users: np.ndarray, start_timestamp: int, n_users: int) -> np.ndarray:
    """users: [n] sorted user indices -> [n] int64 times, strictly increasing per user."""
    n = len(users)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    gaps = 1 + np.floor(rng.exponential(2.0 * DAY, n)).astype(np.int64)
    cs = np.cumsum(gaps)
    offset = np.repeat(cs[starts] - gaps[starts], np.diff(np.r_[starts, n]))
    user_start = start_timestamp + rng.integers(0, 180 * DAY, n_users)
    return (user_start[users] + (cs - offset)).astype(np.int64)
