"""DPP: batched log-domain greedy equals a per-user greedy on explicit log-determinants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import divrec.rerank.kernels as kernels
from divrec.errors import ConfigError, DataError
from divrec.rerank import dpp, rerank
from divrec.rerank.dpp import relevance_weight

from . import random_case, ref_candidates, unit_rows, user_embeddings

EPS32 = float(np.finfo(np.float32).eps)


def ref_alpha(div: float) -> float:
    """Chen et al. 2018: alpha = theta / (2 (1 - theta)), theta = 1 - div weighs relevance."""
    theta = 1.0 - div
    return theta / (2.0 * (1.0 - theta))


def ref_dpp(scores, emb, k: int, div: float, m: int, log_identity: bool = False) -> list[list]:
    """Greedy MAP by brute force in float64, per user over their top-``m`` candidates."""
    out = []
    for u in range(scores.shape[0]):
        row = scores[u].numpy()
        cands = ref_candidates(row, m)
        x = unit_rows(user_embeddings(emb, u)[cands])
        sim = x @ x.T
        sim[np.diag_indices_from(sim)] = np.linalg.norm(x, axis=1) > 0  # 1 (0 for zero vectors)
        picked = ref_greedy(row[cands], sim, k, ref_alpha(div), log_identity)
        out.append([cands[i] for i in picked])
    return out


def ref_greedy(r, sim, k: int, alpha: float, log_identity: bool) -> list[int]:
    """Each step adds the candidate maximising log det(L'_Y+i), L' = Diag(exp(alpha r)) S
    Diag(exp(alpha r)), S = ``sim``, r = the scores, ties to the earlier candidate.

    A candidate with det(S_Y+i) / det(S_Y) <= 1e-6 * max_i S_ii is spanned by the picks and not
    eligible; once none is eligible, fill by score order. ``log_identity`` evaluates
    log det L'_Y as 2 alpha sum_Y r + log det S_Y (for alphas whose exp overflows float64).
    """
    q = np.exp(alpha * r) if not log_identity else np.ones_like(r)
    kernel = q[:, None] * sim * q[None, :]
    limit = 1e-6 * sim.diagonal().max()
    picked: list[int] = []  # candidate positions
    done = False  # residuals only shrink: once nothing is eligible, nothing will be
    while len(picked) < k:
        base = np.linalg.det(sim[np.ix_(picked, picked)]) if picked else 1.0
        best, best_val = None, -np.inf
        for i in range(len(r)) if not done else ():
            sub = picked + [i]
            if i in picked or np.linalg.det(sim[np.ix_(sub, sub)]) / base <= limit:
                continue
            if log_identity:
                val = 2 * alpha * r[sub].sum() + np.linalg.slogdet(sim[np.ix_(sub, sub)])[1]
            else:
                val = np.linalg.slogdet(kernel[np.ix_(sub, sub)])[1]
            if val > best_val:
                best, best_val = i, val
        if best is None:
            done = True
            best = next(i for i in range(len(r)) if i not in picked)
        picked.append(best)
    return picked


def overlap(a: list[list], b: list[list]) -> float:
    """Mean share of items two lists of lists have in common."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def test_relevance_weight_is_chen_et_al_alpha():
    # theta = 1 - diversity: 0.5 -> 0.5 / (2 * 0.5) = 0.5; 0.1 -> 0.9 / 0.2 = 4.5; 1 -> 0.
    assert relevance_weight(0.5) == pytest.approx(0.5)
    assert relevance_weight(0.1) == pytest.approx(4.5)
    assert relevance_weight(0.75) == pytest.approx(0.25 / 1.5)
    assert relevance_weight(1.0) == 0.0
    assert relevance_weight(0.0) == math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_user", [False, True])
@pytest.mark.parametrize("div", [0.1, 0.3, 0.6, 0.9, 1.0])
def test_matches_log_det_reference(seed, per_user, div):
    scores, emb = random_case(seed, per_user=per_user)
    got = dpp(scores, emb, k=5, diversity=div, candidates=30)
    assert got.tolist() == ref_dpp(scores, emb, 5, div, 30)


def test_minmax_scores_and_all_candidates():
    # Scores in [0, 1] per user, as the Ranker feeds them by default.
    scores, emb = random_case(8, n_items=40, dim=4)
    lo = scores.masked_fill(scores.isinf(), math.inf).amin(1, keepdim=True)
    hi = scores.amax(1, keepdim=True)
    scores = (scores - lo) / (hi - lo)
    got = dpp(scores, emb, k=6, diversity=0.2)
    assert got.tolist() == ref_dpp(scores, emb, 6, 0.2, 40)


def test_small_diversity_is_top_k_and_zero_is_its_limit():
    # alpha = 0.999 / 0.002 ~ 500: relevance dominates, the greedy returns the top-k (the
    # top-5 of 6-d Gaussian vectors are linearly independent), which is what diversity 0 gives.
    scores, emb = random_case(5, dim=6)
    top = [ref_candidates(scores[u].numpy(), 50)[:5] for u in range(8)]
    assert dpp(scores, emb, 5, 1e-3).tolist() == top
    assert dpp(scores, emb, 5, 0.0).tolist() == top


def test_list_change_grows_with_diversity():
    # Overlap with the plain top-10 falls from 1 at diversity 0 towards the pure DPP at 1.
    scores, emb = random_case(6, n_users=16, n_items=80, dim=16)
    top = dpp(scores, emb, 10, 0.0).tolist()
    curve = [overlap(dpp(scores, emb, 10, d).tolist(), top) for d in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert curve[0] == 1.0
    assert all(a >= b for a, b in zip(curve, curve[1:], strict=False))
    assert curve[1] < 1.0 and curve[-1] < 0.6


@pytest.mark.parametrize("per_user", [False, True])
def test_rank_exhausted_fills_by_score(per_user):
    # 2-D embeddings: S has rank 2, so after two picks every residual is round-off and the
    # remaining three slots are the best-scored unpicked candidates.
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


def test_matches_pyversity_with_per_user_scale():
    # pyversity.dpp weighs exp(beta z), z = (s - mean) / (std + eps32), beta = (1 - div) * scale:
    # with div = 0.5 and scale = 2 alpha (std + eps32) that is exp(alpha (s - mean)), our kernel
    # up to a per-user constant. It adds eps32 to the initial gains and to sqrt(d_j), which only
    # matters for near-ties, and never stops early.
    pyversity = pytest.importorskip("pyversity")
    scores, emb = random_case(10, n_seen=5, nonneg=True, dim=8)
    scores, emb = scores.float(), emb.float()
    got = dpp(scores, emb, 6, 0.4, candidates=25)
    for u in range(8):
        cands = ref_candidates(scores[u].numpy(), 25)
        s = scores[u].numpy()[cands]
        scale = 2 * ref_alpha(0.4) * (float(s.std()) + EPS32)
        res = pyversity.dpp(emb.numpy()[cands], s, 6, diversity=0.5, scale=scale)
        assert got[u].tolist() == [cands[i] for i in res.indices]


@pytest.mark.parametrize("bad", [-0.5, 1.01])
def test_bad_diversity_raises(bad):
    scores, emb = random_case(0)
    with pytest.raises(ConfigError, match="diversity"):
        dpp(scores, emb, 5, bad)
    with pytest.raises(ConfigError, match="diversity"):
        rerank("dpp", scores, 5, bad, embeddings=emb)
    with pytest.raises(DataError, match="embeddings"):
        dpp(scores, emb[None].expand(3, -1, -1), 5, 0.5)


@pytest.mark.parametrize("per_user", [False, True])
def test_zero_embedding_has_no_gain_and_is_filled_last(per_user):
    # Items 0, 1, 2 with embeddings e0=(1,0), e1=(0,0), e2=(0,1) and scores 3 > 2 > 1.
    # Pick 1: max exp(2 alpha r_i) S_ii -> item 0. Then item 1's residual S_11 = 0 (spanned),
    # item 2's is 1 (orthogonal to e0) -> item 2. Item 1 fills the last slot.
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    emb = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert dpp(scores, emb[None] if per_user else emb, 3, 0.5).tolist() == [[0, 2, 1]]


def test_large_alpha_does_not_overflow():
    # diversity 0.01 -> alpha = 49.5; scores x 20 make 2 alpha r reach ~1e4: exp overflows
    # float64, yet the float32 picks stay finite, distinct and match the log-det reference.
    scores, emb = random_case(12, n_seen=0)
    scores = scores * 20
    got = dpp(scores.float(), emb.float(), 5, 0.01, candidates=40)
    assert got.tolist() == ref_dpp(scores, emb, 5, 0.01, 40, log_identity=True)
