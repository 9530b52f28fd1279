"""Tiny randomly initialised models for fast tests and smoke runs: a BERT (MiniLM's vocabulary),
decoder LMs (GPT-2, Llama, Qwen2) with an offline byte-level BPE tokenizer, and vision
encoders (ViT, CLIP's vision tower, a whole CLIP) with their image processors."""

from __future__ import annotations

from pathlib import Path

import torch

from divrec.models.pretrained import minilm_dir
from divrec.utils.io import atomic_dir


def _save_seeded(path: str | Path, cls, config, tokenizer, seed: int) -> str:
    """Build ``cls(config)`` under ``seed`` (global RNG untouched), save it with ``tokenizer``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    with atomic_dir(path, replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return str(path)


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
    return _save_seeded(path, BertModel, config, tokenizer, seed)


DECODER_ARCHS = ("gpt2", "llama", "qwen2")
_CORPUS = (
    "the quick brown fox jumps over the lazy dog. recently liked: toy story, heat, jumanji. "
    "categories: comedy, drama, action, thriller, romance, animation, children, sci-fi. "
    "query: passage: a film about a dog and a fox who travel to the city at night. "
)


def _tiny_bpe_tokenizer(arch: str):
    """An offline byte-level BPE tokenizer (any text tokenises), eos only like GPT-2.

    GPT-2 style: no pad token (``load_tokenizer`` sets it to eos), right padding.
    Llama/Qwen style: a bos token is prepended and the tokenizer pads on the left.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    eos, bos = "<|endoftext|>", "<s>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[eos, bos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if arch == "gpt2":
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, bos_token=bos, padding_side="left"
    )


def build_tiny_decoder(
    path: str | Path, arch: str = "gpt2", hidden: int = 32, layers: int = 2, seed: int = 0
) -> str:
    """Save a random decoder LM backbone (``GPT2Model``/``LlamaModel``/``Qwen2Model``) and an
    offline tokenizer into ``path``, as ``save_pretrained`` writes a downloaded checkpoint.

    Weights depend only on ``arch``, the sizes and ``seed``. Returns ``str(path)``.
    """
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    if arch not in DECODER_ARCHS:
        raise ValueError(f"arch: expected one of {DECODER_ARCHS}, got {arch!r}")
    tokenizer = _tiny_bpe_tokenizer(arch)
    ids = {"vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id}
    if arch == "gpt2":
        config = GPT2Config(n_embd=hidden, n_layer=layers, n_head=2, n_positions=256, **ids)
        cls = GPT2Model
    else:
        config_cls, cls = (
            (LlamaConfig, LlamaModel) if arch == "llama" else (Qwen2Config, Qwen2Model)
        )
        config = config_cls(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=256,
            bos_token_id=tokenizer.bos_token_id,
            tie_word_embeddings=False,
            **ids,
        )
    return _save_seeded(path, cls, config, tokenizer, seed)


VISION_ARCHS = ("vit", "clip_vision", "clip")


def build_tiny_vision(
    path: str | Path,
    arch: str = "vit",
    hidden: int = 32,
    layers: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
) -> str:
    """Save a random vision checkpoint and its image processor into ``path``: ``vit``
    (``ViTModel``), ``clip_vision`` (``CLIPVisionModel``) or ``clip`` (a whole ``CLIPModel``
    with a tiny text tower and ``projection_dim = hidden // 2``). Images are resized to
    ``image_size`` (CLIP: shortest edge, then centre crop). Returns ``str(path)``."""
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPVisionConfig,
        CLIPVisionModel,
        ViTConfig,
        ViTModel,
    )

    if arch not in VISION_ARCHS:
        raise ValueError(f"arch: expected one of {VISION_ARCHS}, got {arch!r}")
    sizes = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden,
        "image_size": image_size,
        "patch_size": patch_size,
    }
    if arch == "vit":
        config, cls = ViTConfig(**sizes), ViTModel
    elif arch == "clip_vision":
        config, cls = CLIPVisionConfig(**sizes), CLIPVisionModel
    else:
        text = {k: v for k, v in sizes.items() if k not in ("image_size", "patch_size")}
        text.update(vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1)
        config = CLIPConfig(text_config=text, vision_config=sizes, projection_dim=hidden // 2)
        cls = CLIPModel
    return _save_seeded(path, cls, config, _tiny_image_processor(arch, image_size), seed)


def _tiny_image_processor(arch: str, image_size: int):
    """ViT: resize to a square; CLIP: resize the shortest edge, centre crop (PIL backend)."""
    try:  # transformers 5: the PIL backends by name (the plain names warn without torchvision)
        from transformers import CLIPImageProcessorPil as ClipProcessor
        from transformers import ViTImageProcessorPil as VitProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ClipProcessor
        from transformers import ViTImageProcessor as VitProcessor

    if arch == "vit":
        return VitProcessor(size={"height": image_size, "width": image_size})
    return ClipProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
