"""A training pair's user text never names the pair's positive item (issue 13, section 2).

The text the model sees is found from the batch's own token ids (``user_input_ids``): each row
is looked up among the tokenised user texts, which are long enough here never to be cut.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import ROOT, TINY_OVERRIDES

PREFIX = "Recently liked: "


@pytest.fixture(scope="module")
def dm(tiny_model_dir, tmp_path_factory):
    from hydra import compose, initialize_config_dir

    # 5 titles per text and a generous token limit: no text is truncated (checked below).
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *TINY_OVERRIDES,
                f"model.encoder.pretrained={tiny_model_dir}",
                f"paths.cache_dir={tmp_path_factory.mktemp('leak-cache')}",
                "data.text.user_history_items=5",
                "data.text.max_user_len=256",
            ],
        )
    module = instantiate(cfg.data, _convert_="all")
    module.prepare_data()
    module.setup()
    return module


def _text_of_tokens(dm) -> dict[tuple[int, ...], str]:
    """Trimmed token ids -> the user text they encode."""
    tok = dm.user_tokens
    assert int(tok.attention_mask.sum(1).max()) < 256  # nothing truncated
    out = {}
    for row, text in enumerate(dm.user_texts):
        key = tuple(tok.input_ids[row][tok.attention_mask[row].bool()].tolist())
        assert out.setdefault(key, text) == text  # distinct texts -> distinct tokens
    return out


def _history_titles(text: str) -> list[str]:
    """The titles a user text lists (the default template: "...Recently liked: a; b.")."""
    return text.split(PREFIX, 1)[1].removesuffix(".").split("; ")


def _batch_texts(dm, batch) -> list[str]:
    lookup = _text_of_tokens(dm)
    ids, mask = batch["user_input_ids"], batch["user_attention_mask"].bool()
    return [lookup[tuple(ids[r][mask[r]].tolist())] for r in range(len(ids))]


def _leaks(dm, users: list[int], items: list[int], texts: list[str]) -> tuple[int, int]:
    """(pairs whose text surely names the positive, pairs checked).

    A title in the text names the positive unless another training item of the same user has
    that title too (shop_sim reuses titles); such pairs are not checkable and are skipped.
    """
    titles = dm.catalogue.titles
    by_user = defaultdict(set)
    for u, i in zip(dm.train_users.tolist(), dm.train_items.tolist(), strict=True):
        by_user[u].add(i)
    leaks = checked = 0
    for u, i, text in zip(users, items, texts, strict=True):
        if any(titles[j] == titles[i] for j in by_user[u] if j != i):
            continue
        checked += 1
        leaks += titles[i] in _history_titles(text)
    return leaks, checked


def test_no_training_pair_sees_its_positive_in_its_user_text(dm):
    n = len(dm.train_users)
    texts, users, items = [], [], []
    for start in range(0, n, 512):
        batch = dm.collate_train(list(range(start, min(n, start + 512))))
        texts += _batch_texts(dm, batch)
        users += batch["user_idx"].tolist()
        items += batch["item_idx"].tolist()
    leaks, checked = _leaks(dm, users, items, texts)
    assert checked > 0.9 * n
    assert leaks == 0
    # The detector works: the full-history texts name the positive of many pairs.
    full = [dm.user_texts[u] for u in users]
    assert _leaks(dm, users, items, full)[0] > 0.1 * checked


def test_training_texts_keep_the_rest_of_the_recent_history(dm):
    """Leaving a fold out does not empty the text: users with >= 2 training items see titles."""
    batch = next(iter(dm.train_dataloader()))
    texts = _batch_texts(dm, batch)
    counts = torch.bincount(dm.train_users, minlength=len(dm.user_ids))
    for u, text in zip(batch["user_idx"].tolist(), texts, strict=True):
        if counts[u] >= 2:
            assert "nothing yet" not in text


def test_eval_batches_use_the_full_history_text(dm):
    titles = dm.catalogue.titles
    order = dm.split.train.sort_values(["user_id", "timestamp"], kind="stable")
    recent = order.groupby("user_id")["item_id"].agg(list).to_dict()
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert torch.equal(batch.get("user_text_idx", batch["user_idx"]), batch["user_idx"])
        for u, text in zip(batch["user_idx"].tolist(), _batch_texts(dm, batch), strict=True):
            uid = dm.user_ids[u]
            want = [titles[dm.catalogue.index[i]] for i in recent.get(uid, [])[-5:][::-1]]
            assert _history_titles(text) == (want or ["nothing yet"])
