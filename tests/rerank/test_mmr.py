"""MMR: batched result equals a per-user loop written from Carbonell & Goldstein's definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import divrec.rerank.candidates as candidates
import divrec.rerank.kernels as kernels
from divrec.errors import ConfigError, DataError
from divrec.rerank import RERANKERS, mmr, rerank, top_k

from . import random_case, ref_candidates, unit_rows, user_embeddings


def ref_mmr(scores: torch.Tensor, emb: torch.Tensor, k: int, lam: float, m: int) -> list[list]:
    """Per-user MMR: first the top score, then argmax (1-lam)*s - lam*max cos to picked."""
    out = []
    for u in range(scores.shape[0]):
        row = scores[u].numpy()
        x = unit_rows(user_embeddings(emb, u))
        cands = ref_candidates(row, m)
        picked = [cands[0]]
        while len(picked) < k:
            best, best_val = None, -np.inf
            for i in cands:  # candidate order: the first maximum wins ties
                if i in picked:
                    continue
                val = (1 - lam) * row[i] - lam * max(float(x[i] @ x[j]) for j in picked)
                if val > best_val:
                    best, best_val = i, val
            picked.append(best)
        out.append(picked)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_user", [False, True])
@pytest.mark.parametrize("lam", [0.3, 0.7, 1.0])
def test_matches_reference_loop(seed, per_user, lam):
    scores, emb = random_case(seed, per_user=per_user)
    got = mmr(scores, emb, k=5, diversity=lam, candidates=30)
    assert got.tolist() == ref_mmr(scores, emb, 5, lam, 30)


def test_all_candidates_and_large_diversity_hit_fallback_rows():
    # candidates=None means all 50 items; with diversity 0.9 picks go deep into the candidate
    # list, beyond the GEMM-precomputed rows (16 here), exercising the matvec fallback.
    scores, emb = random_case(5, n_items=60, dim=3)
    got = mmr(scores, emb, k=8, diversity=0.9)
    assert got.tolist() == ref_mmr(scores, emb, 8, 0.9, 60)


def test_independent_of_precomputed_rows(monkeypatch):
    scores, emb = random_case(3, per_user=True)
    expected = mmr(scores, emb, k=5, diversity=0.6, candidates=40)
    monkeypatch.setattr(kernels, "speculative_rows", lambda k, m: 1)
    assert torch.equal(mmr(scores, emb, k=5, diversity=0.6, candidates=40), expected)


def test_diversity_zero_is_top_k():
    scores, emb = random_case(4)
    expected = [ref_candidates(scores[u].numpy(), 50)[:5] for u in range(8)]
    assert mmr(scores, emb, 5, 0.0, candidates=20).tolist() == expected
    assert top_k(scores, 5).tolist() == expected
    assert rerank("none", scores, 5, 0.7).tolist() == expected


def test_shape_dtype_and_seen_items_never_selected():
    scores, emb = random_case(6, n_seen=40)  # 10 unseen items per user, k = 8
    got = mmr(scores, emb, 8, 1.0)
    assert got.shape == (8, 8) and got.dtype == torch.long
    assert torch.isfinite(scores.gather(1, got)).all()
    assert all(len(set(r)) == 8 for r in got.tolist())


def test_tie_rule_higher_relevance_then_lower_index():
    # All scores equal, all embeddings identical: every MMR value ties, so picks follow item
    # index among unseen items; item 1 is seen. Boundary ties for candidates=4 go to 0,2,3,4.
    scores = torch.zeros(1, 10, dtype=torch.float64)
    scores[0, 1] = -torch.inf
    emb = torch.ones(10, 3, dtype=torch.float64)
    assert mmr(scores, emb, 3, 0.5, candidates=4).tolist() == [[0, 2, 3]]
    # Score ties at the candidate boundary: [3, 1, 1, 1, 1, 2] top-3 -> 0, 5, then item 1.
    row = torch.tensor([[3.0, 1, 1, 1, 1, 2]])
    assert top_k(row, 3).tolist() == [[0, 5, 1]]


def test_matches_pyversity_on_nonnegative_embeddings():
    # pyversity.mmr clips cosine to [0, 1]; with non-negative embeddings that is a no-op, so
    # given the same candidate order (its argmax also takes the first maximum) it must agree.
    pyversity = pytest.importorskip("pyversity")
    scores, emb = random_case(7, n_seen=0, nonneg=True, dim=8)
    scores = scores.float()
    emb = emb.float()
    got = mmr(scores, emb, 6, 0.5, candidates=25)
    for u in range(8):
        cands = ref_candidates(scores[u].numpy(), 25)
        res = pyversity.mmr(emb.numpy()[cands], scores[u].numpy()[cands], 6, diversity=0.5)
        assert got[u].tolist() == [cands[i] for i in res.indices]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "x"])
def test_diversity_out_of_range_raises(bad):
    scores, emb = random_case(0)
    with pytest.raises(ConfigError, match="diversity"):
        mmr(scores, emb, 5, bad)
    with pytest.raises(ConfigError, match="diversity"):
        rerank("mmr", scores, 5, bad, embeddings=emb)


def test_bad_inputs_raise_clear_errors():
    scores, emb = random_case(0)
    with pytest.raises(DataError, match="fewer than k"):
        mmr(scores, emb, 45, 0.5)  # only 40 unseen items
    with pytest.raises(DataError, match="embeddings"):
        mmr(scores, emb[:10], 5, 0.5)
    bad = scores.clone()
    bad[2, 3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        mmr(bad, emb, 5, 0.5)
    with pytest.raises(DataError, match="NaN"):
        mmr(bad, emb, 5, 0.5, candidates=20)
    bad[2, 3] = torch.inf
    with pytest.raises(DataError, match=r"\+inf"):
        mmr(bad, emb, 5, 0.5, candidates=20)
    with pytest.raises(ConfigError, match="candidates"):
        mmr(scores, emb, 5, 0.5, candidates=3)
    with pytest.raises(ConfigError, match="k"):
        mmr(scores, emb, 0, 0.5)
    with pytest.raises(ConfigError, match="unknown"):
        rerank("nope", scores, 5, 0.5)
    with pytest.raises(DataError, match="embeddings"):
        rerank("mmr", scores, 5, 0.5)
    assert set(RERANKERS) == {"none", "mmr", "dpp", "xquad", "calibrated", "plackett_luce"}


@pytest.mark.parametrize("torch_topk", [False, True])
def test_candidate_selection_follows_tie_rule(monkeypatch, torch_topk):
    # Integer scores make ties everywhere (inside the top-M and at its boundary); the GPU path
    # (torch.topk) is exercised on CPU by swapping it in.
    if torch_topk:
        monkeypatch.setattr(candidates, "_top_sorted", lambda s, m: torch.topk(s, m, dim=1))
    gen = torch.Generator().manual_seed(11)
    scores = torch.randint(0, 4, (16, 40), generator=gen).double()
    scores[torch.rand(16, 40, generator=gen) < 0.3] = -torch.inf
    for m in (1, 5, 17, 39, 40):
        idx, vals, valid = candidates.select_candidates(scores, m)
        for u in range(16):
            expected = ref_candidates(scores[u].numpy(), m)
            assert idx[u, : len(expected)].tolist() == expected
            assert valid[u].sum() == len(expected)
            assert torch.equal(vals[u], scores[u, idx[u]])


def test_cpu_thread_cap_is_restored():
    scores, emb = random_case(0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        mmr(scores, emb, 5, 0.5)
        assert torch.get_num_threads() == 2
        with pytest.raises(ConfigError):
            mmr(scores, emb, 5, 2.0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_no_users_gives_empty_result():
    scores, emb = random_case(0)
    for name in ("none", "mmr", "dpp"):
        got = rerank(name, scores[:0], 5, 0.5, embeddings=emb)
        assert got.shape == (0, 5) and got.dtype == torch.long
