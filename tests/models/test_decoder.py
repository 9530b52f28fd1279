"""Decoder LMs (GPT-2, Llama, Qwen2) as towers: last-token and mean pooling against each text
run alone (both padding sides), GPT-2's missing pad token, the instruction prefix in the cache
key, every fine-tuning mode, LoRA targets by architecture, and one end-to-end run."""

from __future__ import annotations

import json

import pytest
import torch

from divrec.data.text import with_prefix
from divrec.models.embed_cache import pooled_key
from divrec.models.encoder import TextEncoder, is_decoder_lm
from divrec.models.pretrained import load_backbone, load_tokenizer
from divrec.models.tiny import build_tiny_decoder

TEXTS = ["a dog and a fox", "toy story, heat, jumanji and the quick brown fox", "hi"]
ARCHS = ("gpt2", "llama", "qwen2")


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("decoders")
    return {a: build_tiny_decoder(root / a, arch=a, seed=0) for a in ARCHS}


def _alone(path: str, tok, text: str) -> torch.Tensor:
    """last_hidden_state [L, H] of one text, unpadded, through an independently loaded model."""
    model = load_backbone(path).eval()
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state[0]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_last_and_mean_pooling_match_each_text_alone(decoders, arch, side):
    tok = load_tokenizer(decoders[arch])
    tok.padding_side = side
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # the batch is padded
    alone = [_alone(decoders[arch], tok, t) for t in TEXTS]
    for pooling, ref in (
        ("last", torch.stack([h[-1] for h in alone])),
        ("mean", torch.stack([h.mean(0) for h in alone])),
    ):
        enc = TextEncoder(decoders[arch], pooling=pooling, normalize=False).eval()
        with torch.no_grad():
            out = enc(batch["input_ids"], mask)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_gpt2_pads_with_eos_without_growing_the_vocabulary(decoders):
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(decoders["gpt2"])
    assert raw.pad_token is None
    tok = load_tokenizer(decoders["gpt2"])
    assert tok.pad_token == tok.eos_token and len(tok) == len(raw)
    assert load_tokenizer(decoders["llama"]).padding_side == "left"


def test_decoder_detection(decoders, tiny_model_dir):
    for arch in ARCHS:
        assert is_decoder_lm(load_backbone(decoders[arch]).config)
    assert not is_decoder_lm(load_backbone(tiny_model_dir).config)


def test_prefix_is_part_of_the_cache_key(decoders):
    tok = load_tokenizer(decoders["qwen2"])
    keys = set()
    for prefix in ("", "query: ", "passage: "):
        b = tok(with_prefix(TEXTS, prefix), padding=True, return_tensors="pt")
        keys.add(pooled_key("items", "w", "last", b["input_ids"], b["attention_mask"], False))
    assert len(keys) == 3
    assert with_prefix(["a", "b"], "q: ") == ["q: a", "q: b"] and with_prefix(["a"], "") == ["a"]


def _trainable(enc: TextEncoder) -> set[str]:
    return {n for n, p in enc.backbone.named_parameters() if p.requires_grad}


def _steps(enc: TextEncoder, tok, n: int = 5) -> tuple[list[float], set[str]]:
    """Losses of ``n`` Adam steps pulling each text's vector to a fixed random target, and the
    backbone parameters that got a non-zero gradient on the last step."""
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    target = torch.randn(len(TEXTS), enc.output_dim, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam([p for p in enc.parameters() if p.requires_grad], lr=1e-2)
    enc.train()
    losses = []
    for _ in range(n):
        opt.zero_grad()
        loss = ((enc(batch["input_ids"], batch["attention_mask"]) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    grads = {
        name
        for name, p in enc.backbone.named_parameters()
        if p.grad is not None and p.grad.abs().sum() > 0
    }
    return losses, grads


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("finetune", ["frozen", "top_layers", "lora", "full"])
def test_every_finetune_mode_trains(decoders, arch, finetune):
    tok = load_tokenizer(decoders[arch])
    enc = TextEncoder(
        decoders[arch],
        pooling="last",
        finetune=finetune,
        top_layers=1,
        projection_dim=8,
        normalize=False,
    )
    losses, grads = _steps(enc, tok)
    assert losses[-1] < losses[0]
    trainable = _trainable(enc)
    assert grads <= trainable  # nothing outside the mode's parameters gets a gradient
    names = {n for n, _ in enc.backbone.named_parameters()}
    if finetune == "frozen":
        assert not trainable
    elif finetune == "top_layers":
        top = "h.1." if arch == "gpt2" else "layers.1."
        assert trainable == {n for n in names if n.startswith(top)} and grads
    elif finetune == "lora":
        assert trainable and all("lora_" in n for n in trainable)
        assert any("lora_B" in n for n in grads)
    else:
        assert trainable == names


@pytest.mark.parametrize(
    ("arch", "modules"), [("gpt2", {"c_attn"}), ("llama", {"q_proj", "v_proj"})]
)
def test_lora_auto_targets_by_architecture(decoders, arch, modules):
    enc = TextEncoder(decoders[arch], finetune="lora", lora={"r": 2})
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in _trainable(enc)}
    assert adapted == modules
    assert len(_trainable(enc)) == 2 * 2 * len(modules)  # 2 layers x modules x {A, B}


def test_train_run_with_a_tiny_decoder(decoders, compose, tmp_path):
    from divrec.run.train import train

    cfg = compose(
        f"model.encoder.pretrained={decoders['qwen2']}",
        "model.encoder.pooling=last",
        "data.text.user_prefix=query: ",
        "data.text.item_prefix=passage: ",
        "trainer.limit_train_batches=2",
    )
    train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok"
    assert 0.0 <= m["test/ndcg@10"] <= 1.0


def test_datamodule_prepends_the_prefixes(decoders, compose):
    from divrec.run.build import build_datamodule

    dm = build_datamodule(
        compose(
            f"model.encoder.pretrained={decoders['gpt2']}",
            "data.text.user_prefix=query: ",
            "data.text.item_prefix=passage: ",
        )
    )
    dm.setup()
    assert dm.user_texts and all(t.startswith("query: ") for t in dm.user_texts)
    assert all(t.startswith("passage: ") for t in dm.catalogue.texts)
