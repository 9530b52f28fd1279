"""``eval.diversity_space``: ild_emb is measured in the chosen item space, not the re-rankers'."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from divrec.data.catalogue import Catalogue
from divrec.data.history import History
from divrec.errors import ConfigError
from divrec.evaluation.module import RankingModule
from divrec.metrics.spaces import tfidf_vectors
from divrec.run.build import _needs_reference

# Three items: reference vectors, categories and texts chosen so each space gives another ILD.
REFERENCE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
TEXTS = ["red apple", "Red car", "blue car"]


def ild(cosines: list[float]) -> float:
    """1 - mean of the three pairwise cosines (0-1, 0-2, 1-2) of a 3-item list."""
    return 1.0 - sum(cosines) / 3


def hand_ild() -> dict[str, float]:
    # reference: cos(0,1) = 0, cos(0,2) = cos(1,2) = 1/sqrt(2).
    s = 1 / math.sqrt(2)
    # categories {A}, {A}, {B}: cosines 1, 0, 0.
    # tfidf: idf(red) = idf(car) = ln(4/3) + 1 (2 of 3 texts), idf(apple) = idf(blue) = ln(2) + 1;
    # d0 = (red a, apple b), d1 = (red a, car a), d2 = (car a, blue b); only 0-1 and 1-2 share
    # a word: cos = a^2 / (sqrt(a^2 + b^2) * sqrt(2) a).
    a, b = math.log(4 / 3) + 1, math.log(2) + 1
    c = a * a / (math.sqrt(a * a + b * b) * math.sqrt(2) * a)
    return {
        "reference": ild([0.0, s, s]),
        "categories": ild([1.0, 0.0, 0.0]),
        "tfidf": ild([c, 0.0, c]),
    }


def tiny_dm() -> SimpleNamespace:
    """What ``attach_eval`` reads of a data module: one user with one training item."""
    catalogue = Catalogue(
        item_ids=["i0", "i1", "i2"],
        titles=TEXTS,
        texts=TEXTS,
        category_names=["A", "B"],
        category_matrix=torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        popularity=torch.tensor([1.0, 0.0, 0.0]),
    )
    history = History(torch.tensor([0, 1]), torch.tensor([0]), max_len=5)
    return SimpleNamespace(
        catalogue=catalogue, history=history, user_ids=["u0"], user_interests=None
    )


@pytest.mark.parametrize("space", ["reference", "categories", "tfidf"])
def test_ild_emb_uses_the_chosen_space(space):
    evaluation = {"metrics": ["ild_emb"], "ks": [3], "diversity_space": space}
    module = RankingModule(evaluation, {"name": "mmr", "diversity": 0.5})
    module.attach_eval(tiny_dm(), REFERENCE)
    module.test_metrics.update(
        torch.tensor([[0, 1, 2]]), torch.tensor([[1, 0, 0]]), torch.tensor([0])
    )
    got = module.test_metrics.compute()["test/ild_emb@3"]
    assert got == pytest.approx(hand_ild()[space], abs=1e-6)
    # The re-ranker keeps the reference space whatever the metric uses.
    assert torch.allclose(module.ranker.embeddings, torch.nn.functional.normalize(REFERENCE, dim=1))


def test_unknown_space_is_a_config_error():
    module = RankingModule({"metrics": ["ild_emb"], "ks": [3], "diversity_space": "bogus"})
    with pytest.raises(ConfigError, match="diversity_space"):
        module.attach_eval(tiny_dm(), REFERENCE)


def test_tfidf_keeps_the_most_frequent_words():
    # Word counts: red 2, car 2, apple 1, blue 1; two terms keep car and red (ties by word).
    vec = tfidf_vectors(TEXTS, terms=2)
    a = math.log(4 / 3) + 1
    assert torch.allclose(vec, torch.tensor([[0.0, a], [a, a], [a, 0.0]]))


def test_reference_is_loaded_only_where_used():
    def cfg(space: str, rerank: str = "none", names=None, metrics=("ild_emb",)):
        sweep = {"names": names} if names else None
        return OmegaConf.create(
            {
                "rerank": {"name": rerank},
                "rerank_sweep": sweep,
                "eval": {"metrics": list(metrics), "diversity_space": space},
            }
        )

    assert _needs_reference(cfg("reference"))
    assert not _needs_reference(cfg("tfidf"))
    assert not _needs_reference(cfg("reference", metrics=("ndcg",)))
    assert _needs_reference(cfg("categories", rerank="dpp"))
    assert _needs_reference(cfg("tfidf", names=["mmr"]))  # a sweep's re-ranker needs it too
