"""A tiny randomly initialised BERT (same vocabulary as MiniLM) for fast tests and smoke runs."""

from __future__ import annotations

from pathlib import Path

import torch

from divrec.models.pretrained import minilm_dir
from divrec.utils.io import atomic_dir


def build_tiny_bert(
    path: str | Path,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
    seed: int = 0,
) -> str:
    """Save a random ``BertModel`` (safetensors) and a fast tokenizer into ``path``.

    Weights depend only on the sizes and ``seed`` (the global RNG state is left untouched).
    The tokenizer is MiniLM's fast uncased WordPiece tokenizer (its ``vocab.txt``, 30522 tokens),
    loaded through ``AutoTokenizer`` so that transformers 4.x and 5.x both build it correctly.
    Returns ``str(path)``.
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    with atomic_dir(path, replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return str(path)
