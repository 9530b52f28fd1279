"""Batched inference and an on-disk cache of pooled text embeddings for frozen encoders.

With ``finetune: frozen`` the backbone never changes, so its pooled output for every item
text is computed once and stored as ``<cache_dir>/<key>.safetensors``. The cache holds the
backbone's *pooled* vectors (``TextEncoder.pool_backbone``, ``[N, H]``) for pooling ``cls``,
``mean`` or ``last``, before projection and normalisation; the heads (``TextEncoder.head``) are applied on
top at train time and may still train. ``attention`` pooling learns over token states, which
the cache cannot hold cheaply, so it is refused with a ConfigError.

Files are written to a temporary name and renamed into place (a half-written file never
carries the final name) and are read with safetensors only, never pickle.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from divrec.errors import ConfigError, DataError
from divrec.models.encoder import TextEncoder
from divrec.models.pretrained import weights_fingerprint
from divrec.utils.io import atomic_path, fingerprint

if TYPE_CHECKING:
    from divrec.models.fill_plan import FillPlan

log = logging.getLogger(__name__)

CACHEABLE_POOLINGS = ("cls", "mean", "last")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TENSOR_NAME = "embeddings"


def cache_key(weights_fp: str, texts_fp: str, pooling: str, max_len: int, extra: str = "") -> str:
    """Cache key of pooled embeddings: weights, texts (or token ids), pooling, length, extras."""
    if pooling not in CACHEABLE_POOLINGS:
        raise ConfigError(
            f"model.pooling={pooling!r} cannot use the embedding cache; use one of "
            f"{CACHEABLE_POOLINGS} with a frozen backbone"
        )
    return fingerprint("pooled-embeddings-v1", weights_fp, texts_fp, pooling, int(max_len), extra)


def tokens_fingerprint(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> str:
    """Content fingerprint of token ids + mask (covers texts, tokenizer and max length)."""
    h = hashlib.sha256()
    for t in (input_ids, attention_mask):
        t = t.detach().to("cpu", torch.int64).contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


class EmbeddingCache:
    """Tensors stored as ``<cache_dir>/<key>.safetensors``, computed once per key."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir)

    def path(self, key: str) -> Path:
        """File that holds ``key``'s tensor."""
        if not _KEY_RE.match(key):
            raise ConfigError(f"embedding cache key {key!r}: use letters, digits, '_', '-', '.'")
        return self.cache_dir / f"{key}.safetensors"

    def load(self, key: str) -> torch.Tensor | None:
        """The tensor stored under ``key``, or None when absent or unreadable (then logged)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            tensor = load_file(str(path))[_TENSOR_NAME]
        except (SafetensorError, OSError, KeyError) as e:
            log.warning("embedding cache file %s unreadable (%s); recomputing", path, e)
            return None
        log.info("embedding cache hit: %s", path)
        return tensor

    def save(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """Store ``tensor`` under ``key`` atomically (temporary name, then rename); returns it
        detached, contiguous, on the CPU."""
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensor for {key!r} is a {type(tensor).__name__}, not a Tensor")
        path = self.path(key)
        tensor = tensor.detach().cpu().contiguous()
        with atomic_path(path) as tmp:
            save_file({_TENSOR_NAME: tensor}, str(tmp), metadata={"key": key})
        log.info("embedding cache wrote %s %s", path, tuple(tensor.shape))
        return tensor

    def get_or_compute(
        self, key: str, compute: Callable[[], torch.Tensor]
    ) -> tuple[torch.Tensor, bool]:
        """The tensor stored under ``key`` (hit), else ``compute()``, saved atomically (miss).

        Returns ``(tensor, hit)``. An unreadable file under the final name is recomputed.
        """
        tensor = self.load(key)
        if tensor is not None:
            return tensor, True
        return self.save(key, compute()), False


def length_batches(attention_mask: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, int]]:
    """Batches of row ids, longest texts first, each with the width it needs: ``[(rows, cut)]``.

    ``attention_mask [N, L]``. Rows are sorted by true length (stable) so each batch is cut to
    its own longest row (dynamic padding) when every row is right-padded; otherwise ``cut = L``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive int, got {batch_size!r}")
    n, width = attention_mask.shape
    lengths = attention_mask.sum(1)
    right_padded = bool(
        (attention_mask.bool() == (torch.arange(width) < lengths.unsqueeze(1))).all()
    )
    order = torch.argsort(lengths, descending=True, stable=True)
    plan = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        plan.append((idx, max(1, int(lengths[idx].max())) if right_padded else width))
    return plan


