"""The evaluated path from scores to lists: normalisation, re-ranking, short candidate lists."""

import pytest
import torch

from divrec.errors import DataError
from divrec.evaluation.pipeline import Ranker
from divrec.rerank import mmr, rerank
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


def _case(seed=0, users=5, items=12, d=4, c=3):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(users, items, generator=g)
    emb = torch.nn.functional.normalize(torch.rand(items, d, generator=g), dim=1)
    cats = (torch.rand(items, c, generator=g) < 0.5).float()
    ucats = torch.rand(users, c, generator=g)
    return scores, emb, cats, ucats / ucats.sum(1, keepdim=True)


@pytest.mark.parametrize("name", ["mmr", "dpp", "xquad"])
def test_users_with_fewer_unseen_items_than_k_get_all_of_them_then_seen(name):
    """A small catalogue: user 1 has 3 unseen items for k=6 (today: DataError after training)."""
    scores, emb, cats, ucats = _case()
    seen = torch.zeros_like(scores, dtype=torch.bool)
    seen[1, 3:] = True  # user 1: items 0, 1, 2 unseen
    seen[2, :4] = True  # user 2: 8 unseen, enough
    ranker = Ranker(name=name, diversity=0.5, candidates=12, embeddings=emb, categories=cats)
    top = ranker.rank(scores, seen, 6, ucats)
    assert top.shape == (5, 6)
    # user 1: its 3 unseen items, re-ranked as the re-ranker orders them for k=3, then the
    # seen items lowest index first
    masked = scores.masked_fill(seen, float("-inf"))
    norm = minmax_over_candidates(masked, 12)
    head = rerank(name, norm[1:2], 3, 0.5, emb, cats, ucats[1:2], candidates=12)
    assert top[1, :3].tolist() == head[0].tolist()
    assert sorted(top[1, :3].tolist()) == [0, 1, 2]
    assert top[1, 3:].tolist() == [3, 4, 5]
    # every other user: exactly the full re-ranker's list
    others = [0, 2, 3, 4]
    full = rerank(name, norm[others], 6, 0.5, emb, cats, ucats[others], candidates=12)
    assert torch.equal(top[others], full)
    for u in others:
        assert not seen[u, top[u]].any()


def test_a_user_with_no_unseen_item_gets_seen_items_in_index_order():
    scores, emb, cats, ucats = _case(items=6)
    seen = torch.zeros_like(scores, dtype=torch.bool)
    seen[0] = True
    top = Ranker(name="mmr", diversity=0.3, candidates=6, embeddings=emb).rank(scores, seen, 4)
    assert top[0].tolist() == [0, 1, 2, 3]


def test_nan_scores_name_the_batch_row():
    scores, emb, _, _ = _case()
    scores[3, 2] = float("nan")
    with pytest.raises(DataError, match="user row 3"):
        Ranker(name="mmr", diversity=0.3, candidates=12, embeddings=emb).rank(scores, None, 4)


def test_eval_errors_name_the_user_id():
    from divrec.evaluation.ranking import _name_users

    msg = _name_users(
        "rerank: scores contain NaN or +inf (user row 1)",
        torch.tensor([7, 2]),
        [f"u{i}" for i in range(9)],
    )
    assert msg == "rerank: scores contain NaN or +inf (user 'u2')"


def test_rerank_on_a_catalogue_smaller_than_save_topk_plus_seen(compose):
    """A real run: 300 items, lists of 290, ~25 seen per user: every user is short."""
    import pandas as pd

    from divrec.run.train import train

    cfg = compose("rerank=mmr", "eval.save_topk=290", "rerank.candidates=300")
    train(cfg)
    out = cfg.paths.output_dir
    recs = pd.read_parquet(f"{out}/recommendations.parquet")
    assert recs.groupby("user_id").size().eq(290).all()
    train_pairs = pd.read_parquet(f"{out}/split/train.parquet")
    seen = set(zip(train_pairs.user_id.astype(str), train_pairs.item_id.astype(str), strict=True))
    head = recs[recs["rank"] <= 200]  # far above any user's unseen count's end
    assert not any((u, i) in seen for u, i in zip(head.user_id, head.item_id, strict=True))
