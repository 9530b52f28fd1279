"""Shared random cases for the metric tests (the references live in the test files)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from divrec.metrics import RankingEvaluator

KS = [1, 3, 5, 12]


@dataclass
class Case:
    """A small random evaluation problem; lists are plain Python for the references."""

    n_items: int
    n_cats: int
    lists: list[list[int]]  # per user, K distinct item ids, best first
    truths: list[set[int]]  # per user held-out items (some empty, some larger than K)
    user_idx: list[int]
    item_cats: list[set[int]]  # per item its category ids (some empty)
    emb: np.ndarray  # [N, d], some zero rows
    popularity: np.ndarray  # [N] train counts, some zero
    n_train_users: int
    interests: list[set[int]]  # per user id (index = user_idx) true interest categories
    seens: list[set[int]]  # per user the items had before (overlapping truths and lists)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        topk = torch.tensor(self.lists, dtype=torch.long)
        truth = torch.zeros(len(self.lists), self.n_items, dtype=torch.bool)
        for u, items in enumerate(self.truths):
            truth[u, sorted(items)] = True
        return topk, truth, torch.tensor(self.user_idx, dtype=torch.long)

    def seen_tensor(self) -> torch.Tensor:
        seen = torch.zeros(len(self.lists), self.n_items, dtype=torch.bool)
        for u, items in enumerate(self.seens):
            seen[u, sorted(items)] = True
        return seen

    def evaluator(self, metrics: list[str], ks: list[int] = KS, **kw) -> RankingEvaluator:
        cat = torch.zeros(self.n_items, self.n_cats)
        for i, cs in enumerate(self.item_cats):
            cat[i, sorted(cs)] = 1.0
        interests = torch.zeros(len(self.interests), self.n_cats)
        for u, cs in enumerate(self.interests):
            interests[u, sorted(cs)] = 1.0
        return RankingEvaluator(
            metrics,
            ks,
            category_matrix=cat,
            popularity=torch.tensor(self.popularity, dtype=torch.float32),
            n_train_users=self.n_train_users,
            item_embeddings=torch.tensor(self.emb, dtype=torch.float32),
            user_interests=interests,
            user_history=interests / interests.sum(1, keepdim=True).clamp_min(1.0),
            **kw,
        )


def random_case(seed: int, n_users: int = 40, n_items: int = 60, k: int = 12) -> Case:
    """Random lists and truths: empty truths, truths larger than K, users with no hits."""
    rng = np.random.default_rng(seed)
    n_cats, dim = 6, 5
    lists = [rng.permutation(n_items)[:k].tolist() for _ in range(n_users)]
    truths = []
    for u in range(n_users):
        kind = u % 4
        size = int(rng.integers(1, 25))
        if kind == 0:  # no truth: skipped by the evaluator
            truths.append(set())
        elif kind == 1:  # no hits
            outside = [i for i in range(n_items) if i not in lists[u]]
            truths.append(set(rng.choice(outside, size=min(size, len(outside)), replace=False)))
        else:  # random catalogue items plus some of the listed ones (sizes up to 2K)
            pick = set(rng.choice(n_items, size=size, replace=False).tolist())
            pick |= {i for i in lists[u] if rng.random() < 0.3}
            truths.append({int(i) for i in pick})
    truths = [{int(i) for i in t} for t in truths]
    item_cats = [{c for c in range(n_cats) if rng.random() < 0.3} for _ in range(n_items)]
    emb = rng.normal(size=(n_items, dim))
    emb[rng.random(n_items) < 0.1] = 0.0
    popularity = rng.integers(0, 30, size=n_items).astype(float)
    popularity[rng.random(n_items) < 0.2] = 0.0
    n_total_users = n_users + 5
    interests = [{c for c in range(n_cats) if rng.random() < 0.4} for _ in range(n_total_users)]
    user_idx = rng.permutation(n_total_users)[:n_users].tolist()
    seens = _seens(seed, lists, truths, n_items)
    return Case(
        n_items=n_items,
        n_cats=n_cats,
        lists=lists,
        truths=truths,
        user_idx=user_idx,
        item_cats=item_cats,
        emb=emb,
        popularity=popularity,
        n_train_users=50,
        interests=interests,
        seens=seens,
    )


def _seens(seed: int, lists, truths, n_items: int) -> list[set[int]]:
    """Earlier items per user (own generator: the other fields keep their values). Every
    fifth user's seen set misses its truth (no repeat), every fifth (offset 2) covers it (no new
    item); the others take some truth items, some listed ones and random ones."""
    rng = np.random.default_rng(seed + 10_000)
    out = []
    for u, (lst, truth) in enumerate(zip(lists, truths, strict=True)):
        if u % 5 == 0:
            pool = [i for i in range(n_items) if i not in truth]
            out.append({int(i) for i in rng.choice(pool, size=5, replace=False)})
        elif u % 5 == 2:
            out.append(set(truth) | {int(lst[0])})
        else:
            pick = {i for i in truth if rng.random() < 0.4} | {i for i in lst if rng.random() < 0.3}
            out.append(pick | {int(i) for i in rng.choice(n_items, size=3, replace=False)})
    return out


def evaluate(case: Case, metrics: list[str], ks: list[int] = KS, **kw) -> dict[str, float]:
    """Run the evaluator on the whole case in one update."""
    ev = case.evaluator(metrics, ks, **kw)
    ev.update(*case.tensors(), seen=case.seen_tensor())
    return ev.compute()


def user_mean(values: list[float]) -> float:
    """Plain mean, NaN for no users (as the evaluator reports)."""
    return float(np.mean(values)) if values else float("nan")