def encode_in_batches(
    encoder: TextEncoder,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    bf16: bool = False,
    pooled_only: bool = False,
) -> torch.Tensor:
    """Encode N texts in eval mode: ``input_ids, attention_mask [N, L] -> [N, d]`` (float32, CPU).

    Rows are sorted by true length so each batch is cut to its own longest row (dynamic
    padding, for right-padded input), and the original order is restored. ``pooled_only``
    returns ``pool_backbone``'s ``[N, H]`` (what the cache stores) instead of ``forward``.
    ``device`` defaults to the encoder's; the encoder must already be there.
    """
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise DataError(
            f"input_ids {tuple(input_ids.shape)} and attention_mask "
            f"{tuple(attention_mask.shape)} must both be [N, L]"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive int, got {batch_size!r}")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    n = input_ids.shape[0]
    dim = encoder.hidden_size if pooled_only else encoder.output_dim
    if n == 0:
        return torch.empty(0, dim)
    plan = length_batches(attention_mask, batch_size)
    fn = encoder.pool_backbone if pooled_only else encoder
    log.info("computing embeddings for %d texts", n)
    was_training = encoder.training
    encoder.eval()
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            out = torch.empty(n, dim)
            for idx, cut in plan:
                ids = input_ids[idx, :cut].to(device)
                mask = attention_mask[idx, :cut].to(device)
                out[idx] = fn(ids, mask).float().cpu()
    finally:
        encoder.train(was_training)
    return out.clone()  # a normal tensor: inference tensors cannot enter autograd later


def resolve_bf16(setting: bool | str, device: str | torch.device) -> bool:
    """``model.cache.bf16`` -> whether to autocast to bf16 on ``device``.

    ``auto``: on a GPU that supports bf16, and on a CPU only with native bf16 units
    (AVX512-BF16 or AMX); on AVX2-only CPUs bf16 autocast is emulated and measured ~6x slower
    than float32 for MiniLM (23 vs 151 texts/s at 32 tokens, ``make bench``).
    """
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ConfigError(f"model.cache.bf16: expected true, false or auto, got {setting!r}")
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def check_cacheable(encoder: TextEncoder) -> None:
    """Raise ConfigError unless the encoder's pooled output can be cached (frozen, cls/mean)."""
    if encoder.trainable_backbone:
        raise ConfigError(
            f"model.finetune={encoder.finetune!r}: the embedding cache needs a frozen backbone"
        )
    if encoder.pooling not in CACHEABLE_POOLINGS:
        raise ConfigError(
            f"model.pooling={encoder.pooling!r} with a frozen backbone cannot be cached "
            f"(token states are too large); use pooling {CACHEABLE_POOLINGS}"
        )


def pooled_key(
    name: str,
    weights_fp: str,
    pooling: str,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    bf16: bool,
) -> str:
    """The one cache entry name of pooled vectors of these tokens ``[N, L]`` under these
    weights, pooling and precision (every reader and writer of pooled vectors uses it)."""
    key = cache_key(
        weights_fp,
        tokens_fingerprint(input_ids, attention_mask),
        pooling,
        input_ids.shape[1],
        extra=f"bf16={bool(bf16)}",
    )
    return f"{name}-{key}"


def _fill(
    cache: EmbeddingCache,
    key: str,
    make_encoder: Callable[[], TextEncoder],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int,
    device: str | torch.device | None,
    bf16: bool,
    plan: FillPlan | None,
) -> tuple[torch.Tensor, bool]:
    """The entry ``key`` from the cache, else computed by one process (``plan`` None or one
    device) or by a sharded Lightning predict (:mod:`divrec.models.cache_fill`)."""
    if plan is not None and plan.sharded:
        from divrec.models.cache_fill import fill_pooled

        if plan.strategy != "ddp":  # one process decides here; under srun every rank fills
            tensor = cache.load(key)
            if tensor is not None:
                return tensor, True
        return fill_pooled(
            cache, key, make_encoder(), input_ids, attention_mask, plan, batch_size, bf16
        )
    return cache.get_or_compute(
        key,
        lambda: encode_in_batches(
            make_encoder(), input_ids, attention_mask, batch_size, device, bf16, pooled_only=True
        ),
    )


def cached_pooled_embeddings(
    cache: EmbeddingCache,
    encoder: TextEncoder,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    name: str = "items",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    bf16: bool = False,
    plan: FillPlan | None = None,
) -> tuple[torch.Tensor, bool]:
    """Pooled backbone vectors ``[N, H]`` for a frozen encoder, from the cache when present.

    Returns ``(pooled, hit)``; apply ``encoder.head(pooled)`` for the final embeddings. A miss
    is filled as ``plan`` says (None: this process, on ``device``).
    """
    check_cacheable(encoder)
    key = pooled_key(
        name, encoder.weights_fingerprint(), encoder.pooling, input_ids, attention_mask, bf16
    )
    return _fill(
        cache, key, lambda: encoder, input_ids, attention_mask, batch_size, device, bf16, plan
    )


def cached_frozen_mean_embeddings(
    cache: EmbeddingCache,
    pretrained: str,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    name: str = "items",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    trust_remote_code: bool = False,
    plan: FillPlan | None = None,
) -> tuple[torch.Tensor, bool]:
    """:func:`cached_pooled_embeddings` of a frozen, mean-pooled ``TextEncoder(pretrained)``
    (same key, same file), loading the backbone only on a miss: ``[N, H]``, hit."""
    key = pooled_key(name, weights_fingerprint(pretrained), "mean", input_ids, attention_mask, bf16)

    def encoder() -> TextEncoder:
        enc = TextEncoder(
            pretrained, pooling="mean", finetune="frozen", trust_remote_code=trust_remote_code
        )
        return enc if plan is not None and plan.sharded else enc.to(device)

    return _fill(cache, key, encoder, input_ids, attention_mask, batch_size, device, bf16, plan)
