"""buy_again: hand-computed scores, the count matrix it is fitted on, and a repeat-purchase run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from divrec.baselines import BuyAgain, Pop, build_baseline
from divrec.baselines.module import training_matrix
from divrec.errors import ConfigError
from divrec.evaluation.pipeline import Ranker
from divrec.run.train import train

# training rows (user, item, rating) of 4 users x 5 items
ROWS = [
    (0, 1, 1.0),
    (0, 1, 2.0),
    (0, 1, 1.0),
    (0, 2, 5.0),
    (1, 2, 1.0),
    (1, 3, 1.0),
    (1, 3, 1.0),
    (2, 1, 1.0),
    (2, 3, 1.0),
    (3, 1, 1.0),
]
# users per item: i0 0, i1 3 (u0, u2, u3), i2 2, i3 2, i4 0 -> bonus pop / (3 + 1)
BONUS = [0.0, 3 / 4, 2 / 4, 2 / 4, 0.0]


def _fitted(weight: str) -> BuyAgain:
    users, items, ratings = (np.array(c) for c in zip(*ROWS, strict=True))
    model = build_baseline("buy_again", 4, 5, weight=weight)
    model.fit(training_matrix(model, users, items, ratings.astype(np.float32), (4, 5)))
    return model


def test_scores_count_rows_plus_popularity_bonus() -> None:
    got = _fitted("rows").score(torch.arange(4))
    counts = [[0, 3, 1, 0, 0], [0, 0, 1, 2, 0], [0, 1, 0, 1, 0], [0, 1, 0, 0, 0]]
    want = torch.tensor([[c + b for c, b in zip(row, BONUS, strict=True)] for row in counts])
    torch.testing.assert_close(got, want)
    # u2 bought i1 and i3 once each: the more popular i1 first; then i2 by popularity, i0 < i4
    assert Ranker().rank(got, None, 5).tolist() == [
        [1, 2, 3, 0, 4],
        [3, 2, 1, 0, 4],
        [1, 3, 2, 0, 4],
        [1, 2, 3, 0, 4],  # i2, i3: same popularity -> lower index
    ]


def test_rating_weight_sums_the_ratings() -> None:
    got = _fitted("rating").score(torch.tensor([0]))
    # u0: i1 rated 1 + 2 + 1 = 4, i2 rated 5 -> i2 first (rows would put i1 first)
    torch.testing.assert_close(got[0], torch.tensor([0.0, 4.75, 5.5, 0.5, 0.0]))


def test_other_baselines_still_get_a_binary_matrix() -> None:
    users, items, ratings = (np.array(c) for c in zip(*ROWS, strict=True))
    pop = build_baseline("pop", 4, 5)
    x = training_matrix(pop, users, items, ratings.astype(np.float32), (4, 5))
    assert set(x.data.tolist()) == {1.0} and x.nnz == 7  # 7 distinct (user, item) pairs
    pop.fit(x)
    torch.testing.assert_close(pop.counts, torch.tensor([0.0, 3.0, 2.0, 2.0, 0.0]))


def test_with_seen_items_masked_it_ranks_like_pop() -> None:
    rng = np.random.default_rng(0)
    x = sp.random(30, 40, density=0.15, random_state=1, format="csr", dtype=np.float32)
    x.data = rng.integers(1, 5, x.nnz).astype(np.float32)  # repeat counts
    model, pop = build_baseline("buy_again", 30, 40), build_baseline("pop", 30, 40)
    model.fit(x)
    pop.fit(x)
    users = torch.arange(30)
    seen = torch.from_numpy(x.toarray() > 0)
    assert torch.equal(
        Ranker().rank(model.score(users), seen, 10), Ranker().rank(pop.score(users), seen, 10)
    )
    assert isinstance(pop, Pop)


def test_bad_weight_and_state_dict() -> None:
    with pytest.raises(ConfigError, match=r"weight must be one of \['rows', 'rating'\]"):
        build_baseline("buy_again", 3, 4, weight="quantity")
    model = _fitted("rating")
    fresh = build_baseline("buy_again", 4, 5, weight="rating")
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.score(torch.arange(4)), model.score(torch.arange(4)))


def _rebuy_log(path: Path, n_users: int = 30, days: int = 10) -> Path:
    """Every user buys their own two favourite items again and again, plus an odd other item."""
    rng = np.random.default_rng(0)
    lines = ["invoice,item,quantity,time,user"]
    for d in range(days):
        for u in range(n_users):
            basket = [2 * u] + ([2 * u + 1] if rng.random() < 0.6 else [])
            if rng.random() < 0.4:
                basket.append(2 * n_users + int(rng.integers(0, 20)))
            for item in basket:
                lines.append(f"{d}-{u},P{item:03d},1,{d * 1000 + u * 10},c{u}")
    path.write_text("\n".join(lines) + "\n")
    return path


REPEAT_RUN = [
    "data=transactions",
    "data.aggregate=invoice",
    "data.preprocess.dedup=none",
    "model=buy_again",
    "eval.ks=[10]",
    "eval.save_topk=10",
    "eval.metrics=[ndcg,ndcg_repeat,recall_repeat,ndcg_new,repeat_share]",
]


def test_repeat_purchase_run_end_to_end(compose, tmp_path) -> None:
    path = _rebuy_log(tmp_path / "lines.csv")
    results = {}
    for mask in ("false", "true"):
        out = tmp_path / f"mask_{mask}"
        cfg = compose(
            *REPEAT_RUN, f"data.path={path}", f"eval.mask_seen={mask}", f"paths.output_dir={out}"
        )
        train(cfg)
        results[mask] = json.loads((out / "metrics.json").read_text())
    free, masked = results["false"], results["true"]
    assert free["meta"]["status"] == masked["meta"]["status"] == "ok"
    stats = free["meta"]["data_stats"]
    assert stats["tx/repeat_interactions"] > 0 and stats["preprocess/removed_dedup"] == 0
    assert free["test/n_repeat_users"] > 20  # most test users rebuy a favourite
    # buy_again lists each user's favourites first: almost every repeat purchase is found
    assert free["test/ndcg_repeat@10"] > 0.9 and free["test/recall_repeat@10"] > 0.9
    assert free["test/repeat_share@10"] > 0.1
    # seen items masked: no repeat purchase can be recommended (same users evaluated)
    assert masked["test/n_repeat_users"] == free["test/n_repeat_users"]
    assert masked["test/ndcg_repeat@10"] == 0.0 and masked["test/recall_repeat@10"] == 0.0
    assert masked["test/repeat_share@10"] == 0.0
    assert free["test/ndcg@10"] > masked["test/ndcg@10"]
