"""The language-model text encoder shared by the user and item towers.

``TextEncoder.forward = head(pool_backbone(...))``:

- ``pool_backbone``: transformer backbone + token pooling -> ``[B, H]``
  (``cls``: first token; ``mean``: masked average; ``last``: the last real (unmasked) token,
  whichever side the tokenizer pads, the usual pooling of decoder LMs; ``attention``: a
  learned query vector attends over the unmasked token states, softmax weights).
- ``head``: optional linear projection ``H -> projection_dim`` then L2 normalisation.

The split lets a frozen backbone's pooled vectors be precomputed once and cached on disk
(``divrec.models.embed_cache``) while the heads still train on top of them.

Fine-tuning modes: ``frozen`` (backbone never trains, stays in eval mode, runs under
``no_grad``), ``top_layers`` (only the top N transformer layers train), ``lora`` (peft LoRA
adapters only), ``full`` (everything). BERT-family poolers (``pooler.dense`` + tanh) are
removed: divrec pools tokens itself, and an unused pooler would otherwise hold trainable
parameters that never get gradients (or LoRA adapters when ``target_modules`` has "dense").

Decoder LMs (GPT-2, Llama, Qwen, ...) load the same way: ``AutoModel`` gives the base model
without its LM head. Their position ids are computed from the attention mask, so a
left-padded text gets the same hidden states as the text alone. LoRA ``target_modules:
[auto]`` picks the attention projections of the architecture (:data:`LORA_TARGETS`).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from divrec.errors import ConfigError
from divrec.models.pretrained import load_backbone, resolve_pretrained, weights_fingerprint

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean", "last", "attention")
FINETUNE_MODES = ("frozen", "top_layers", "lora", "full")
LORA_DEFAULTS: dict[str, Any] = {
    "r": 8,
    "alpha": 16,
    "dropout": 0.0,
    "target_modules": ["auto"],
}
# ``target_modules: [auto]`` by model type: the attention projections (fallback: BERT's names).
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "key", "value"],
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
}
# Model types whose forward skips a ``None`` pooler (checked in transformers' sources).
_POOLER_OPTIONAL = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "mpnet", "ernie"})


def cls_pool(hidden: torch.Tensor) -> torch.Tensor:
    """First-token state: ``hidden [B, L, H] -> [B, H]``."""
    return hidden[:, 0]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of unmasked token states: ``hidden [B, L, H], mask [B, L] -> [B, H]``."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State at the last unmasked position (left or right padding):
    ``hidden [B, L, H], mask [B, L] -> [B, H]`` (an all-masked row gives position 0)."""
    pos = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    last = (mask.to(pos.dtype) * pos).argmax(dim=1)  # [B]
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def is_decoder_lm(config: Any) -> bool:
    """Whether a backbone config is a causal (decoder-only) LM: it has a causal-LM class and
    no masked-LM one (BERT has both)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", None)
    return (
        kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def attention_pool(hidden: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted token states, weights from ``hidden @ query / sqrt(H)`` over unmasked
    tokens: ``hidden [B, L, H], mask [B, L], query [H] -> [B, H]``."""
    scores = hidden @ query.to(hidden.dtype) / math.sqrt(hidden.shape[-1])  # [B, L]
    scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    return (weights.unsqueeze(-1) * hidden).sum(1)


def _transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's stack of transformer blocks (BERT: ``encoder.layer``)."""
    for dotted in ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "h"):
        obj: Any = backbone
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    n = getattr(backbone.config, "num_hidden_layers", None)
    for mod in backbone.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ConfigError(
        f"model.finetune=top_layers: cannot find the transformer layers of {type(backbone).__name__}"
    )


