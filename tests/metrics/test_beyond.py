"""Beyond-accuracy metrics vs brute-force references and hand-computed examples."""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

import numpy as np
import pytest
import torch

from divrec.errors import ConfigError
from divrec.metrics import RankingEvaluator
from tests.metrics import KS, Case, evaluate, random_case, user_mean

PER_USER = ["ild_cat", "ild_emb", "cat_coverage", "novelty", "alpha_ndcg", "interest_coverage"]
GLOBAL = ["item_coverage", "gini", "dist_coverage"]


def ref_jaccard(a: set[int], b: set[int]) -> float:
    return 0.0 if not (a | b) else len(a & b) / len(a | b)  # two empty sets: 0 by definition


def ref_cosine(x: np.ndarray, y: np.ndarray) -> float:
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    return 0.0 if nx == 0 or ny == 0 else float(x @ y / (nx * ny))


def ref_ild(top: list[int], sim, keep=lambda i: True) -> float:
    pairs = [(i, j) for i, j in combinations(top, 2) if keep(i) and keep(j)]
    if not pairs:  # a single item (or no pair of kept items) has no pair: ILD 0 by definition
        return 0.0
    return 1.0 - sum(sim(i, j) for i, j in pairs) / len(pairs)


def ref_alpha_ndcg(case: Case, top: list[int], truth: set[int], alpha: float) -> float:
    """alpha-nDCG with plain loops; ideal list by greedy selection (ties: lowest item id)."""
    cats = case.item_cats

    def gain(item: int, seen: Counter) -> float:
        if item not in truth:
            return 0.0
        return sum((1 - alpha) ** seen[a] for a in cats[item])

    seen: Counter = Counter()
    dcg = 0.0
    for rank, item in enumerate(top, start=1):
        dcg += gain(item, seen) / math.log2(rank + 1)
        if item in truth:
            seen.update(cats[item])
    seen, left, idcg = Counter(), sorted(truth), 0.0
    for rank in range(1, len(top) + 1):
        if not left:
            break
        gains = [gain(i, seen) for i in left]
        best = next(i for i, g in zip(left, gains, strict=True) if g >= max(gains) - 1e-9)
        idcg += gain(best, seen) / math.log2(rank + 1)
        seen.update(cats[best])
        left.remove(best)
    return 0.0 if idcg == 0 else dcg / idcg


def ref_per_user(name: str, case: Case, u: int, k: int, alpha: float) -> float | None:
    """One user's value; None when the user is left out of the average."""
    top = case.lists[u][:k]
    cats = case.item_cats
    if name == "ild_cat":
        return ref_ild(top, lambda i, j: ref_jaccard(cats[i], cats[j]), lambda i: bool(cats[i]))
    if name == "ild_emb":
        return ref_ild(top, lambda i, j: ref_cosine(case.emb[i], case.emb[j]))
    covered = set().union(*(cats[i] for i in top))
    if name == "cat_coverage":
        return len(covered) / case.n_cats
    if name == "interest_coverage":
        want = case.interests[case.user_idx[u]]
        return len(covered & want) / len(want) if want else None
    if name == "novelty":
        info = [-math.log2(max(case.popularity[i], 1.0) / case.n_train_users) for i in top]
        return sum(info) / len(info)
    if name == "alpha_ndcg":
        return ref_alpha_ndcg(case, top, case.truths[u], alpha)
    raise AssertionError(name)


def ref_global(name: str, case: Case, k: int) -> float:
    counts = Counter(i for u, t in enumerate(case.truths) if t for i in case.lists[u][:k])
    if name == "item_coverage":
        return len(counts) / case.n_items
    x = [counts.get(i, 0) for i in range(case.n_items)]
    if name == "gini":  # mean-absolute-difference form, equal to the sorted formula
        n = len(x)
        return sum(abs(a - b) for a in x for b in x) / (2 * n * sum(x))
    if name == "dist_coverage":
        total = sum(x)
        return -sum(c / total * math.log2(c / total) for c in x if c > 0)
    raise AssertionError(name)


