"""Score normalisation before re-ranking."""

import torch

from divrec.rerank import mmr
from divrec.rerank.candidates import minmax_over_candidates


def test_minmax_over_candidates_hand_values():
    inf = float("inf")
    scores = torch.tensor([[10.0, 4.0, -inf, 6.0, 2.0], [0.5, 0.3, 0.1, 0.2, 0.4]])
    out = minmax_over_candidates(scores, m=3)
    # user 0: top-3 finite = 10, 6, 4 -> (s - 4) / 6; the seen item stays -inf
    assert torch.allclose(out[0, [0, 1, 3, 4]], torch.tensor([1.0, 0.0, 2 / 6, -2 / 6]))
    assert out[0, 2] == -inf
    # user 1: top-3 = 0.5, 0.4, 0.3 -> (s - 0.3) / 0.2
    assert torch.allclose(out[1], torch.tensor([1.0, 0.0, -1.0, -0.5, 0.5]), atol=1e-6)


def test_normalised_mmr_is_scale_free():
    """Multiplying a user's scores by 100 (counts vs cosines) changes raw MMR, not normalised."""
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 30, generator=g)
    emb = torch.rand(30, 8, generator=g)
    picks = [
        mmr(minmax_over_candidates(s, 20), emb, 5, 0.5, candidates=20)
        for s in (scores, scores * 100)
    ]
    assert torch.equal(picks[0], picks[1])
    raw = mmr(scores * 100, emb, 5, 0.5, candidates=20)
    assert torch.equal(raw, mmr(scores * 100, emb, 5, 0.0, candidates=20))  # relevance swamps