def _enable_checkpointing(backbone: nn.Module) -> None:
    """Non-reentrant activation checkpointing (transformers 5 name, else the 4.x one)."""
    kwargs = {"use_reentrant": False}
    if hasattr(backbone, "activation_checkpointing_enable"):
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _lora_settings(lora: dict | None, model_type: str | None = None) -> dict[str, Any]:
    cfg = dict(LORA_DEFAULTS)
    unknown = sorted(set(lora or {}) - set(LORA_DEFAULTS))
    if unknown:
        raise ConfigError(f"model.lora: unknown key(s) {unknown}; allowed {sorted(LORA_DEFAULTS)}")
    cfg.update(lora or {})
    cfg["target_modules"] = [str(t) for t in cfg["target_modules"]]
    if cfg["target_modules"] == ["auto"]:
        cfg["target_modules"] = list(LORA_TARGETS.get(str(model_type), LORA_TARGETS["bert"]))
    if not isinstance(cfg["r"], int) or cfg["r"] < 1:
        raise ConfigError(f"model.lora.r: expected a positive int, got {cfg['r']!r}")
    if not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise ConfigError(f"model.lora.dropout: expected 0 <= dropout < 1, got {cfg['dropout']!r}")
    if not cfg["target_modules"]:
        raise ConfigError("model.lora.target_modules: empty list")
    return cfg