@pytest.mark.parametrize(("seed", "alpha"), [(0, 0.5), (1, 0.5), (2, 0.2), (3, 1.0), (4, 0.0)])
def test_beyond_matches_brute_force(seed: int, alpha: float) -> None:
    case = random_case(seed)
    got = evaluate(case, PER_USER + GLOBAL, alpha=alpha)
    users = [u for u, t in enumerate(case.truths) if t]
    for k in KS:
        for name in PER_USER:
            vals = [ref_per_user(name, case, u, k, alpha) for u in users]
            want = user_mean([v for v in vals if v is not None])
            assert got[f"test/{name}@{k}"] == pytest.approx(want, abs=1e-6), (name, k)
        for name in GLOBAL:
            want = ref_global(name, case, k)
            assert got[f"test/{name}@{k}"] == pytest.approx(want, abs=1e-6), (name, k)


def _hand_evaluator(metrics: list[str], ks: list[int], **kw) -> RankingEvaluator:
    """4 items over categories a=0, b=1, c=2: 0:{a,b}, 1:{b}, 2:{}, 3:{a}."""
    cat = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    kw.setdefault("popularity", torch.tensor([4.0, 2.0, 0.0, 8.0]))
    return RankingEvaluator(metrics, ks, cat, n_train_users=8, **kw)


def _run(ev: RankingEvaluator, lists: list[list[int]], truths: list[list[int]]) -> dict:
    t = torch.zeros(len(lists), ev.n_items, dtype=torch.bool)
    for u, items in enumerate(truths):
        t[u, items] = True
    ev.update(torch.tensor(lists), t, torch.arange(len(lists)))
    return ev.compute()


def test_ild_cat_hand() -> None:
    # list [0, 1, 2]: J({a,b},{b}) = 1/2; item 2 has no category, its pairs are left out -> 1/2
    got = _run(_hand_evaluator(["ild_cat"], [1, 3]), [[0, 1, 2]], [[0]])
    assert got["test/ild_cat@3"] == pytest.approx(1 / 2)
    assert got["test/ild_cat@1"] == 0.0  # one item, no pair


def test_ild_cat_uncategorised_items_do_not_look_diverse() -> None:
    # items 1 and 2 have no category: a list of them has no categorised pair -> 0, never 1
    cat = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    ev = RankingEvaluator(["ild_cat"], [2], cat, torch.ones(3), n_train_users=2)
    assert _run(ev, [[1, 2]], [[0]])["test/ild_cat@2"] == 0.0


def test_category_metrics_left_out_without_categories(caplog) -> None:
    # no item has a category: ild_cat, cat_coverage, alpha_ndcg are undefined, not logged
    names = ["ndcg", "ild_cat", "cat_coverage", "alpha_ndcg", "novelty"]
    with caplog.at_level("WARNING", logger="divrec.metrics.evaluator"):
        ev = RankingEvaluator(names, [2], torch.zeros(3, 0), torch.ones(3), n_train_users=2)
    got = _run(ev, [[1, 2]], [[0]])
    assert {k.split("@")[0] for k in got if "@" in k} == {"test/ndcg", "test/novelty"}
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "ild_cat, cat_coverage, alpha_ndcg" in warned[0].getMessage()
    assert "no categories" in warned[0].getMessage()
    with pytest.raises(ConfigError, match=r"^eval\.metrics: only category metrics"):
        RankingEvaluator(["ild_cat"], [2], torch.zeros(3, 0), torch.ones(3), n_train_users=2)


def test_ild_emb_hand() -> None:
    # e0=(1,0), e1=(2,2), e2=(0,3): cos01 = 1/sqrt2, cos02 = 0, cos12 = 1/sqrt2
    # -> mean sqrt2/3 -> ILD 1 - sqrt2/3; the unused item 3 has a zero embedding
    emb = torch.tensor([[1.0, 0.0], [2.0, 2.0], [0.0, 3.0], [0.0, 0.0]])
    got = _run(_hand_evaluator(["ild_emb"], [3], item_embeddings=emb), [[0, 1, 2]], [[0]])
    assert got["test/ild_emb@3"] == pytest.approx(1 - math.sqrt(2) / 3)


