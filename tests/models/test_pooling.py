"""History poolings against hand-computed numbers and direct (loop) formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from divrec.errors import ConfigError
from divrec.models.pooling import (
    AdditivePooling,
    MeanPooling,
    MultiheadPooling,
    SimilarityPooling,
    build_history_pooling,
)

# One user, three history items in 2-d (unit vectors) plus one padded slot:
# v1 = (1, 0), v2 = (0.6, 0.8), v3 = (-1, 0).
H = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [5.0, 5.0]]])
MASK = torch.tensor([[True, True, True, False]])
# First pass v_u = mean = (0.6/3, 0.8/3) = (0.2, 0.2667), |v_u| = sqrt(0.04 + 0.0711) = 1/3.
# s = cos(v_u, v_i) = (0.2/(1/3), (0.12 + 0.2133)/(1/3), -0.2/(1/3)) = (0.6, 1.0, -0.6).
S = [0.6, 1.0, -0.6]


def test_mean_pooling_uniform_weights_and_empty_history():
    h = torch.cat([H, H])
    mask = torch.cat([MASK, torch.zeros_like(MASK)])
    pooled, w = MeanPooling()(h, mask)
    # mean of v1..v3 = (0.6/3, 0.8/3); the padded (5, 5) is ignored.
    torch.testing.assert_close(pooled[0], torch.tensor([0.2, 0.8 / 3]))
    torch.testing.assert_close(w[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))
    assert pooled[1].abs().sum() == 0 and w[1].abs().sum() == 0


def test_similarity_clamp_matches_hand_computation():
    pooled, w = SimilarityPooling(mode="clamp")(H, MASK)
    # clamp: (0.6, 1.0, 0) / 1.6 = (0.375, 0.625, 0): the negative cosine gets weight 0.
    torch.testing.assert_close(w[0], torch.tensor([0.375, 0.625, 0.0, 0.0]))
    assert w.sum().item() == pytest.approx(1.0)
    # 0.375 * (1, 0) + 0.625 * (0.6, 0.8) = (0.75, 0.5)
    torch.testing.assert_close(pooled[0], torch.tensor([0.75, 0.5]))


def test_similarity_clamp_falls_back_to_uniform_when_no_positive_similarity():
    # v1 = (1, 0), v2 = (-1, 0): the mean is 0, every cosine is 0 -> uniform weights.
    h = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    pooled, w = SimilarityPooling(mode="clamp")(h, torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(pooled, torch.zeros(1, 2))


def test_similarity_softmax_is_a_distribution_with_temperature():
    tau = 0.5
    _, w = SimilarityPooling(mode="softmax", temperature=tau)(H, MASK)
    e = [math.exp(s / tau) for s in S]
    expected = [x / sum(e) for x in e] + [0.0]
    torch.testing.assert_close(w[0], torch.tensor(expected))
    assert w.sum().item() == pytest.approx(1.0)


def _direct_din_logit(pool: AdditivePooling, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The textbook DIN unit on one (history item, candidate) pair: MLP([h', c', h'c', h'-c'])."""
    hq, cq = pool.proj(h), pool.proj(c)
    x = torch.cat([hq, cq, hq * cq, hq - cq])
    return pool.fc2(F.relu(pool.fc1(x))).squeeze()


@pytest.fixture
def din() -> AdditivePooling:
    torch.manual_seed(0)
    pool = AdditivePooling(dim=6, attn_dim=4, hidden=5, chunk_elems=60)  # tiny chunks: several
    torch.nn.init.normal_(pool.fc2.weight)  # leave the zero init: non-uniform weights
    return pool


def test_additive_starts_as_mean_pooling():
    pool = AdditivePooling(dim=2, attn_dim=3, hidden=4)
    _, w = pool(H, MASK, target=torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(w[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))


def test_additive_logits_and_weights_match_direct_mlp(din):
    torch.manual_seed(1)
    h = torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    cands = torch.randn(4, 6)
    w = din.candidate_weights(h, mask, cands.unsqueeze(0))  # [2, 4, 3]
    for b in range(2):
        for n in range(4):
            logits = torch.stack([_direct_din_logit(din, h[b, j], cands[n]) for j in range(3)])
            logits = logits.masked_fill(~mask[b], float("-inf"))
            torch.testing.assert_close(w[b, n], torch.softmax(logits, 0), atol=1e-5, rtol=1e-5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4))
    _, wt = din(h, mask, target=cands[:2])  # forward with a target = that candidate's weights
    torch.testing.assert_close(wt, torch.stack([w[0, 0], w[1, 1]]))


def test_additive_full_catalogue_scores_match_per_candidate_loop(din):
    torch.manual_seed(2)
    h = F.normalize(torch.randn(2, 3, 6), dim=-1)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    values = torch.randn(2, 3, 6)
    items = F.normalize(torch.randn(7, 6), dim=-1)
    with torch.no_grad():
        scores, cf = din.score(h, mask, values, items, lambda s, e: h @ items[s:e].T)
    assert din.chunk_size(2, 3) < 7  # the test covers several chunks
    for b in range(2):
        for n in range(7):
            with torch.no_grad():
                a = din.candidate_weights(h[b : b + 1], mask[b : b + 1], items[n].view(1, 1, -1))
            a = a[0, 0]
            u = (a[:, None] * values[b]).sum(0)
            assert scores[b, n].item() == pytest.approx(
                F.cosine_similarity(u, items[n], 0).item(), abs=1e-5
            )
            item_based = sum(a[j] * (h[b, j] @ items[n]) for j in range(3))
            assert cf[b, n].item() == pytest.approx(float(item_based), abs=1e-5)


def test_multihead_matches_manual_attention_and_handles_empty_history():
    torch.manual_seed(3)
    d, heads = 4, 2
    pool = MultiheadPooling(dim=d, heads=heads).eval()
    h = torch.randn(2, 3, d)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    pooled, w = pool(h, mask)
    wq, wk, wv = pool.attn.in_proj_weight.chunk(3)
    bq, bk, bv = pool.attn.in_proj_bias.chunk(3)
    q = pool.query[0, 0] @ wq.T + bq
    k, v = h[0] @ wk.T + bk, h[0] @ wv.T + bv
    dh = d // heads
    per_head, outs = [], []
    for i in range(heads):
        sl = slice(i * dh, (i + 1) * dh)
        logits = (k[:, sl] @ q[sl]) / math.sqrt(dh)
        a = torch.softmax(logits.masked_fill(~mask[0], float("-inf")), 0)
        per_head.append(a)
        outs.append(a @ v[:, sl])
    expected_w = torch.stack(per_head).mean(0)
    expected = pool.attn.out_proj(torch.cat(outs))
    torch.testing.assert_close(w[0], expected_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pooled[0], expected, atol=1e-6, rtol=1e-5)
    assert w[0, 2] == 0 and w[0].sum().item() == pytest.approx(1.0)
    assert torch.isfinite(pooled).all() and pooled[1].abs().sum() == 0 and w[1].abs().sum() == 0


def test_build_history_pooling_errors_name_the_key():
    assert isinstance(build_history_pooling("similarity", dim=4, mode="softmax"), SimilarityPooling)
    with pytest.raises(ConfigError, match="model.pooling.name"):
        build_history_pooling("max", dim=4)
    with pytest.raises(ConfigError, match="model.pooling.mode"):
        build_history_pooling("similarity", dim=4, mode="relu")
    with pytest.raises(ConfigError, match="model.pooling.heads"):
        build_history_pooling("multihead", dim=6, heads=4)
    with pytest.raises(ConfigError, match="model.pooling"):
        build_history_pooling("mean", dim=4, bogus=1)
