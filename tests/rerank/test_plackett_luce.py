"""Gumbel-top-k Plackett-Luce sampling against exact PL probabilities, the counter-based noise
against a plain-Python hash, and the seeding / batching / top-k-limit contracts."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chi2

from divrec.errors import ConfigError
from divrec.evaluation.pipeline import Ranker
from divrec.rerank import rerank, top_k
from divrec.rerank.plackett_luce import plackett_luce, uniform_hash

from . import random_case

M32 = 0xFFFFFFFF


def lowbias32(x: int) -> int:
    """Wellons' lowbias32 in Python integers (the published constants)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def ref_uniform(seed: int, user: int, sample: int, item: int) -> float:
    h = lowbias32(lowbias32(lowbias32(seed & M32) ^ user) ^ sample)
    a = lowbias32(h ^ item)
    b = lowbias32(a ^ 0x9E3779B9)
    return ((a << 21) + (b >> 11) + 0.5) / 2.0**53


def pl_probability(w: list[float], order: tuple[int, ...]) -> float:
    """P(order) = prod_t w[o_t] / sum of the weights not yet drawn."""
    left, p = list(range(len(w))), 1.0
    for i in order:
        p *= w[i] / sum(w[j] for j in left)
        left.remove(i)
    return p


def chi_square(observed: list[int], expected: list[float]) -> float:
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))


def test_noise_is_the_reference_hash_and_uniform():
    users = torch.tensor([0, 7, 123456, 2**31 + 5])
    items = torch.tensor([[0, 1, 2], [3, 99, 4000], [5, 6, 7], [M32, 0, 1]])
    got = uniform_hash(42, users, 3, items)
    for b in range(4):
        for j in range(3):
            want = ref_uniform(42, int(users[b]), 3, int(items[b, j]))
            assert got[b, j].item() == want
    u = uniform_hash(1, torch.arange(200), 0, torch.arange(500).expand(200, 500)).flatten()
    assert 0 < float(u.min()) and float(u.max()) < 1
    counts = torch.histc(u, bins=20, min=0, max=1).tolist()
    assert chi_square(counts, [u.numel() / 20] * 20) < chi2.ppf(0.999, 19)


def test_first_position_follows_softmax_over_users_and_requests():
    s = [1.0, 0.6, 0.2, 0.0, -0.5]
    t = 0.5
    p = torch.softmax(torch.tensor(s, dtype=torch.float64) / t, 0).tolist()
    n = 20000
    scores = torch.tensor([s], dtype=torch.float64).expand(n, 5).contiguous()
    first = plackett_luce(scores, 1, t, seed=3)[:, 0]  # n users, one request each
    counts = torch.bincount(first, minlength=5).tolist()
    assert chi_square(counts, [n * q for q in p]) < chi2.ppf(0.999, 4)
    one = scores[:1]
    firsts = [int(plackett_luce(one, 1, t, seed=3, sample=r)[0, 0]) for r in range(3000)]
    counts = [firsts.count(i) for i in range(5)]  # one user, 3000 requests
    assert chi_square(counts, [3000 * q for q in p]) < chi2.ppf(0.999, 4)


def test_full_lists_follow_the_pl_formula():
    s = [1.0, 0.5, 0.0, -1.0]
    t, n = 0.7, 48000
    scores = torch.tensor([s], dtype=torch.float64).expand(n, 4).contiguous()
    got = plackett_luce(scores, 4, temperature=t, seed=11)
    w = [math.exp(x / t) for x in s]
    perms = list(itertools.permutations(range(4)))
    code = (got * torch.tensor([64, 16, 4, 1])).sum(1)
    seen = torch.bincount(code, minlength=256)
    observed = [int(seen[sum(o * 4 ** (3 - i) for i, o in enumerate(perm))]) for perm in perms]
    expected = [n * pl_probability(w, perm) for perm in perms]
    assert sum(expected) == pytest.approx(n)
    assert chi_square(observed, expected) < chi2.ppf(0.999, len(perms) - 1)


def test_low_temperature_is_top_k():
    scores, _ = random_case(0)
    assert torch.equal(plackett_luce(scores, 5, temperature=1e-6, seed=1), top_k(scores, 5))


def test_batch_equals_per_user_loop_and_seeding():
    scores, _ = random_case(2, n_users=12)
    users = torch.arange(100, 112)
    batch = plackett_luce(scores, 6, 1.0, seed=5, sample=2, users=users, candidates=20)
    for b in range(12):
        one = plackett_luce(scores[b : b + 1], 6, 1.0, 5, 2, users[b : b + 1], candidates=20)
        assert torch.equal(one[0], batch[b])
    again = plackett_luce(scores, 6, 1.0, seed=5, sample=2, users=users, candidates=20)
    assert torch.equal(again, batch)
    other_sample = plackett_luce(scores, 6, 1.0, seed=5, sample=3, users=users, candidates=20)
    other_seed = plackett_luce(scores, 6, 1.0, seed=6, sample=2, users=users, candidates=20)
    assert (other_sample != batch).any(1).sum() >= 10
    assert (other_seed != batch).any(1).sum() >= 10
    cand = top_k(scores, 20)
    for b in range(12):  # only the top-20 candidates, never a seen (-inf) item, no repeats
        assert set(batch[b].tolist()) <= set(cand[b].tolist())
        assert len(set(batch[b].tolist())) == 6
    assert bool(torch.isfinite(scores.gather(1, batch)).all())


def test_bad_temperature_is_one_config_error():
    scores, _ = random_case(0)
    for bad in (0.0, -1.0, "hot"):
        with pytest.raises(ConfigError, match="rerank.temperature"):
            plackett_luce(scores, 5, bad)
    with pytest.raises(ConfigError, match="rerank.samples"):
        Ranker.from_config({"name": "plackett_luce", "samples": 0})
    with pytest.raises(ConfigError, match="rerank.temperature"):
        Ranker.from_config({"name": "plackett_luce", "temperature": 0})


def test_ranker_draws_are_the_sampler_on_min_max_scores():
    scores, _ = random_case(4, n_users=6, n_items=40, n_seen=0)
    seen = torch.zeros_like(scores, dtype=torch.bool)
    seen[:, :5] = True
    cfg = {"name": "plackett_luce", "temperature": 0.2, "seed": 9, "samples": 4, "candidates": 15}
    ranker = Ranker.from_config(cfg)
    assert ranker.draws == 4 and Ranker.from_config({"name": "mmr", "samples": 4}).draws == 1
    users = torch.tensor([3, 1, 4, 1, 5, 9])
    lists = [ranker.rank(scores, seen, 5, users=users, sample=r) for r in range(4)]
    masked = scores.masked_fill(seen, -math.inf)
    m = 15
    top = masked.topk(m, dim=1).values
    lo, hi = top[:, -1:], top[:, :1]
    scaled = torch.where(torch.isfinite(masked), (masked - lo) / (hi - lo), masked)
    for r, got in enumerate(lists):
        want = rerank(
            "plackett_luce",
            scaled,
            5,
            0.0,
            candidates=15,
            sampling=dict(temperature=0.2, seed=9, sample=r, users=users),
        )
        assert torch.equal(got, want)
        assert not bool(seen.gather(1, got).any())
    assert not torch.equal(lists[0], lists[1])
