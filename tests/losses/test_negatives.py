"""Extra sampled negatives: q_n = pop^alpha / sum, the mixture logQ, the loss by hand, a run."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chi2

from divrec.errors import ConfigError
from divrec.losses import sampled_softmax_loss
from divrec.losses.negatives import (
    check_negatives,
    mixed_softmax_loss,
    mixture_log_count,
    negative_distribution,
)


def test_popularity_distribution_and_sampling_frequencies():
    pop = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0])
    alpha = 0.75
    w = [0.0] + [p**alpha for p in (1.0, 3.0, 6.0, 10.0)]
    want = [x / sum(w) for x in w]
    q = negative_distribution(pop, "popularity", alpha)
    assert q.tolist() == pytest.approx(want)
    assert negative_distribution(pop, "uniform").tolist() == pytest.approx([0.2] * 5)
    n = 100_000
    gen = torch.Generator().manual_seed(0)
    draws = torch.multinomial(q.float(), n, replacement=True, generator=gen)
    counts = torch.bincount(draws, minlength=5).tolist()
    assert counts[0] == 0  # no training interaction: never drawn for alpha > 0
    stat = sum((c - n * p) ** 2 / (n * p) for c, p in zip(counts[1:], want[1:], strict=True))
    assert stat < chi2.ppf(0.999, 3)


def test_mixture_log_count_by_hand():
    log_q = torch.log(torch.tensor([0.25, 0.75]))
    q_neg = torch.tensor([0.5, 0.5])
    # c = B q_b + n q_n = [4 * .25 + 2 * .5, 4 * .75 + 2 * .5] = [2, 4]
    got = mixture_log_count(log_q, q_neg, batch_size=4, n=2)
    assert got.tolist() == pytest.approx([math.log(2.0), math.log(4.0)])


def test_loss_equals_hand_computation():
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    item = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # items 0 and 1 (the positives)
    neg = torch.tensor([[0.6, 0.8], [0.0, 1.0]])  # sampled items 2 and 1
    idx, neg_idx = torch.tensor([0, 1]), torch.tensor([2, 1])
    log_count = torch.log(torch.tensor([2.0, 4.0, 1.0]))
    loss, logits = mixed_softmax_loss(user, item, idx, neg, neg_idx, 0.5, log_count)
    l2, l4 = math.log(2.0), math.log(4.0)
    row0 = [1 / 0.5 - l2, 0 - l4, 0.6 / 0.5 - 0.0, 0 - l4]
    row1 = [0 - l2, 1 / 0.5 - l4, 0.8 / 0.5 - 0.0]  # sampled item 1 is row 1's positive: masked

    def nll(row: list[float], pos: int) -> float:
        return -(row[pos] - math.log(sum(math.exp(x) for x in row)))

    assert loss.item() == pytest.approx((nll(row0, 0) + nll(row1, 1)) / 2, rel=1e-6)
    assert logits.shape == (2, 4) and logits[1, 3] == -math.inf
    plain, _ = mixed_softmax_loss(user, item, idx, neg, neg_idx, 0.5, None)
    r0 = [2.0, 0.0, 1.2, 0.0]
    r1 = [0.0, 2.0, 1.6]
    assert plain.item() == pytest.approx((nll(r0, 0) + nll(r1, 1)) / 2, rel=1e-6)


def test_without_extra_negatives_it_is_the_in_batch_softmax():
    gen = torch.Generator().manual_seed(1)
    user, item = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    idx = torch.tensor([0, 3, 3, 5, 7, 1])
    log_q = torch.log_softmax(torch.randn(9, generator=gen), 0)
    empty = torch.zeros(0, 4)
    lc = mixture_log_count(log_q, torch.zeros(9), batch_size=6, n=0)  # log q_b + log B
    got, _ = mixed_softmax_loss(user, item, idx, empty, torch.zeros(0, dtype=torch.long), 0.3, lc)
    want, _ = sampled_softmax_loss(user, item, idx, 0.3, log_q)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_bad_options_are_one_config_error():
    with pytest.raises(ConfigError, match="loss.negatives"):
        check_negatives("hard", 8, 0.75, "softmax")
    with pytest.raises(ConfigError, match="n_negatives"):
        check_negatives("popularity", 0, 0.75, "softmax")
    with pytest.raises(ConfigError, match="negative_alpha"):
        check_negatives("popularity", 8, -1.0, "softmax")
    with pytest.raises(ConfigError, match="relevance=softmax"):
        check_negatives("uniform", 8, 0.75, "bpr")
    check_negatives("in_batch", 256, 0.75, "bpr")  # the default never complains
    with pytest.raises(ConfigError, match="no item"):
        negative_distribution(torch.zeros(4), "popularity", 0.75)


@pytest.mark.slow
def test_tiny_run_with_popularity_negatives_learns(tmp_path_factory, tiny_model_dir, shared_cache):
    from tests.test_learning import LEARN, TRAINED_MIN, TWO_TOWER, _run

    def run(*o: str) -> float:
        m = _run(tmp_path_factory, tiny_model_dir, shared_cache, *LEARN, *TWO_TOWER, "seed=1", *o)
        return m["test/ndcg@10"]

    pop_neg = ["loss.negatives=popularity", "loss.n_negatives=64"]
    trained, untrained = run(*pop_neg), run(*pop_neg, "train=false")
    assert trained >= TRAINED_MIN, trained
    assert trained >= 2.0 * untrained, (trained, untrained)
