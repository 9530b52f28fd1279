"""Diversity terms: finite-difference gradients, hand-computed values, and direction."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from divrec.errors import ConfigError, DataError
from divrec.losses import (
    DIVERSITY_TERMS,
    ILS,
    CategoryEntropy,
    DPPTerm,
    NoDiversity,
    build_diversity_term,
    sampled_softmax_loss,
)
from divrec.losses.diversity import robust_logdet

F64 = torch.float64


def _fd_grad(fn, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central finite differences of scalar ``fn`` w.r.t. every entry of ``x``."""
    grad = torch.zeros_like(x)
    for idx in itertools.product(*(range(s) for s in x.shape)):
        plus, minus = x.clone(), x.clone()
        plus[idx] += eps
        minus[idx] -= eps
        grad[idx] = (fn(plus).item() - fn(minus).item()) / (2 * eps)
    return grad


def _small_case(seed: int = 0):
    """B=3 users, C=5 candidates, d=4, K=3 categories; logits well separated (no top-m ties)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, generator=g, dtype=F64) + torch.arange(5, dtype=F64) * 0.3
    emb = torch.randn(5, 4, generator=g, dtype=F64)
    cats = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=F64)
    return logits, emb, cats


TERMS = {
    "ils_emb": lambda: ILS("embedding"),
    "ils_emb_grad": lambda: ILS("embedding", detach_embeddings=False),
    "ils_cat": lambda: ILS("category"),
    "category_entropy": CategoryEntropy,
    "dpp_top3": lambda: DPPTerm(top_m=3),
    "dpp_all": lambda: DPPTerm(top_m=8, detach_embeddings=False),
}


@pytest.mark.parametrize("name", sorted(TERMS))
def test_logit_gradient_matches_finite_differences(name):
    term = TERMS[name]()
    logits, emb, cats = _small_case()
    x = logits.clone().requires_grad_()
    (auto,) = torch.autograd.grad(term(x, emb, cats), x)
    fd = _fd_grad(lambda z: term(z, emb, cats), logits)
    assert fd.abs().max() > 1e-4  # the check is not vacuous
    torch.testing.assert_close(auto, fd, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("term", [ILS("embedding", False), DPPTerm(3, detach_embeddings=False)])
def test_embedding_gradient_matches_finite_differences(term):
    logits, emb, cats = _small_case(1)
    x = emb.clone().requires_grad_()
    (auto,) = torch.autograd.grad(term(logits, x, cats), x)
    fd = _fd_grad(lambda e: term(logits, e, cats), emb)
    assert fd.abs().max() > 1e-4
    torch.testing.assert_close(auto, fd, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("term", [ILS("embedding"), DPPTerm(3)])
def test_detached_embeddings_get_no_gradient(term):
    logits, emb, cats = _small_case()
    x = emb.clone().requires_grad_()
    logits.requires_grad_()
    term(logits, x, cats).backward()
    assert x.grad is None and logits.grad is not None


def test_ils_raw_hand_values():
    # two items, p = (0.5, 0.5), cosine 0.2: sum_{i != j} = 2 * 0.25 * 0.2 = 0.1
    emb = torch.tensor([[1.0, 0.0], [0.2, math.sqrt(1 - 0.04)]], dtype=F64) * 3.0
    logits = torch.zeros(1, 2, dtype=F64)
    assert ILS("embedding", normalize=False)(logits, emb, None).item() == pytest.approx(
        0.1, rel=1e-12
    )
    # a masked (-inf) third candidate gets p = 0 and adds nothing, whatever its similarity
    emb3 = torch.cat([emb, emb[:1]])
    logits3 = torch.tensor([[0.0, 0.0, float("-inf")]], dtype=F64)
    assert ILS("embedding", normalize=False)(logits3, emb3, None).item() == pytest.approx(
        0.1, rel=1e-12
    )
    # categories {A, B} and {B, C}: Jaccard 1/3 -> 2 * 0.25 / 3 = 1/6
    cats = torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=F64)
    assert ILS("category", normalize=False)(logits, None, cats).item() == pytest.approx(
        1 / 6, rel=1e-12
    )
    # users are averaged: user 2 is one-hot (p = (1, 0)), ILS 0 -> mean (1/6 + 0) / 2
    two = torch.tensor([[0.0, 0.0], [0.0, float("-inf")]], dtype=F64)
    assert ILS("category", normalize=False)(two, None, cats).item() == pytest.approx(
        1 / 12, rel=1e-12
    )


def test_ils_normalised_hand_values():
    # two items, p = (0.5, 0.5), cosine 0.2: raw sum 0.1, pair mass 1 - (0.25 + 0.25) = 0.5
    # -> expected similarity of two distinct draws = 0.1 / 0.5 = 0.2
    emb = torch.tensor([[1.0, 0.0], [0.2, math.sqrt(1 - 0.04)]], dtype=F64)
    logits = torch.zeros(1, 2, dtype=F64)
    assert ILS("embedding")(logits, emb, None).item() == pytest.approx(0.2, rel=1e-12)
    # p = (0.8, 0.2): raw 2 * 0.16 * 0.2 = 0.064, pair mass 1 - 0.68 = 0.32 -> still 0.2:
    # concentrating mass does not lower the normalised term, only dissimilar items do
    peaked = torch.log(torch.tensor([[0.8, 0.2]], dtype=F64))
    assert ILS("embedding")(peaked, emb, None).item() == pytest.approx(0.2, rel=1e-12)


def test_category_entropy_hand_values():
    cats = torch.eye(4, dtype=F64)
    uniform = torch.zeros(1, 4, dtype=F64)
    assert CategoryEntropy()(uniform, None, cats).item() == pytest.approx(-math.log(4), rel=1e-12)
    half = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]], dtype=F64)
    assert CategoryEntropy()(half, None, cats).item() == pytest.approx(-math.log(2), rel=1e-12)
    peaked = torch.tensor([[20.0, 0.0, 0.0, 0.0]], dtype=F64)
    assert CategoryEntropy()(peaked, None, cats).item() > -1e-6
    # item 0 in {A, B} (weights 1/2 each), item 1 in {A}; p = (1/2, 1/2):
    # q = (1/4 + 1/2, 1/4) = (3/4, 1/4); -H = 3/4 log 3/4 + 1/4 log 1/4 = -0.562335
    multi = torch.tensor([[1, 1], [1, 0]], dtype=F64)
    value = CategoryEntropy()(torch.zeros(1, 2, dtype=F64), None, multi).item()
    assert value == pytest.approx(0.75 * math.log(0.75) + 0.25 * math.log(0.25), rel=1e-12)
    # an item without categories contributes nothing: q = (1) -> entropy 0
    none = torch.tensor([[1.0], [0.0]], dtype=F64)
    assert CategoryEntropy()(torch.zeros(1, 2, dtype=F64), None, none).item() == 0.0
    # no categories at all: 0 and a finite (zero) gradient
    x = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    value = CategoryEntropy()(x, None, torch.zeros(3, 2, dtype=F64))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_dpp_hand_values_and_dissimilarity():
    logits = torch.zeros(1, 3, dtype=F64)
    # orthogonal candidates, uniform: q_i = sqrt(3 * 1/3) = 1, I + L = 2 I -> -3 log 2 / 3
    ortho = torch.eye(3, dtype=F64)
    assert DPPTerm(3, jitter=1e-12)(logits, ortho, None).item() == pytest.approx(
        -math.log(2), rel=1e-9
    )
    # identical candidates: I + 1 1^T has det 1 + 3 -> -log(4) / 3
    same = torch.ones(3, 2, dtype=F64)
    assert DPPTerm(3, jitter=1e-12)(logits, same, None).item() == pytest.approx(
        -math.log(4) / 3, rel=1e-9
    )

    def pair(s: float) -> float:
        emb = torch.tensor([[1.0, 0.0], [s, math.sqrt(1 - s * s)]], dtype=F64)
        return DPPTerm(2, jitter=1e-12)(torch.zeros(1, 2, dtype=F64), emb, None).item()

    # two items, q = (1, 1): det [[2, s], [s, 2]] = 4 - s^2 -> -log(4 - s^2) / 2
    assert pair(0.6) == pytest.approx(-math.log(4 - 0.36) / 2, rel=1e-9)
    assert pair(0.1) < pair(0.5) < pair(0.9)  # more dissimilar -> lower (better) term


def test_dpp_uses_only_top_m():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]], dtype=F64, requires_grad=True)
    emb = torch.randn(4, 3, dtype=F64)
    DPPTerm(top_m=2)(logits, emb, None).backward()
    assert logits.grad[0, 2:].abs().max() == 0 and logits.grad[0, :2].abs().max() > 0


def test_robust_logdet_fallbacks():
    # Cholesky of diag(-1e-3, 1) + 1e-4 I fails; jitter 1e-3 still fails (0); 1e-2 succeeds
    mats = torch.stack([torch.diag(torch.tensor([-1e-3, 1.0])), torch.eye(2)]).to(F64)
    mats.requires_grad_()
    out = robust_logdet(mats, 1e-4)
    expected0 = math.log(-1e-3 + 1e-2) + math.log(1.0 + 1e-2)
    assert out[0].item() == pytest.approx(expected0, rel=1e-8)  # 1e-4 * 10 * 10 rounds
    assert out[1].item() == pytest.approx(2 * math.log(1 + 1e-4), rel=1e-12)
    out.sum().backward()
    assert torch.isfinite(mats.grad).all()
    # hopeless: jitter tops out at 1e-4 * 10^6 = 100 < 1e3 -> eigenvalues clamped at 1e-4
    bad = torch.diag(torch.tensor([-1e3, 2.0], dtype=F64)).unsqueeze(0).requires_grad_()
    out = robust_logdet(bad, 1e-4)
    assert out.item() == pytest.approx(math.log(1e-4) + math.log(2.0), rel=1e-12)
    out.sum().backward()
    assert torch.isfinite(bad.grad).all()


def test_no_diversity_is_attached_zero():
    x = torch.tensor([[0.0, float("-inf")], [1.0, 2.0]], requires_grad=True)
    value = NoDiversity()(x, None, None)
    value.backward()
    assert value.item() == 0.0 and torch.equal(x.grad, torch.zeros(2, 2))


def test_terms_on_masked_in_batch_logits_are_finite():
    """With duplicates (-inf columns) and top_m above the valid count nothing becomes NaN."""
    user = torch.randn(4, 3, dtype=F64, requires_grad=True)
    item = torch.randn(4, 3, dtype=F64, requires_grad=True)
    idx = torch.tensor([5, 5, 5, 2])  # row 0 has only 2 valid columns
    _, logits = sampled_softmax_loss(user, item, idx, 0.5)
    cats = torch.tensor([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=F64)
    for name in DIVERSITY_TERMS:
        value = build_diversity_term(name)(logits, item, cats)
        grads = torch.autograd.grad(value, [user, item], retain_graph=True, allow_unused=True)
        assert torch.isfinite(value)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


def _direction_case():
    """8 candidates in 4 categories; both users' top-3 start inside category 0."""
    cat_of = torch.tensor([0, 0, 0, 1, 2, 3, 0, 1])
    cats = torch.nn.functional.one_hot(cat_of, 4).to(F64)
    g = torch.Generator().manual_seed(0)
    emb = cats + 0.05 * torch.randn(8, 4, generator=g, dtype=F64)
    logits = torch.tensor(
        [[3.0, 2.9, 2.8, 1.0, 0.9, 0.8, 0.5, 0.2], [2.0, 2.5, 2.2, 0.0, 0.1, -0.5, 2.1, -1.0]],
        dtype=F64,
    )
    return cat_of, cats, emb, logits


