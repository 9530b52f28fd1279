"""RecDataModule: batches, masks, caches and config errors, on a small shop_sim."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from divrec.errors import ConfigError
from tests.conftest import ROOT


@pytest.fixture
def dm(compose, tmp_path):
    cfg = compose(cache=tmp_path / "cache")
    module = instantiate(cfg.data, _convert_="all")
    module.prepare_data()
    module.setup()
    return module


def _pairs(df, dm) -> set[tuple[int, int]]:
    return {
        (dm.user_index[u], dm.catalogue.index[i])
        for u, i in zip(df["user_id"], df["item_id"], strict=True)
    }


def test_train_batches_hold_pairs_and_history_without_the_target(dm):
    batch = next(iter(dm.train_dataloader()))
    b = len(batch["user_idx"])
    assert b == dm.batch_size
    assert batch["user_input_ids"].shape[0] == b == batch["history_idx"].shape[0]
    train_pairs = _pairs(dm.split.train, dm)
    for u, i in zip(batch["user_idx"].tolist(), batch["item_idx"].tolist(), strict=True):
        assert (u, i) in train_pairs
    hist, mask = batch["history_idx"], batch["history_mask"]
    assert not (mask & (hist == batch["item_idx"][:, None])).any()
    # every kept history item is a training item of that user
    for row in range(b):
        u = int(batch["user_idx"][row])
        for item in hist[row][mask[row]].tolist():
            assert (u, item) in train_pairs
    # dynamic padding: trimmed to the longest text of the batch
    assert batch["user_attention_mask"][:, -1].any()


def test_eval_batches_mask_seen_items_and_hold_the_truth(dm):
    train_pairs, valid_pairs = _pairs(dm.split.train, dm), _pairs(dm.split.valid, dm)
    test_pairs = _pairs(dm.split.test, dm)
    for loader, truth_pairs, seen_pairs in (
        (dm.val_dataloader(), valid_pairs, train_pairs),
        (dm.test_dataloader(), test_pairs, train_pairs | valid_pairs),
    ):
        got_truth, got_seen = set(), set()
        for batch in loader:
            for row, u in enumerate(batch["user_idx"].tolist()):
                got_truth |= {(u, i) for i in batch["truth"][row].nonzero().flatten().tolist()}
                got_seen |= {(u, i) for i in batch["seen"][row].nonzero().flatten().tolist()}
        assert got_truth == truth_pairs
        users = {u for u, _ in truth_pairs}
        assert got_seen == {(u, i) for u, i in seen_pairs if u in users}


def test_catalogue_popularity_counts_training_only(dm):
    counts = dm.split.train["item_id"].map(dm.catalogue.index).value_counts()
    expected = torch.zeros(len(dm.catalogue))
    for idx, c in counts.items():
        expected[idx] = c
    assert torch.equal(dm.catalogue.popularity, expected)
    assert dm.catalogue.category_matrix.sum(1).min() >= 1  # shop_sim items all have a leaf


def test_second_setup_reuses_tokenisation(compose, tmp_path, monkeypatch):
    cfg = compose(cache=tmp_path / "cache")
    first = instantiate(cfg.data, _convert_="all")
    first.setup()
    assert first.tokens_cache_hit is False
    import divrec.data.text as text

    calls = []
    real = text.tokenise_uncached
    monkeypatch.setattr(text, "tokenise_uncached", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = instantiate(cfg.data, _convert_="all")
    second.setup()
    assert second.tokens_cache_hit is True and calls == []
    assert torch.equal(first.item_tokens.input_ids, second.item_tokens.input_ids)


def test_unknown_data_key_is_a_clear_error(compose):
    cfg = compose("+data.n_itemz=5")
    module = instantiate(cfg.data, _convert_="all")
    with pytest.raises(ConfigError, match=r"data\.n_itemz"):
        module.setup()


def test_cfg_job_prints_the_composed_config():
    out = subprocess.run(
        [sys.executable, "train.py", "--cfg", "job"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    for key in ("data:", "model:", "finetune: frozen", "rerank:", "trainer:"):
        assert key in out.stdout


def test_length_bucketing_is_a_seeded_permutation_with_less_padding():
    from divrec.data.samplers import EpochShuffle

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 100, (1000,), generator=g)
    plain = EpochShuffle(1000, seed=7, lengths=lengths, batch=32, bucket=0)
    bucketed = EpochShuffle(1000, seed=7, lengths=lengths, batch=32, bucket=10)
    order = list(bucketed)
    assert sorted(order) == list(range(1000))  # every row once
    assert order == list(EpochShuffle(1000, seed=7, lengths=lengths, batch=32, bucket=10))
    bucketed.set_epoch(1)
    assert list(bucketed) != order  # a new order each epoch

    def padded(idx: list[int]) -> int:  # tokens after padding each batch to its longest row
        return sum(
            int(lengths[idx[i : i + 32]].max()) * len(idx[i : i + 32])
            for i in range(0, len(idx), 32)
        )

    assert padded(order) < 0.8 * padded(list(plain))