class TextEncoder(nn.Module):
    """Pretrained transformer + token pooling + optional projection: texts -> ``[B, d]``."""

    def __init__(
        self,
        pretrained: str,
        pooling: str = "mean",
        finetune: str = "frozen",
        top_layers: int = 2,
        lora: dict | None = None,
        projection_dim: int | None = None,
        normalize: bool = True,
        trust_remote_code: bool = False,
        gradient_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"model.pooling: expected one of {POOLINGS}, got {pooling!r}")
        if finetune not in FINETUNE_MODES:
            raise ConfigError(f"model.finetune: expected one of {FINETUNE_MODES}, got {finetune!r}")
        if projection_dim is not None and (
            not isinstance(projection_dim, int) or projection_dim < 1
        ):
            raise ConfigError(
                f"model.projection_dim: expected a positive int or null, got {projection_dim!r}"
            )
        self.pooling = pooling
        self.finetune = finetune
        self.normalize = normalize
        self.pretrained_path = resolve_pretrained(pretrained)
        self._weights_fp: str | None = None

        backbone = load_backbone(self.pretrained_path, trust_remote_code=trust_remote_code)
        if getattr(backbone.config, "model_type", None) in _POOLER_OPTIONAL and isinstance(
            getattr(backbone, "pooler", None), nn.Module
        ):
            backbone.pooler = None
        self.hidden_size = int(backbone.config.hidden_size)
        self.decoder = is_decoder_lm(backbone.config)
        if gradient_checkpointing:
            if finetune == "frozen":
                log.info("gradient_checkpointing ignored: the backbone is frozen")
            else:
                _enable_checkpointing(backbone)
        self.backbone = self._setup_finetune(backbone, top_layers, lora)
        if finetune != "frozen":
            # from_pretrained returns eval mode and Lightning keeps module modes as they are:
            # without this, fine-tuning would run with the backbone's dropout switched off.
            self.backbone.train()

        # torch.compile of the backbone (dynamic shapes: batches are padded to their own length).
        # Kept outside the module registry so checkpoints hold the plain backbone's keys.
        compiled = torch.compile(self.backbone, dynamic=True) if compile else None
        object.__setattr__(self, "_compiled", compiled)

        if pooling == "attention":
            # Zero query = uniform weights: attention pooling starts out as mean pooling.
            self.attn_query = nn.Parameter(torch.zeros(self.hidden_size))
        else:
            self.register_parameter("attn_query", None)
        self.projection = nn.Linear(self.hidden_size, projection_dim) if projection_dim else None
        self.output_dim = int(projection_dim or self.hidden_size)

    def _setup_finetune(self, backbone: nn.Module, top_layers: int, lora: dict | None) -> nn.Module:
        """Set ``requires_grad`` for the chosen mode (LoRA wraps the model with peft)."""
        if self.finetune == "full":
            return backbone.requires_grad_(True)
        backbone.requires_grad_(False)
        if self.finetune == "frozen":
            return backbone.eval()
        if self.finetune == "top_layers":
            layers = _transformer_layers(backbone)
            if not isinstance(top_layers, int) or not 1 <= top_layers <= len(layers):
                raise ConfigError(
                    f"model.top_layers: expected an int in [1, {len(layers)}], got {top_layers!r}"
                )
            for layer in layers[len(layers) - top_layers :]:
                layer.requires_grad_(True)
            return backbone
        from peft import LoraConfig, get_peft_model

        cfg = _lora_settings(lora, getattr(backbone.config, "model_type", None))
        config = LoraConfig(
            r=cfg["r"],
            lora_alpha=cfg["alpha"],
            lora_dropout=float(cfg["dropout"]),
            target_modules=cfg["target_modules"],
            bias="none",
            # GPT-2's projections are Conv1D ([in, out] weights)
            fan_in_fan_out=getattr(backbone.config, "model_type", None) == "gpt2",
        )
        try:
            with warnings.catch_warnings():  # peft still calls the 4.x name on transformers 5
                warnings.filterwarnings(
                    "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
                )
                return get_peft_model(backbone, config)
        except ValueError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"model.lora.target_modules={cfg['target_modules']}: {first}") from e

    @property
    def trainable_backbone(self) -> bool:
        """Whether any backbone parameter trains (False only for ``frozen``)."""
        return self.finetune != "frozen"

    def train(self, mode: bool = True) -> TextEncoder:
        """As ``nn.Module.train``, but a frozen backbone always stays in eval mode (no dropout)."""
        super().train(mode)
        if self.finetune == "frozen":
            self.backbone.eval()
        return self

    def pool_tokens(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token pooling: ``hidden [B, L, H], attention_mask [B, L] -> [B, H]``."""
        if self.pooling == "cls":
            return cls_pool(hidden)
        if self.pooling == "mean":
            return mean_pool(hidden, attention_mask)
        if self.pooling == "last":
            return last_token_pool(hidden, attention_mask)
        return attention_pool(hidden, attention_mask, self.attn_query)

    def pool_backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Backbone + token pooling: ``input_ids, attention_mask [B, L] -> [B, H]``."""
        backbone = self.backbone if self._compiled is None else self._compiled
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.decoder:  # positions count real tokens only: left pads do not shift them
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        if self.finetune == "frozen":
            with torch.no_grad():
                hidden = backbone(**kwargs).last_hidden_state
        else:
            hidden = backbone(**kwargs).last_hidden_state
        return self.pool_tokens(hidden, attention_mask)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Projection (if any) and L2 normalisation (if enabled): ``[B, H] -> [B, d]``."""
        x = self.projection(pooled) if self.projection is not None else pooled
        return F.normalize(x, dim=-1) if self.normalize else x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode token ids: ``input_ids, attention_mask [B, L] -> [B, output_dim]``."""
        return self.head(self.pool_backbone(input_ids, attention_mask))

    def weights_fingerprint(self) -> str:
        """Content fingerprint of the pretrained weights (for embedding-cache keys)."""
        if self._weights_fp is None:
            self._weights_fp = weights_fingerprint(self.pretrained_path)
        return self._weights_fp

    def describe(self) -> dict[str, int]:
        """Trainable and total parameter counts, overall and for the backbone."""
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        counts = dict.fromkeys(("trainable", "total", "backbone_trainable", "backbone_total"), 0)
        for p in self.parameters():
            n = p.numel()
            counts["total"] += n
            counts["trainable"] += n if p.requires_grad else 0
            if id(p) in backbone_ids:
                counts["backbone_total"] += n
                counts["backbone_trainable"] += n if p.requires_grad else 0
        return counts