def test_cat_and_interest_coverage_hand() -> None:
    # list [0, 1] covers {a, b} of C = 3 -> 2/3; interests {a, c} -> 1 of 2 covered -> 1/2
    interests = torch.tensor([[1.0, 0.0, 1.0]])
    ev = _hand_evaluator(["cat_coverage", "interest_coverage"], [2], user_interests=interests)
    got = _run(ev, [[0, 1]], [[3]])
    assert got["test/cat_coverage@2"] == pytest.approx(2 / 3)
    assert got["test/interest_coverage@2"] == pytest.approx(1 / 2)


def test_novelty_hand() -> None:
    # popularity [4, 2, 0 -> smoothed to 1], 8 train users: -log2(4/8) = 1, -log2(2/8) = 2,
    # -log2(1/8) = 3 -> mean 2
    got = _run(_hand_evaluator(["novelty"], [3]), [[0, 1, 2]], [[0]])
    assert got["test/novelty@3"] == pytest.approx(2.0)


def test_global_exposure_hand() -> None:
    # top-1 items of 4 users: 0, 0, 0, 1 -> counts [3, 1, 0, 0] over N = 4
    # coverage 2/4; Gini sorted [0,0,1,3]: ((2*3-5)*1 + (2*4-5)*3) / (4 * 4) = 10/16
    # entropy of [3/4, 1/4] = 0.75*log2(4/3) + 0.25*2 = 0.811278 bits
    ev = _hand_evaluator(GLOBAL, [1])
    got = _run(ev, [[0, 1], [0, 2], [0, 3], [1, 0]], [[2], [2], [2], [2]])
    assert got["test/item_coverage@1"] == pytest.approx(0.5)
    assert got["test/gini@1"] == pytest.approx(10 / 16)
    assert got["test/dist_coverage@1"] == pytest.approx(0.75 * math.log2(4 / 3) + 0.5)


def test_alpha_ndcg_hand() -> None:
    # aspects a, b; items 0:{a}, 1:{a}, 2:{b}, 3:{a,b}; truth {0, 1, 2}; alpha = 0.5
    # list [0, 1, 2]: gains 1, 0.5 (a seen once), 1 -> DCG = 1 + 0.5/log2(3) + 1/2
    # ideal greedy: 0 (tie of 1s, lowest id), then 2 (gain 1 > 0.5), then 1 (0.5)
    # -> IDCG = 1 + 1/log2(3) + 0.5/2
    cat = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.float32)
    ev = RankingEvaluator(["alpha_ndcg"], [3], cat, torch.ones(4), n_train_users=2, alpha=0.5)
    got = _run(ev, [[0, 1, 2]], [[0, 1, 2]])
    dcg = 1 + 0.5 / math.log2(3) + 1 / 2
    idcg = 1 + 1 / math.log2(3) + 0.5 / 2
    assert got["test/alpha_ndcg@3"] == pytest.approx(dcg / idcg)


def test_alpha_ndcg_zero_cases() -> None:
    cat = torch.tensor([[1, 0], [0, 0], [0, 1]], dtype=torch.float32)
    ev = RankingEvaluator(["alpha_ndcg"], [2], cat, torch.ones(3), n_train_users=2)
    # truth {0} not in list [1, 2] -> DCG 0, IDCG = 1 -> 0
    assert _run(ev, [[1, 2]], [[0]])["test/alpha_ndcg@2"] == 0.0
    ev.reset()
    # truth {1} has no category -> ideal 0 -> 0 by definition
    assert _run(ev, [[1, 2]], [[1]])["test/alpha_ndcg@2"] == 0.0


def test_missing_inputs_raise() -> None:
    with pytest.raises(ConfigError, match="item_embeddings"):
        _hand_evaluator(["ild_emb"], [1])
    with pytest.raises(ConfigError, match="user_interests"):
        _hand_evaluator(["interest_coverage"], [1])
