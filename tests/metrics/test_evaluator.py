"""Evaluator mechanics: accumulation, DDP-style merging, validation, and the plain top-k path."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics import Metric

from divrec.errors import ConfigError, DataError
from divrec.evaluation.pipeline import Ranker
from divrec.metrics import RankingEvaluator, metric_names
from tests.metrics import KS, random_case

ALL = metric_names()


def topk_unseen(scores, seen, k):
    """The plain (no re-ranker) path of evaluation: mask seen, tie-aware top-k."""
    return Ranker().rank(scores, seen, k)


def _assert_same(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if math.isnan(a[key]):
            assert math.isnan(b[key]), key
        else:
            assert a[key] == pytest.approx(b[key], abs=1e-9), key


def test_metric_names_and_keys() -> None:
    case = random_case(0)
    ev = case.evaluator(ALL, prefix="val")
    ev.update(*case.tensors(), seen=case.seen_tensor())
    out = ev.compute()
    assert set(ALL) == set(RankingEvaluator.metric_names())
    counts = {"val/n_users", "val/n_skipped_users", "val/n_repeat_users", "val/n_new_users"}
    counts |= {"val/n_cold_users"}
    want = {f"val/{m}@{k}" for m in ALL for k in KS} | counts
    assert set(out) == want
    assert all(math.isfinite(v) for v in out.values())


def test_accumulation_equals_one_batch() -> None:
    case = random_case(5, n_users=48)
    topk, truth, uidx = case.tensors()
    seen = case.seen_tensor()
    whole = case.evaluator(ALL)
    whole.update(topk, truth, uidx, seen)
    parts = case.evaluator(ALL)
    for lo, hi in [(0, 7), (7, 30), (30, 48)]:
        parts.update(topk[lo:hi], truth[lo:hi], uidx[lo:hi], seen[lo:hi])
    _assert_same(whole.compute(), parts.compute())


def test_merge_state_equals_all_users() -> None:
    """DDP-style: two evaluators on halves, states merged, equal one evaluator on all users."""
    case = random_case(6, n_users=40)
    topk, truth, uidx = case.tensors()
    seen = case.seen_tensor()
    whole = case.evaluator(ALL)
    whole.update(topk, truth, uidx, seen)
    rank0, rank1 = case.evaluator(ALL), case.evaluator(ALL)
    rank0.update(topk[:20], truth[:20], uidx[:20], seen[:20])
    rank1.update(topk[20:], truth[20:], uidx[20:], seen[20:])
    metrics0 = [m for m in rank0.modules() if isinstance(m, Metric)]
    metrics1 = [m for m in rank1.modules() if isinstance(m, Metric)]
    assert len(metrics0) == len(metrics1) > 0
    for m0, m1 in zip(metrics0, metrics1, strict=True):
        m0.merge_state(m1)
    _assert_same(whole.compute(), rank0.compute())
    # the halves alone differ from the whole (the merge test is not vacuous)
    assert rank1.compute()["test/item_coverage@12"] < whole.compute()["test/item_coverage@12"]


def test_skipped_users_and_reset() -> None:
    case = random_case(1)
    ev = case.evaluator(["ndcg", "gini"])
    topk, truth, uidx = case.tensors()
    truth[:] = False
    truth[0, 3] = True
    ev.update(topk, truth, uidx)
    out = ev.compute()
    assert out["test/n_users"] == 1.0
    assert out["test/n_skipped_users"] == len(case.lists) - 1
    ev.reset()
    out = ev.compute()  # no update since reset: no users, NaN means, zero exposure
    assert out["test/n_users"] == 0.0
    assert math.isnan(out["test/ndcg@1"])
    assert out["test/gini@1"] == 0.0


def test_states_are_submodules_and_not_checkpointed() -> None:
    case = random_case(2)
    ev = case.evaluator(ALL)
    kinds = {type(m).__name__ for m in ev.modules() if isinstance(m, Metric)}
    assert kinds == {
        "UserMeanMetric",
        "ExposureMetric",
        "ExpectedExposureMetric",
        "UserCountMetric",
    }
    assert ev.state_dict() == {}  # buffers and states are non-persistent
    ref = case.evaluator(ALL)
    ref.update(*case.tensors(), case.seen_tensor())
    # "bf16-true"-style casting must not degrade metric inputs or states
    ev.to(torch.device("cpu")).to(torch.bfloat16).half()
    assert ev.self_info.dtype == torch.float64 and ev.category_matrix.dtype == torch.float32
    ev.update(*case.tensors(), case.seen_tensor())
    _assert_same(ref.compute(), ev.compute())


def test_config_errors() -> None:
    case = random_case(0)
    with pytest.raises(ConfigError, match="supported"):
        case.evaluator(["ndcg", "bogus"])
    with pytest.raises(ConfigError, match="supported"):
        case.evaluator([])
    with pytest.raises(ConfigError, match="ks"):
        case.evaluator(["ndcg"], ks=[0, 5])
    with pytest.raises(ConfigError, match="ks"):
        case.evaluator(["ndcg"], ks=[case.n_items + 1])
    with pytest.raises(ConfigError, match="alpha"):
        case.evaluator(["alpha_ndcg"], alpha=1.5)
    ev = case.evaluator(["ndcg"], ks=[5])
    topk, truth, uidx = case.tensors()
    with pytest.raises(ConfigError, match="max\\(ks\\)"):
        ev.update(topk[:, :3], truth, uidx)
    with pytest.raises(DataError, match="item ids"):
        ev.update(topk + case.n_items, truth, uidx)
    with pytest.raises(DataError, match="items"):
        ev.update(topk, truth[:, :-1], uidx)


def _ref_topk(row: list[float], seen: list[bool], k: int) -> list[int]:
    """Seen items get -inf; order by score descending, then item id ascending."""
    keyed = [
        (-(float("-inf") if s else v), i) for i, (v, s) in enumerate(zip(row, seen, strict=True))
    ]
    return [i for _, i in sorted(keyed)[:k]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_unseen_matches_reference_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (30, 50), generator=g).float()  # many ties
    seen = torch.rand(30, 50, generator=g) < 0.3
    for k in [1, 7, 20]:
        got = topk_unseen(scores, seen, k)
        assert got.dtype == torch.long and got.shape == (30, k)
        assert not seen.gather(1, got).any()  # never a seen item
        for u in range(30):
            assert got[u].tolist() == _ref_topk(scores[u].tolist(), seen[u].tolist(), k)


def test_topk_unseen_tie_break_and_edges() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0]])
    # three 3.0 ties: ids 1, 2, 4 in id order; cut-off inside the tie keeps the lowest ids
    assert topk_unseen(scores, None, 2).tolist() == [[1, 2]]
    assert topk_unseen(scores, None, 4).tolist() == [[1, 2, 4, 3]]
    seen = torch.tensor([[False, True, False, False, False, False]])
    assert topk_unseen(scores, seen, 3).tolist() == [[2, 4, 3]]
    # distinct scores keep their order whatever their ids
    assert topk_unseen(torch.tensor([[0.1, 0.3, 0.2]]), None, 3).tolist() == [[1, 2, 0]]
    # more requested than unseen: seen (-inf) items fill the tail, lowest id first
    all_seen = torch.tensor([[True, True, False]])
    assert topk_unseen(torch.tensor([[5.0, 4.0, 1.0]]), all_seen, 3).tolist() == [[2, 0, 1]]
    with pytest.raises(DataError, match="NaN"):
        topk_unseen(torch.tensor([[float("nan"), 1.0, 2.0]]), None, 2)
    with pytest.raises(ConfigError, match="k="):
        topk_unseen(scores, None, 7)


def test_topk_unseen_feeds_evaluator() -> None:
    """End to end: recommending exactly the truth items gives perfect accuracy."""
    n = 20
    truth = torch.zeros(3, n, dtype=torch.bool)
    truth[0, [1, 2]] = truth[1, [5]] = truth[2, [7, 8, 9]] = True
    scores = truth.float() + 0.01 * torch.arange(n).flip(0)  # truth items first
    ev = RankingEvaluator(["ndcg", "recall"], [3], torch.ones(n, 1), torch.ones(n), 5)
    ev.update(topk_unseen(scores, None, 3), truth, torch.arange(3))
    out = ev.compute()
    assert out["test/ndcg@3"] == pytest.approx(1.0)
    assert out["test/recall@3"] == pytest.approx(1.0)


def test_internal_chunking_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting a batch into one-user chunks inside update() changes nothing."""
    case = random_case(7)
    whole = case.evaluator(ALL)
    whole.update(*case.tensors(), case.seen_tensor())
    monkeypatch.setattr("divrec.metrics.evaluator._CHUNK_ELEMENTS", 1)
    chunked = case.evaluator(ALL)
    chunked.update(*case.tensors(), case.seen_tensor())
    _assert_same(whole.compute(), chunked.compute())


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    case = random_case(8)
    topk, truth, uidx = case.tensors()
    seen = case.seen_tensor()
    ev = case.evaluator(ALL)
    if rank == 0:  # uneven split; rank 1 also gets a batch of only skipped users
        ev.update(topk[:13], truth[:13], uidx[:13], seen[:13])
    else:
        ev.update(topk[13:], truth[13:], uidx[13:], seen[13:])
        ev.update(topk[:4], torch.zeros_like(truth[:4]), uidx[:4], seen[:4])
    result = ev.compute()
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_real_gloo_ddp_reduction(tmp_path) -> None:
    """Two gloo processes: synced compute() equals a single process on all users."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(port, out), nprocs=2, join=True)
    case = random_case(8)
    topk, truth, uidx = case.tensors()
    single = case.evaluator(ALL)
    single.update(topk, truth, uidx, case.seen_tensor())
    want = single.compute()
    want["test/n_skipped_users"] += 4
    _assert_same(want, torch.load(out))


def test_xquad_ranker_without_categories_is_a_config_error() -> None:
    Ranker.from_config({"name": "xquad"}, categories=torch.ones(4, 2))  # categories: fine
    with pytest.raises(ConfigError, match=r"^rerank: xquad needs item categories"):
        Ranker.from_config({"name": "xquad"}, categories=torch.zeros(4, 0))
