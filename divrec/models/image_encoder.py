"""Frozen vision encoder of item images, and the on-disk cache of its vectors.

``model.image.encoder`` is a local folder of a transformers vision checkpoint with an image
processor (``preprocessor_config.json``): a vision model (ViT, DINOv2, ``CLIPVisionModel``,
``SiglipVisionModel``, ...: ``pooler_output``, else the first token's state) or a dual
encoder with ``get_image_features`` (``CLIPModel``, ``SiglipModel``: the image tower's
projected vector). ``AutoImageProcessor`` resizes and normalises (the PIL backend: no
torchvision needed). The encoder never trains.

Vectors of the whole catalogue are computed once and stored with
:class:`~divrec.models.embed_cache.EmbeddingCache` as ``[N, D + 1]``: the image vector
(zeros where the item has none) and a last column 1/0 = has an image (a file that fails to
decode is only known while encoding). The key covers the weights' content, the processor's
settings and the sha256 of every image file (or its absence), so a changed image, processor
or checkpoint is a new entry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from divrec.data.images import decode_image
from divrec.errors import ConfigError, DataError, DivrecError
from divrec.models.embed_cache import EmbeddingCache
from divrec.models.pretrained import cached_sha256, local_source, weights_fingerprint
from divrec.utils.io import fingerprint

log = logging.getLogger(__name__)

KEY = "model.image.encoder"


def _local_folder(path: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{KEY}: expected a local checkpoint folder, got {path!r}")
    try:
        source, local = local_source(path)
    except ConfigError:
        local = False
    if not local:
        raise ConfigError(f"{KEY}: {path!r} is not a local folder (the one holding config.json)")
    return source


def image_feature_dim(path: str) -> int:
    """Width D of the image vectors of the checkpoint in ``path`` (read from its config)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(_local_folder(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{KEY}: cannot read the config in {path!r} ({e})") from None
    vision = getattr(config, "vision_config", None)
    if vision is not None:  # dual encoder: get_image_features (projected when it projects)
        return int(getattr(config, "projection_dim", None) or vision.hidden_size)
    if getattr(config, "hidden_size", None) is None:
        raise ConfigError(f"{KEY}: {path!r} is not a vision model (no hidden_size)")
    return int(config.hidden_size)


def load_image_processor(path: str):
    """``AutoImageProcessor`` of a local checkpoint (the PIL backend where there is a choice)."""
    import transformers
    from transformers import AutoImageProcessor

    folder = _local_folder(path)
    kwargs = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {}
    try:
        return AutoImageProcessor.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{KEY}: no image processor in {path!r} ({first})") from None


def processor_fingerprint(processor) -> str:
    """Fingerprint of the processor's settings (size, crop, mean/std, ...)."""
    return fingerprint(processor.to_dict())


class ImageEncoder(nn.Module):
    """Frozen vision checkpoint: list of RGB images -> ``[B, D]`` vectors."""

    def __init__(self, pretrained: str) -> None:
        super().__init__()
        from transformers import AutoModel

        self.path = _local_folder(pretrained)
        self.processor = load_image_processor(pretrained)
        try:
            model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise DivrecError(f"cannot load the image model from {pretrained!r}: {e}") from e
        self.model = model.eval().requires_grad_(False)
        self.output_dim = image_feature_dim(pretrained)

    def train(self, mode: bool = True) -> ImageEncoder:
        """Always in eval mode: the encoder is frozen."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values [B, 3, h, w] -> [B, D]`` (float32)."""
        if hasattr(self.model, "get_image_features"):
            out = self.model.get_image_features(pixel_values=pixel_values)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
        else:
            res = self.model(pixel_values=pixel_values)
            pooled = getattr(res, "pooler_output", None)
            out = pooled if pooled is not None else res.last_hidden_state[:, 0]
        return out.float()

    def encode(self, images: list, device: str | torch.device = "cpu") -> torch.Tensor:
        """RGB ``PIL`` images ``[B]`` -> ``[B, D]`` on the CPU."""
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return self.forward(pixels.to(device)).cpu()


def image_files_fingerprint(files: list[Path | None]) -> str:
    """Content fingerprint of the catalogue's image files (order = item index)."""
    return fingerprint([cached_sha256(p) if p is not None else None for p in files])


def encode_image_files(
    encoder: ImageEncoder, files: list, batch_size: int = 64, device: str = "cpu"
) -> torch.Tensor:
    """``[N, D + 1]``: vectors of the decodable files (zeros elsewhere) and a has-image column."""
    if batch_size < 1:
        raise ConfigError(f"model.image.batch_size: expected a positive int, got {batch_size!r}")
    encoder.to(device)
    out = torch.zeros(len(files), encoder.output_dim + 1)
    todo = [i for i, f in enumerate(files) if f is not None]
    log.info("computing image vectors for %d items", len(todo))
    for start in range(0, len(todo), batch_size):
        rows, images = [], []
        for i in todo[start : start + batch_size]:
            try:
                images.append(decode_image(files[i]))
                rows.append(i)
            except DataError as e:
                log.debug("no image: %s", e)
        if rows:
            out[rows, :-1] = encoder.encode(images, device)
            out[rows, -1] = 1.0
    return out


def cached_image_vectors(
    cache: EmbeddingCache,
    pretrained: str,
    files: list[Path | None],
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(vectors ``[N, D]``, has-image mask ``[N]`` bool, cache hit) for the items' image
    files (None: no image); the encoder loads only on a cache miss."""
    processor = load_image_processor(pretrained)
    key = fingerprint(
        "image-vectors-v1",
        weights_fingerprint(_local_folder(pretrained)),
        processor_fingerprint(processor),
        image_files_fingerprint(files),
    )
    table, hit = cache.get_or_compute(
        f"images-{key}",
        lambda: encode_image_files(ImageEncoder(pretrained), files, batch_size, device),
    )
    return table[:, :-1].contiguous(), table[:, -1] > 0.5, hit