def _distinct_top3(logits, cat_of) -> list[int]:
    return [len(set(cat_of[row].tolist())) for row in logits.topk(3, dim=1).indices]


@pytest.mark.parametrize(
    ("term", "lr", "steps"),
    [
        (ILS("embedding"), 5.0, 20),
        (ILS("category"), 5.0, 20),
        (CategoryEntropy(), 5.0, 10),
        (DPPTerm(top_m=8), 10.0, 20),
    ],
    ids=["ils_emb", "ils_cat", "category_entropy", "dpp"],
)
def test_minimising_term_diversifies_top3(term, lr, steps):
    cat_of, cats, emb, logits = _direction_case()
    assert _distinct_top3(logits, cat_of) == [1, 1]
    z = logits.clone().requires_grad_()
    opt = torch.optim.SGD([z], lr=lr)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        value = term(z, emb, cats)
        first = value.item() if first is None else first
        value.backward()
        opt.step()
    assert term(z, emb, cats).item() < first
    assert all(n >= 2 for n in _distinct_top3(z.detach(), cat_of))


def test_build_and_errors():
    assert isinstance(build_diversity_term("none"), NoDiversity)
    assert isinstance(build_diversity_term("category_entropy"), CategoryEntropy)
    ils = build_diversity_term("ils", similarity="category")
    assert isinstance(ils, ILS) and ils.needs_categories and not ils.needs_embeddings
    dpp = build_diversity_term("dpp", top_m=4, jitter=1e-3)
    assert isinstance(dpp, DPPTerm) and dpp.top_m == 4 and dpp.needs_embeddings
    with pytest.raises(ConfigError, match="unknown diversity term"):
        build_diversity_term("mmr")
    with pytest.raises(ConfigError, match="bad options"):
        build_diversity_term("dpp", topm=3)
    with pytest.raises(ConfigError, match="top_m"):
        build_diversity_term("dpp", top_m=0)
    with pytest.raises(ConfigError, match="jitter"):
        build_diversity_term("dpp", jitter=-1.0)
    with pytest.raises(ConfigError, match="similarity"):
        build_diversity_term("ils", similarity="jaccard")
    logits = torch.zeros(2, 3)
    with pytest.raises(DataError, match="cand_emb is required"):
        ILS()(logits, None, None)
    with pytest.raises(DataError, match="cand_cats must be"):
        CategoryEntropy()(logits, None, torch.zeros(4, 2))
    with pytest.raises(DataError, match="logits must be"):
        DPPTerm()(torch.zeros(3), torch.zeros(3, 2), None)
