"""TextEncoder: pooling against hand computations, padding invariance, fine-tuning modes,
tiny-BERT determinism, MiniLM resolution and pinned-weight checks."""

from __future__ import annotations

import hashlib
import math
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from divrec.errors import ConfigError, DivrecError
from divrec.models import pretrained as pt
from divrec.models.encoder import TextEncoder
from divrec.models.pretrained import (
    MINILM_SHA256,
    cached_sha256,
    load_backbone,
    load_tokenizer,
    minilm_dir,
    resolve_pretrained,
    verify_sha256,
    weights_fingerprint,
)
from divrec.models.tiny import build_tiny_bert

TEXTS = ["a cat sits on the mat", "stock market crash today in new york", "hi"]


@pytest.fixture(scope="module")
def reference_hidden(tiny_model_dir, tok):
    """last_hidden_state [B, L, H] of an independently loaded tiny BertModel, and the mask."""
    from transformers import BertModel

    model = BertModel.from_pretrained(tiny_model_dir).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    return batch, hidden


def _encode(enc: TextEncoder, tok, texts, **pad) -> torch.Tensor:
    batch = tok(texts, return_tensors="pt", **pad)
    with torch.no_grad():
        return enc(batch["input_ids"], batch["attention_mask"])


def _random_query(enc: TextEncoder, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        enc.attn_query.copy_(torch.randn(enc.hidden_size, generator=g) * 3)


# ---------------------------------------------------------------- tiny BERT


def test_tiny_bert_is_deterministic_per_seed(tmp_path, tiny_model_dir):
    again = build_tiny_bert(tmp_path / "again", seed=0)
    other = build_tiny_bert(tmp_path / "other", seed=1)
    a = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    b = load_file(os.path.join(again, "model.safetensors"))
    c = load_file(os.path.join(other, "model.safetensors"))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert a["embeddings.word_embeddings.weight"].shape == (30522, 32)
    assert weights_fingerprint(again) == weights_fingerprint(tiny_model_dir)
    assert weights_fingerprint(other) != weights_fingerprint(tiny_model_dir)
    # the tokenizer is MiniLM's uncased WordPiece: [CLS]=101, "hello"=7592, [SEP]=102
    assert load_tokenizer(again)("Hello")["input_ids"] == [101, 7592, 102]


# ---------------------------------------------------------------- pooling


def test_mean_pooling_matches_masked_average(tiny_model_dir, reference_hidden):
    batch, hidden = reference_hidden
    enc = TextEncoder(tiny_model_dir, pooling="mean", normalize=False).eval()
    with torch.no_grad():
        got = enc(batch["input_ids"], batch["attention_mask"])
    for b in range(len(TEXTS)):
        rows = [hidden[b, t] for t in range(hidden.shape[1]) if batch["attention_mask"][b, t]]
        expected = sum(rows) / len(rows)
        torch.testing.assert_close(got[b], expected, atol=1e-5, rtol=1e-5)


def test_cls_pooling_and_normalisation(tiny_model_dir, reference_hidden):
    batch, hidden = reference_hidden
    enc = TextEncoder(tiny_model_dir, pooling="cls", normalize=True).eval()
    with torch.no_grad():
        got = enc(batch["input_ids"], batch["attention_mask"])
    for b in range(len(TEXTS)):
        v = hidden[b, 0]
        expected = v / math.sqrt(float((v * v).sum()))
        torch.testing.assert_close(got[b], expected, atol=1e-5, rtol=1e-5)


def test_attention_pooling_matches_hand_softmax(tiny_model_dir, reference_hidden):
    batch, hidden = reference_hidden
    enc = TextEncoder(tiny_model_dir, pooling="attention", normalize=False).eval()
    _random_query(enc)
    q = enc.attn_query.detach()
    with torch.no_grad():
        got = enc(batch["input_ids"], batch["attention_mask"])
    for b in range(len(TEXTS)):
        toks = [t for t in range(hidden.shape[1]) if batch["attention_mask"][b, t]]
        scores = [float(hidden[b, t] @ q) / math.sqrt(32) for t in toks]
        top = max(scores)
        w = [math.exp(s - top) for s in scores]
        expected = sum(wi / sum(w) * hidden[b, t] for wi, t in zip(w, toks, strict=True))
        torch.testing.assert_close(got[b], expected, atol=1e-5, rtol=1e-4)


def test_zero_query_attention_equals_mean(tiny_model_dir, tok):
    mean = TextEncoder(tiny_model_dir, pooling="mean").eval()
    att = TextEncoder(tiny_model_dir, pooling="attention").eval()
    torch.testing.assert_close(
        _encode(att, tok, TEXTS, padding=True), _encode(mean, tok, TEXTS, padding=True)
    )


def test_projection_head(tiny_model_dir, reference_hidden):
    batch, hidden = reference_hidden
    enc = TextEncoder(tiny_model_dir, pooling="cls", projection_dim=8, normalize=False).eval()
    with torch.no_grad():
        got = enc(batch["input_ids"], batch["attention_mask"])
    w, bias = enc.projection.weight, enc.projection.bias  # [8, 32], [8]
    for b in range(len(TEXTS)):
        expected = torch.stack([(w[j] * hidden[b, 0]).sum() + bias[j] for j in range(8)])
        torch.testing.assert_close(got[b], expected, atol=1e-5, rtol=1e-5)
    assert enc.output_dim == 8 and got.shape == (3, 8)


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention"])
def test_padding_invariance(tiny_model_dir, tok, pooling):
    enc = TextEncoder(tiny_model_dir, pooling=pooling).eval()
    if pooling == "attention":
        _random_query(enc)
    text = ["a cat sits on the mat"]  # 8 tokens with [CLS]/[SEP]
    short = _encode(enc, tok, text, padding="max_length", max_length=8)
    long = _encode(enc, tok, text, padding="max_length", max_length=30)
    in_batch = _encode(enc, tok, text + ["a much longer sentence " * 4], padding=True)[:1]
    torch.testing.assert_close(long, short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(in_batch, short, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- fine-tuning modes


def _trainable(module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


def _step_changes(enc: TextEncoder, tok) -> set[str]:
    """Names of the encoder's parameters that one SGD step on a toy loss changes."""
    before = {n: p.detach().clone() for n, p in enc.named_parameters()}
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.5)
    enc.train()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    out = enc(batch["input_ids"], batch["attention_mask"])
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * target).sum().backward()
    opt.step()
    return {n for n, p in enc.named_parameters() if not torch.equal(p.detach(), before[n])}


def test_frozen_trains_only_heads(tiny_model_dir, tok):
    enc = TextEncoder(tiny_model_dir, finetune="frozen", projection_dim=8, normalize=False)
    assert not _trainable(enc.backbone)
    assert _trainable(enc) == {"projection.weight", "projection.bias"}
    assert not enc.trainable_backbone
    enc.train()
    assert not enc.backbone.training and enc.projection.training  # no dropout in the backbone
    assert _step_changes(enc, tok) == {"projection.weight", "projection.bias"}
    # 32 * 8 + 8 = 264 head parameters; the backbone has no pooler (removed)
    counts = enc.describe()
    assert counts["trainable"] == 264 and counts["backbone_trainable"] == 0
    assert counts["total"] == counts["backbone_total"] + 264
    assert not any("pooler" in n for n, _ in enc.named_parameters())


def test_top_layers_trains_only_top_layer(tiny_model_dir, tok):
    enc = TextEncoder(tiny_model_dir, finetune="top_layers", top_layers=1, normalize=False)
    names = {n for n, _ in enc.backbone.named_parameters()}
    layer1 = {n for n in names if n.startswith("encoder.layer.1.")}
    assert layer1 and _trainable(enc.backbone) == layer1
    assert _step_changes(enc, tok) == {f"backbone.{n}" for n in layer1}
    assert enc.trainable_backbone


def test_lora_trains_only_adapters(tiny_model_dir, tok):
    enc = TextEncoder(tiny_model_dir, finetune="lora", lora={"r": 4}, normalize=False)
    trainable = _trainable(enc)
    # 2 layers x {query, key, value} x {lora_A, lora_B}
    assert len(trainable) == 12
    assert all("lora_" in n for n in trainable)
    for layer in (0, 1):
        for mod in ("query", "key", "value"):
            for ab in ("lora_A", "lora_B"):
                assert any(f"layer.{layer}.attention.self.{mod}.{ab}" in n for n in trainable)
    changed = _step_changes(enc, tok)
    # lora_B starts at zero, so lora_A gets zero gradient on the first step; lora_B moves
    assert changed and changed <= trainable
    assert all("lora_B" in n for n in changed)


def test_lora_target_modules(tiny_model_dir):
    enc = TextEncoder(tiny_model_dir, finetune="lora", lora={"target_modules": ["value"]})
    assert len(_trainable(enc)) == 4  # 2 layers x value x {A, B}
    assert all(".value.lora_" in n for n in _trainable(enc))
    dense = TextEncoder(tiny_model_dir, finetune="lora", lora={"target_modules": ["dense"]})
    # per layer: attention.output.dense, intermediate.dense, output.dense; pooler is removed
    assert len(_trainable(dense)) == 2 * 3 * 2
    assert not any("pooler" in n for n in _trainable(dense))
    with pytest.raises(ConfigError, match="target_modules"):
        TextEncoder(tiny_model_dir, finetune="lora", lora={"target_modules": ["nope"]})
    with pytest.raises(ConfigError, match="unknown key"):
        TextEncoder(tiny_model_dir, finetune="lora", lora={"rank": 4})


def test_full_trains_everything(tiny_model_dir, tok):
    enc = TextEncoder(tiny_model_dir, finetune="full", normalize=False)
    all_names = {n for n, _ in enc.named_parameters()}
    assert _trainable(enc) == all_names
    assert _step_changes(enc, tok) == all_names


def test_gradient_checkpointing_runs(tiny_model_dir, tok):
    enc = TextEncoder(tiny_model_dir, finetune="full", gradient_checkpointing=True)
    flag = getattr(type(enc.backbone), "is_activation_checkpointing", None)
    flag = "is_activation_checkpointing" if flag is not None else "is_gradient_checkpointing"
    assert getattr(enc.backbone, flag)
    assert _step_changes(enc, tok)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pooling": "max"}, "model.pooling"),
        ({"finetune": "half"}, "model.finetune"),
        ({"finetune": "top_layers", "top_layers": 3}, "model.top_layers"),
        ({"projection_dim": 0}, "model.projection_dim"),
    ],
)
def test_bad_config_is_one_clear_error(tiny_model_dir, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TextEncoder(tiny_model_dir, **kwargs)


# ---------------------------------------------------------------- MiniLM and pinned weights


def test_resolve_pretrained(tmp_path):
    for alias in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        folder = resolve_pretrained(alias)
        assert os.path.isfile(os.path.join(folder, "config.json"))
        assert os.path.isfile(os.path.join(folder, "model.safetensors"))
    assert resolve_pretrained(str(tmp_path)) == str(tmp_path)
    assert resolve_pretrained("someone/some-model") == "someone/some-model"
    with pytest.raises(ConfigError):
        resolve_pretrained("")


def test_minilm_sha256_passes_on_package_and_fails_on_tampered_copy(tmp_path):
    verify_sha256(minilm_dir() / "model.safetensors", MINILM_SHA256)
    copy = tmp_path / "minilm"
    shutil.copytree(minilm_dir(), copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DivrecError, match="does not match the pinned"):
        load_backbone(str(copy), expected_sha256=MINILM_SHA256)


def test_cached_sha256_uses_marker_and_notices_changes(tmp_path, monkeypatch):
    calls = []
    real = pt.file_sha256
    monkeypatch.setattr(pt, "file_sha256", lambda p: calls.append(p) or real(p))
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    expected = hashlib.sha256(b"abc").hexdigest()
    assert cached_sha256(f) == expected and cached_sha256(f) == expected
    assert len(calls) == 1  # second call read the marker
    f.write_bytes(b"abd")
    os.utime(f, ns=(0, 1_234_567_890))  # new mtime, same size
    assert cached_sha256(f) == hashlib.sha256(b"abd").hexdigest()
    assert len(calls) == 2


def test_minilm_matches_sentence_transformers_and_is_sane():
    enc = TextEncoder("minilm", pooling="mean").eval()
    tok = load_tokenizer("minilm")
    sents = ["a cat sits on the mat", "a kitten on a rug", "stock market crash"]
    emb = _encode(enc, tok, sents, padding=True)
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    # independent reference: the sentence-transformers pipeline (mean pooling + normalise)
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(minilm_dir()), device="cpu").encode(
        sents, convert_to_tensor=True, normalize_embeddings=True
    )
    torch.testing.assert_close(emb, ref.cpu(), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compiled_backbone_matches_eager(tiny_model_dir):
    """`model.encoder.compile=true`: same embeddings as eager, same state-dict keys."""
    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    eager = TextEncoder(tiny_model_dir, finetune="full")
    compiled = TextEncoder(tiny_model_dir, finetune="full", compile=True)
    eager.eval()
    compiled.eval()
    assert list(eager.state_dict()) == list(compiled.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(compiled(ids, mask), eager(ids, mask), rtol=1e-4, atol=1e-5)
