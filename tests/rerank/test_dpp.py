"""DPP: batched incremental-Cholesky greedy equals a per-user greedy on explicit determinants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import divrec.rerank.kernels as kernels
from divrec.errors import ConfigError, DataError
from divrec.rerank import dpp, rerank

from . import random_case, ref_candidates, unit_rows, user_embeddings

EPS32 = float(np.finfo(np.float32).eps)


def ref_dpp(scores, emb, k: int, div: float, m: int, scale: float = 1.0) -> list[list]:
    """Greedy MAP by brute force: each step adds the candidate maximising det(L_Y+i).

    L = diag(q) S diag(q), S = cosine of the candidates' embeddings, q = exp(beta * z),
    z = (s - mean) / (std + eps32) over the unseen candidates, beta = (1 - div) * scale.
    Once the best gain det(L_Y+i) / det(L_Y) <= 1e-6 * max_i L_ii, fill by score order.
    """
    out = []
    for u in range(scores.shape[0]):
        row = scores[u].numpy()
        cands = ref_candidates(row, m)
        x = unit_rows(user_embeddings(emb, u)[cands])
        s = row[cands]
        q = np.exp((1 - div) * scale * (s - s.mean()) / (s.std() + EPS32))
        sim = x @ x.T
        np.fill_diagonal(sim, 1.0)  # cosine self-similarity is exactly 1 (no zero vectors)
        kernel = q[:, None] * sim * q[None, :]
        limit = 1e-6 * kernel.diagonal().max()
        picked: list[int] = []  # positions in cands
        done = False
        while len(picked) < k:
            if not done:
                base = np.linalg.det(kernel[np.ix_(picked, picked)]) if picked else 1.0
                best, best_gain = None, -np.inf
                for i in range(len(cands)):
                    if i in picked:
                        continue
                    sub = picked + [i]
                    gain = np.linalg.det(kernel[np.ix_(sub, sub)]) / base
                    if gain > best_gain:
                        best, best_gain = i, gain
                done = best_gain <= limit
            if done:
                best = next(i for i in range(len(cands)) if i not in picked)
            picked.append(best)
        out.append([cands[i] for i in picked])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_user", [False, True])
@pytest.mark.parametrize("div", [0.2, 0.6, 1.0])
def test_matches_determinant_reference(seed, per_user, div):
    scores, emb = random_case(seed, per_user=per_user)
    got = dpp(scores, emb, k=5, diversity=div, candidates=30)
    assert got.tolist() == ref_dpp(scores, emb, 5, div, 30)


def test_scale_and_all_candidates():
    scores, emb = random_case(8, n_items=40, dim=4)
    got = dpp(scores, emb, k=6, diversity=0.5, scale=2.5)
    assert got.tolist() == ref_dpp(scores, emb, 6, 0.5, 40, scale=2.5)


@pytest.mark.parametrize("per_user", [False, True])
def test_rank_exhausted_fills_by_score(per_user):
    # 2-D embeddings: the kernel has rank 2, so after two picks every gain is round-off and
    # the remaining three slots are the best-scored unpicked candidates.
    scores, emb = random_case(9, dim=2, per_user=per_user)
    got = dpp(scores, emb, k=5, diversity=0.5, candidates=30)
    expected = ref_dpp(scores, emb, 5, 0.5, 30)
    assert got.tolist() == expected
    for u, picks in enumerate(expected):
        rest = [i for i in ref_candidates(scores[u].numpy(), 30) if i not in picks[:2]]
        assert picks[2:] == rest[:3]


def test_independent_of_precomputed_rows(monkeypatch):
    scores, emb = random_case(3)
    expected = dpp(scores, emb, k=5, diversity=0.8, candidates=40)
    monkeypatch.setattr(kernels, "speculative_rows", lambda k, m: 1)
    assert torch.equal(dpp(scores, emb, k=5, diversity=0.8, candidates=40), expected)


def test_diversity_zero_is_top_k_and_seen_never_selected():
    scores, emb = random_case(4, n_seen=42)  # 8 unseen items
    expected = [ref_candidates(scores[u].numpy(), 50)[:5] for u in range(8)]
    assert dpp(scores, emb, 5, 0.0).tolist() == expected
    got = dpp(scores, emb, 8, 1.0)
    assert got.shape == (8, 8) and got.dtype == torch.long
    assert torch.isfinite(scores.gather(1, got)).all()
    assert all(len(set(r)) == 8 for r in got.tolist())


def test_matches_pyversity_on_nonnegative_embeddings():
    # pyversity.dpp uses the same kernel and standardisation; it adds eps32 to the initial
    # gains and to sqrt(d_j), which only matters for near-ties, and never stops early.
    pyversity = pytest.importorskip("pyversity")
    scores, emb = random_case(10, n_seen=5, nonneg=True, dim=8)
    scores, emb = scores.float(), emb.float()
    got = dpp(scores, emb, 6, 0.4, candidates=25)
    for u in range(8):
        cands = ref_candidates(scores[u].numpy(), 25)
        res = pyversity.dpp(emb.numpy()[cands], scores[u].numpy()[cands], 6, diversity=0.4)
        assert got[u].tolist() == [cands[i] for i in res.indices]


@pytest.mark.parametrize("bad", [-0.5, 1.01])
def test_bad_diversity_and_scale_raise(bad):
    scores, emb = random_case(0)
    with pytest.raises(ConfigError, match="diversity"):
        dpp(scores, emb, 5, bad)
    with pytest.raises(ConfigError, match="diversity"):
        rerank("dpp", scores, 5, bad, embeddings=emb)
    with pytest.raises(ConfigError, match="scale"):
        dpp(scores, emb, 5, 0.5, scale=-1.0)
    with pytest.raises(DataError, match="embeddings"):
        dpp(scores, emb[None].expand(3, -1, -1), 5, 0.5)


@pytest.mark.parametrize("per_user", [False, True])
def test_zero_embedding_has_no_gain_and_is_filled_last(per_user):
    # Items 0, 1, 2 with embeddings e0=(1,0), e1=(0,0), e2=(0,1) and scores 3 > 2 > 1.
    # Pick 1: max L_ii = q_i^2 -> item 0. Then d_1^2 = L_11 = 0 and d_2^2 = q_2^2 (orthogonal
    # to e0) > 0 -> item 2. Item 1's gain 0 is below the threshold, so it fills the last slot.
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    emb = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert dpp(scores, emb[None] if per_user else emb, 3, 0.5).tolist() == [[0, 2, 1]]


def test_large_scale_does_not_overflow():
    # One outlier score gives z = sqrt(M - 1) ~ 6.2 here; with scale 40 exp(beta * z) overflows
    # float32 (~exp(88)), yet the picks must stay finite, distinct and match the reference.
    scores, emb = random_case(12, n_seen=0)
    scores[:, 0] = 50.0
    got = dpp(scores.float(), emb.float(), 5, 0.5, candidates=40, scale=40.0)
    assert got.tolist() == ref_dpp(scores, emb, 5, 0.5, 40, scale=40.0)
