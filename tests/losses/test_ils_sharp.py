"""Normalised ILS stays right when the softmax is sharp (1 - sum p^2 cancels in float32)."""

from __future__ import annotations

import itertools

import pytest
import torch

from divrec.losses import ILS
from divrec.losses.diversity import cosine_similarity_matrix, jaccard_similarity_matrix

F64 = torch.float64


def _reference(logits: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """Brute force in float64: mean over rows of sum_{i!=j} p_i p_j s_ij / sum_{i!=j} p_i p_j,
    every pair summed one by one (no 1 - sum p^2)."""
    p = torch.softmax(logits.to(F64), dim=1)
    rows = []
    for row in p:
        num = den = torch.zeros((), dtype=F64)
        for i, j in itertools.permutations(range(len(row)), 2):
            num = num + row[i] * row[j] * sim[i, j]
            den = den + row[i] * row[j]
        rows.append(num / den)
    return torch.stack(rows).mean()


def _case(gap: float):
    """3 users x 8 candidates: one candidate ``gap`` nats above the others (which differ by
    < 1 nat); random embeddings and categories."""
    g = torch.Generator().manual_seed(3)
    logits = torch.rand(3, 8, generator=g)
    logits[torch.arange(3), torch.tensor([0, 4, 7])] += gap
    emb = torch.randn(8, 16, generator=g)
    cats = (torch.rand(8, 4, generator=g) < 0.4).float()
    return logits, emb, cats


@pytest.mark.parametrize("similarity", ["embedding", "category"])
@pytest.mark.parametrize("gap", [0.0, 5.0, 25.0, 60.0])
def test_normalised_ils_matches_float64_brute_force(similarity, gap):
    logits, emb, cats = _case(gap)
    sim = (
        cosine_similarity_matrix(emb.to(F64))
        if similarity == "embedding"
        else jaccard_similarity_matrix(cats.to(F64))
    )
    x = logits.clone().requires_grad_()
    got = ILS(similarity)(x, emb, cats)  # float32 throughout
    got.backward()
    x64 = logits.to(F64).requires_grad_()
    ref = _reference(x64, sim)
    ref.backward()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-7)
    scale = x64.grad.abs().max().item()
    assert torch.allclose(x.grad.to(F64), x64.grad, rtol=1e-3, atol=1e-4 * scale)
