"""``loss.diversity.scope=topk``: terms over a candidate set of each user's own."""

from __future__ import annotations

import pytest
import torch

from divrec.errors import ConfigError
from divrec.losses import ILS, CategoryEntropy, DPPTerm
from divrec.run.train import train

TERMS = {
    "ils_emb": lambda: ILS("embedding"),
    "ils_cat": lambda: ILS("category"),
    "ils_raw": lambda: ILS("embedding", normalize=False),
    "category_entropy": CategoryEntropy,
    "dpp": lambda: DPPTerm(top_m=3),
}


@pytest.mark.parametrize("name", sorted(TERMS))
def test_per_user_candidates_equal_the_mean_of_one_user_batches(name):
    """[B, C, d] / [B, C, K] candidates: the term is the mean over users of the term of each
    user alone with its candidates as the shared [C, d] / [C, K] set."""
    g = torch.Generator().manual_seed(1)
    b, c = 4, 6
    logits = torch.randn(b, c, generator=g, dtype=torch.float64) * 2
    emb = torch.randn(b, c, 5, generator=g, dtype=torch.float64)
    cats = (torch.rand(b, c, 3, generator=g) < 0.5).double()
    term = TERMS[name]()
    got = term(logits, emb, cats)
    ref = torch.stack([term(logits[i : i + 1], emb[i], cats[i]) for i in range(b)]).mean()
    assert got.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)


def test_topk_scope_trains_on_each_users_top_c(compose, monkeypatch):
    seen = []
    real = ILS.compute

    def spy(self, logits, cand_emb, cand_cats):
        seen.append((tuple(logits.shape), tuple(cand_emb.shape)))
        return real(self, logits, cand_emb, cand_cats)

    monkeypatch.setattr(ILS, "compute", spy)
    train(
        compose(
            "loss/diversity=ils",
            "loss.diversity.scope=topk",
            "loss.diversity.top_c=7",
            "loss.diversity_weight=0.5",
            "trainer.limit_train_batches=2",
            "test=false",
        )
    )
    assert len(seen) == 2
    for logits, emb in seen:
        assert logits == (64, 7) and emb[:2] == (64, 7)  # batch_size 64, 7 candidates each


def test_topk_scope_needs_a_frozen_encoder(compose):
    with pytest.raises(ConfigError, match="scope=topk needs"):
        train(
            compose(
                "loss/diversity=ils",
                "loss.diversity.scope=topk",
                "model.encoder.finetune=lora",
                "trainer.limit_train_batches=1",
            )
        )
