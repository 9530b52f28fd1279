"""Embedding cache (hits, keys, crash safety) and batched encoding with dynamic padding."""

from __future__ import annotations

import logging

import pytest
import torch

from divrec.errors import ConfigError
from divrec.models import embed_cache as ec
from divrec.models.embed_cache import (
    EmbeddingCache,
    cache_key,
    cached_pooled_embeddings,
    encode_in_batches,
    tokens_fingerprint,
)
from divrec.models.encoder import TextEncoder

TEXTS = [
    "hi",
    "a cat sits on the mat",
    "stock market crash today in new york and london",
    "ok",
    "the quick brown fox jumps over the lazy dog again and again",
    "a kitten on a rug",
    "x",
]


@pytest.fixture(scope="module")
def batch(tok):
    """Right-padded ids/mask [7, L] for TEXTS (lengths differ a lot)."""
    b = tok(TEXTS, padding=True, return_tensors="pt")
    return b["input_ids"], b["attention_mask"]


class Counter:
    """compute() stand-in that counts its calls."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value, self.calls = value, 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.value


# ---------------------------------------------------------------- cache


def test_second_call_is_a_hit_without_compute(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path / "emb")
    value = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    compute = Counter(value)
    first, hit1 = cache.get_or_compute("items-abc", compute)
    with caplog.at_level(logging.INFO, logger="divrec.models.embed_cache"):
        second, hit2 = cache.get_or_compute("items-abc", compute)
    assert (hit1, hit2) == (False, True) and compute.calls == 1
    assert torch.equal(first, value) and torch.equal(second, value)
    assert f"embedding cache hit: {cache.path('items-abc')}" in caplog.text
    assert cache.path("items-abc").name == "items-abc.safetensors"


def test_different_key_recomputes(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a, b = Counter(torch.zeros(2, 2)), Counter(torch.ones(2, 2))
    cache.get_or_compute("k1", a)
    got, hit = cache.get_or_compute("k2", b)
    assert not hit and b.calls == 1 and torch.equal(got, torch.ones(2, 2))


def test_compute_crash_leaves_no_file(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb")

    def boom() -> torch.Tensor:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", boom)
    assert not cache.path("k").exists()
    compute = Counter(torch.ones(3, 2))
    _, hit = cache.get_or_compute("k", compute)
    assert not hit and compute.calls == 1


def test_crash_midway_through_write_leaves_no_file(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "emb")
    real_save = ec.save_file

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(ec, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        cache.get_or_compute("k", Counter(torch.ones(3, 2)))
    assert list((tmp_path / "emb").iterdir()) == []  # neither final nor temp file remains
    monkeypatch.setattr(ec, "save_file", real_save)
    compute = Counter(torch.ones(3, 2))
    _, hit = cache.get_or_compute("k", compute)
    assert not hit and compute.calls == 1
    _, hit = cache.get_or_compute("k", compute)
    assert hit and compute.calls == 1


def test_unreadable_file_is_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.path("k").write_bytes(b"not a safetensors file")
    compute = Counter(torch.ones(2, 2))
    got, hit = cache.get_or_compute("k", compute)
    assert not hit and compute.calls == 1 and torch.equal(got, torch.ones(2, 2))


def test_bad_key_rejected(tmp_path):
    with pytest.raises(ConfigError):
        EmbeddingCache(tmp_path).path("../escape")


def test_cache_key_depends_on_every_part():
    base = ("w", "t", "mean", 32, "")
    keys = {
        cache_key(*base),
        cache_key("w2", *base[1:]),
        cache_key("w", "t2", *base[2:]),
        cache_key("w", "t", "cls", 32, ""),
        cache_key("w", "t", "mean", 64, ""),
        cache_key("w", "t", "mean", 32, "bf16"),
    }
    assert len(keys) == 6
    assert cache_key(*base) == cache_key(*base)
    with pytest.raises(ConfigError, match="attention"):
        cache_key("w", "t", "attention", 32)


def test_tokens_fingerprint(batch):
    ids, mask = batch
    assert tokens_fingerprint(ids, mask) == tokens_fingerprint(ids.clone(), mask.clone())
    other = ids.clone()
    other[0, 1] += 1
    assert tokens_fingerprint(other, mask) != tokens_fingerprint(ids, mask)


# ---------------------------------------------------------------- batched encoding


@pytest.mark.parametrize("pooling", ["mean", "cls", "attention"])
def test_encode_in_batches_equals_one_by_one(tiny_model_dir, tok, batch, pooling):
    enc = TextEncoder(tiny_model_dir, pooling=pooling, projection_dim=8)
    if pooling == "attention":
        with torch.no_grad():
            enc.attn_query.normal_(generator=torch.Generator().manual_seed(0))
    enc.train()
    ids, mask = batch
    got = encode_in_batches(enc, ids, mask, batch_size=3)
    assert enc.training  # mode restored
    enc.eval()
    with torch.no_grad():  # reference: each text alone, unpadded, in the original order
        ref = [
            enc(**{k: v for k, v in tok([t], return_tensors="pt").items() if k != "token_type_ids"})
            for t in TEXTS
        ]
    torch.testing.assert_close(got, torch.cat(ref), atol=1e-5, rtol=1e-4)
    pooled = encode_in_batches(enc, ids, mask, batch_size=2, pooled_only=True)
    assert pooled.shape == (len(TEXTS), 32)
    torch.testing.assert_close(enc.head(pooled), got, atol=1e-5, rtol=1e-4)


def test_encode_trims_each_batch_to_its_longest_row(tiny_model_dir, batch, monkeypatch):
    enc = TextEncoder(tiny_model_dir)
    ids, mask = batch
    widths = []
    real = enc.pool_backbone
    monkeypatch.setattr(enc, "pool_backbone", lambda i, m: widths.append(i.shape[1]) or real(i, m))
    encode_in_batches(enc, ids, mask, batch_size=2, pooled_only=True)
    lengths = sorted(mask.sum(1).tolist(), reverse=True)
    assert widths == [max(lengths[i : i + 2]) for i in range(0, len(lengths), 2)]


def test_encode_left_padded_input_is_not_trimmed(tiny_model_dir, tok):
    enc = TextEncoder(tiny_model_dir).eval()
    tok.padding_side = "left"
    try:
        b = tok(TEXTS, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = "right"
    got = encode_in_batches(enc, b["input_ids"], b["attention_mask"], batch_size=3)
    with torch.no_grad():
        ref = enc(b["input_ids"], b["attention_mask"])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_encode_bf16_close_to_fp32(tiny_model_dir, batch):
    enc = TextEncoder(tiny_model_dir)
    ids, mask = batch
    fp32 = encode_in_batches(enc, ids, mask, batch_size=4)
    bf16 = encode_in_batches(enc, ids, mask, batch_size=4, bf16=True)
    assert bf16.dtype == torch.float32
    assert (fp32 * bf16).sum(1).min() > 0.99  # cosine of unit vectors


def test_cached_pooled_embeddings_frozen(tiny_model_dir, batch, tmp_path):
    enc = TextEncoder(tiny_model_dir, pooling="mean", projection_dim=8)
    cache = EmbeddingCache(tmp_path)
    ids, mask = batch
    first, hit1 = cached_pooled_embeddings(cache, enc, ids, mask, batch_size=4)
    second, hit2 = cached_pooled_embeddings(cache, enc, ids, mask, batch_size=4)
    assert (hit1, hit2) == (False, True)
    torch.testing.assert_close(second, first)
    ref = encode_in_batches(enc, ids, mask, batch_size=7, pooled_only=True)
    torch.testing.assert_close(second, ref, atol=1e-5, rtol=1e-4)
    # cached vectors feed a trainable head
    enc.head(second).sum().backward()
    assert enc.projection.weight.grad is not None
    _, hit3 = cached_pooled_embeddings(cache, enc, ids[:3], mask[:3], batch_size=4)
    assert not hit3  # different texts -> different key


def test_frozen_mean_embeddings_share_the_encoders_entry(
    tiny_model_dir, batch, tmp_path, monkeypatch
):
    """Same key and vectors as a frozen mean-pooled TextEncoder's; no backbone load on a hit."""
    cache = EmbeddingCache(tmp_path)
    ids, mask = batch
    enc = TextEncoder(tiny_model_dir, pooling="mean", finetune="frozen")
    ref, _ = cached_pooled_embeddings(cache, enc, ids, mask, name="items", batch_size=4)
    monkeypatch.setattr(
        "divrec.models.encoder.load_backbone", lambda *a, **k: pytest.fail("backbone loaded")
    )
    got, hit = ec.cached_frozen_mean_embeddings(cache, tiny_model_dir, ids, mask, name="items")
    assert hit
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    monkeypatch.undo()
    fresh = EmbeddingCache(tmp_path / "other")  # a miss encodes, as the encoder would
    got, hit = ec.cached_frozen_mean_embeddings(fresh, tiny_model_dir, ids, mask, batch_size=3)
    assert not hit
    torch.testing.assert_close(got, encode_in_batches(enc, ids, mask, 7, pooled_only=True))


@pytest.mark.parametrize("kwargs", [{"pooling": "attention"}, {"finetune": "full"}])
def test_cache_refuses_uncacheable_encoders(tiny_model_dir, batch, tmp_path, kwargs):
    enc = TextEncoder(tiny_model_dir, **kwargs)
    with pytest.raises(ConfigError):
        cached_pooled_embeddings(EmbeddingCache(tmp_path), enc, *batch)


def test_resolve_bf16_auto_follows_native_support(monkeypatch):
    """``model.cache.bf16=auto``: bf16 on a CPU only with native bf16 units (emulated bf16
    is several times slower than float32 on AVX2 CPUs); explicit booleans are kept."""
    from divrec.models.embed_cache import resolve_bf16

    assert resolve_bf16(True, "cpu") is True and resolve_bf16(False, "cuda") is False
    for native, want in ((False, False), (True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda n=native: n)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert resolve_bf16("auto", "cpu") is want
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_bf16("auto", "cuda") is False
    with pytest.raises(ConfigError, match="model.cache.bf16"):
        resolve_bf16("yes", "cpu")
