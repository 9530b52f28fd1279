"""Disk and cache faults: a damaged token cache heals itself (like the embedding cache), and a
read-only or full cache / run folder is one line naming the path and what to do."""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path

import pytest
import torch

from divrec.data.text import tokenise_cached, tokenise_uncached
from divrec.errors import DataError
from divrec.utils.io import write_json
from tests.faults.conftest import one_line

TEXTS = ["red shoes for running", "a blue hat", "green leather bag with a long strap"]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from divrec.models.pretrained import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def _expected(tok) -> list[list[int]]:
    return [list(r) for r in tokenise_uncached(TEXTS, tok, 16)["input_ids"]]


def _ids(res) -> list[list[int]]:
    return [
        row[m.bool()].tolist() for row, m in zip(res.input_ids, res.attention_mask, strict=True)
    ]


def _arrow(cache: Path) -> Path:
    return next((cache / "tokens").glob("*/*.arrow"))


@pytest.mark.parametrize(
    "damage",
    ["truncate-arrow", "zero-arrow", "delete-arrow", "delete-state", "garbage-state"],
)
def test_damaged_token_cache_is_recomputed(tok, tmp_path, damage):
    cache = tmp_path / "cache"
    first = tokenise_cached(TEXTS, tok, 16, cache, "items")
    assert not first.cache_hit and _ids(first) == _expected(tok)
    entry = _arrow(cache).parent
    arrow = _arrow(cache)
    if damage == "truncate-arrow":
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    elif damage == "zero-arrow":
        arrow.write_bytes(b"")
    elif damage == "delete-arrow":
        arrow.unlink()
    elif damage == "delete-state":
        (entry / "state.json").unlink()
    else:
        (entry / "state.json").write_text("{not json")
    again = tokenise_cached(TEXTS, tok, 16, cache, "items")
    assert not again.cache_hit and _ids(again) == _expected(tok)
    third = tokenise_cached(TEXTS, tok, 16, cache, "items")  # healed: a hit again
    assert third.cache_hit and torch.equal(third.input_ids, again.input_ids)


def test_token_cache_entry_with_other_row_count_is_recomputed(tok, tmp_path):
    import datasets

    cache = tmp_path / "cache"
    tokenise_cached(TEXTS, tok, 16, cache, "items")
    entry = _arrow(cache).parent
    short = datasets.Dataset.from_dict({"input_ids": [[1, 2]]})
    for p in entry.iterdir():
        p.unlink()
    short.save_to_disk(str(entry))
    res = tokenise_cached(TEXTS, tok, 16, cache, "items")
    assert not res.cache_hit and _ids(res) == _expected(tok)


@pytest.mark.parametrize(
    "code,needle",
    [(errno.EROFS, "not writable"), (errno.EACCES, "not writable"), (errno.ENOSPC, "no space")],
    ids=["read-only", "permission", "full"],
)
def test_unwritable_token_cache_is_one_line(tok, tmp_path, monkeypatch, code, needle):
    def refuse(*args, **kwargs):
        raise OSError(code, "simulated")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(DataError) as info:
        tokenise_cached(TEXTS, tok, 16, tmp_path / "cache", "items")
    one_line(info.value, str(tmp_path / "cache"), needle, "paths.cache_dir")


def test_token_cache_disk_full_mid_write_is_one_line_and_leaves_nothing(tok, tmp_path, monkeypatch):
    import datasets

    def full(self, path, *args, **kwargs):
        Path(path, "data-00000-of-00001.arrow").write_bytes(b"\x00" * 64)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full)
    with pytest.raises(DataError) as info:
        tokenise_cached(TEXTS, tok, 16, tmp_path / "cache", "items")
    one_line(info.value, "no space left")
    assert not list((tmp_path / "cache" / "tokens").iterdir())


def test_embedding_cache_disk_full_is_one_line(tmp_path, monkeypatch):
    import divrec.models.embed_cache as ec

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 8)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ec, "save_file", full)
    cache = ec.EmbeddingCache(tmp_path / "emb")
    with pytest.raises(DataError) as info:
        cache.get_or_compute("items-abc", lambda: torch.ones(2, 3))
    one_line(info.value, "items-abc.safetensors", "no space left")
    assert not list((tmp_path / "emb").iterdir())


def test_truncated_embedding_file_is_recomputed(tmp_path):
    from divrec.models.embed_cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "emb")
    cache.get_or_compute("k", lambda: torch.arange(6.0).reshape(2, 3))
    f = cache.path("k")
    f.write_bytes(f.read_bytes()[:20])
    t, hit = cache.get_or_compute("k", lambda: torch.arange(6.0).reshape(2, 3))
    assert not hit and torch.equal(t, torch.arange(6.0).reshape(2, 3))


def test_full_run_folder_keeps_the_old_metrics(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"test/ndcg@10": 0.25})
    real = Path.write_text

    def full(self, data, *args, **kwargs):
        real(self, data[:5], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DataError) as info:
        write_json(path, {"test/ndcg@10": 0.75})
    monkeypatch.undo()
    one_line(info.value, str(path), "no space left")
    assert json.loads(path.read_text()) == {"test/ndcg@10": 0.25}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_read_only_run_folder_through_run_is_one_line(compose, tmp_path, monkeypatch):
    """The run folder cannot be created: run() exits with one line, not a traceback."""
    from divrec.run.train import run

    monkeypatch.delenv("DIVREC_TRACEBACK", raising=False)
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "run")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(SystemExit) as info:
        run(compose())
    one_line(info.value.code, str(tmp_path / "run"), "paths.output_dir")
