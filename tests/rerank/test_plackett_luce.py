"""Gumbel-top-k sampling against exact Plackett-Luce probabilities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from divrec.errors import ConfigError
from divrec.rerank import top_k
from divrec.rerank.plackett_luce import plackett_luce

from . import random_case


def pl_probability(w: list[float], order: tuple[int, ...]) -> float:
    """P(order) = prod_t w[o_t] / sum of the weights not yet drawn."""
    left, p = list(range(len(w))), 1.0
    for i in order:
        p *= w[i] / sum(w[j] for j in left)
        left.remove(i)
    return p


def test_frequencies_match_exact_pl():
    s = [1.0, 0.5, 0.0, -1.0]
    n = 40000
    scores = torch.tensor([s], dtype=torch.float64).expand(n, 4).contiguous()
    gen = torch.Generator().manual_seed(0)
    got = plackett_luce(scores, 2, temperature=0.7, generator=gen)
    w = [math.exp(x / 0.7) for x in s]
    chi2 = 0.0
    perms = list(itertools.permutations(range(4), 2))
    for order in perms:
        want = n * pl_probability(w, order)
        seen = int(((got[:, 0] == order[0]) & (got[:, 1] == order[1])).sum())
        chi2 += (seen - want) ** 2 / want
    assert chi2 < 32.9  # chi-square 11 dof, p = 0.001


def test_low_temperature_is_top_k_and_seed_reproducible():
    scores, _ = random_case(0)
    cold = plackett_luce(scores, 5, temperature=1e-6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(cold, top_k(scores, 5))
    a = plackett_luce(scores, 5, 1.0, torch.Generator().manual_seed(3), candidates=20)
    b = plackett_luce(scores, 5, 1.0, torch.Generator().manual_seed(3), candidates=20)
    assert torch.equal(a, b)
    assert set(a.flatten().tolist()) <= set(top_k(scores, 20).flatten().tolist())
    with pytest.raises(ConfigError, match="temperature"):
        plackett_luce(scores, 5, 0.0)
