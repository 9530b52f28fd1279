"""The diversity regulariser acts on the scores the model serves (u @ v.T / temperature,
duplicates masked), not on the logQ-corrected logits the relevance loss uses."""

from __future__ import annotations

import pytest
import torch

from divrec.losses import ILS, RELEVANCE_LOSSES
from divrec.run.train import train


@pytest.mark.parametrize(
    "tower", [[], ["model.user_tower=history", "model/pooling=additive"]], ids=["text", "additive"]
)
def test_diversity_term_sees_uncorrected_scores(compose, monkeypatch, tower):
    calls: list[dict] = []
    real_loss, real_ils = RELEVANCE_LOSSES["softmax"], ILS.compute

    def spy_loss(user, item, item_idx, temperature, log_q=None):
        rel, logits = real_loss(user, item, item_idx, temperature, log_q)
        calls.append(dict(user=user, item=item, idx=item_idx, t=temperature, log_q=log_q))
        calls[-1]["corrected"] = logits.detach()
        return rel, logits

    def spy_ils(self, logits, cand_emb, cand_cats):
        out = real_ils(self, logits, cand_emb, cand_cats)
        calls[-1].update(div_logits=logits.detach(), div=out.detach(), emb=cand_emb.detach())
        return out

    monkeypatch.setitem(RELEVANCE_LOSSES, "softmax", spy_loss)
    monkeypatch.setattr(ILS, "compute", spy_ils)
    train(
        compose(
            "loss/diversity=ils",
            "loss.diversity_weight=0.5",
            "trainer.limit_train_batches=2",
            "test=false",
            *tower,
        )
    )
    monkeypatch.undo()  # the reference terms below must not pass through the spy
    steps = [c for c in calls if "div_logits" in c]
    assert len(steps) == 2
    for c in steps:
        idx = c["idx"]
        tilt = c["log_q"][idx]
        assert (tilt.max() - tilt.min()).item() > 2.0  # popularity spans > 2 nats in the batch
        # Reference by hand: plain scores / temperature, other copies of the positive -inf.
        served = (c["user"] @ c["item"].T / c["t"]).detach()
        dup = (idx[:, None] == idx[None, :]) & ~torch.eye(len(idx), dtype=torch.bool)
        served = served.masked_fill(dup, float("-inf"))
        assert torch.equal(c["div_logits"], served)
        ils = ILS("embedding")
        assert c["div"].item() == pytest.approx(ils(served, c["emb"], None).item(), abs=1e-6)
        tilted = ils(c["corrected"], c["emb"], None).item()
        assert abs(c["div"].item() - tilted) > 1e-3  # the logQ tilt would have changed the term
