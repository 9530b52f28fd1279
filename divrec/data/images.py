"""Item images: one path or URL per item, fetched once, decoded with safety checks.

``data.images.column`` names the item column holding each item's image: a local path
(a relative one starts at ``data.images.root``) or an ``http(s)://`` / ``file://`` URL. They
are only read when the model uses images (``model.image.encoder``).

- A URL is downloaded once into ``<cache_dir>/images/<sha256(url)[:16]><suffix>`` with
  :func:`divrec.data.sources.download.download_file` (the dataset downloads' checks: allowed
  schemes only, written under a temporary name and renamed after the transfer completed,
  truncation detected); a file over :data:`MAX_IMAGE_BYTES` is deleted.
- Decoding uses Pillow with its decompression-bomb limit raised as an error, and converts to
  RGB.
- An empty value, a failed download, a missing, oversized or undecodable file: the item has
  no image. The reasons are counted and reported in one warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.parse
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd

from divrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 20 << 20  # larger files are not images of an item
URL_SCHEMES = ("http", "https", "file")


def check_images_cfg(images: dict | None) -> dict:
    """``data.images`` as keyword arguments of :func:`image_refs` (ConfigError if unknown keys)."""
    cfg = {"column": "image", "root": None, **dict(images or {})}
    unknown = sorted(set(cfg) - {"column", "root"})
    if unknown:
        raise ConfigError(f"data.images: unknown key(s) {unknown}; allowed ['column', 'root']")
    return cfg


def image_refs(items: pd.DataFrame, column: str | None, root: str | None = None) -> list[str]:
    """Each item's image reference (``""``: none) from ``items[column]``: ``[N]`` strings,
    relative paths joined to ``root``. An absent column gives no images (a model that uses
    images warns, see :func:`warn_missing`)."""
    if not column or column not in items.columns:
        return [""] * len(items)
    out = []
    for value in items[column].tolist():
        ref = "" if value is None or (isinstance(value, float) and value != value) else str(value)
        ref = ref.strip()
        if ref and root and not _is_url(ref) and not Path(ref).is_absolute():
            ref = str(Path(root).expanduser() / ref)
        out.append(ref)
    return out


def _is_url(ref: str) -> bool:
    return urllib.parse.urlsplit(ref).scheme.lower() in URL_SCHEMES + ("ftp", "data")


def fetch_image(ref: str, cache_dir: str | os.PathLike) -> Path:
    """The local file of one image reference (a URL is downloaded once); DataError if none."""
    from divrec.data.sources.download import download_file

    if not _is_url(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise DataError(f"{ref}: image file not found")
        return path
    suffix = Path(urllib.parse.urlsplit(ref).path).suffix.lower()
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ""
    name = hashlib.sha256(ref.encode()).hexdigest()[:16] + suffix
    dest = Path(cache_dir).expanduser() / "images" / name
    if not dest.is_file():
        download_file(ref, dest, timeout=30)
    if dest.stat().st_size > MAX_IMAGE_BYTES:
        dest.unlink(missing_ok=True)
        raise DataError(f"{ref}: larger than {MAX_IMAGE_BYTES} bytes")
    return dest


def local_image_files(refs: list[str], cache_dir: str | os.PathLike) -> tuple[list, Counter]:
    """(local file or None per item ``[N]``, count of items without one by reason)."""
    files: list[Path | None] = []
    missing: Counter = Counter()
    for ref in refs:
        if not ref:
            files.append(None)
            missing["no image given"] += 1
            continue
        try:
            path = fetch_image(ref, cache_dir)
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise DataError(f"{ref}: larger than {MAX_IMAGE_BYTES} bytes")
            files.append(path)
        except (DataError, OSError) as e:
            log.debug("no image: %s", e)
            files.append(None)
            missing["download failed" if _is_url(ref) else "file missing or too large"] += 1
    return files, missing


def decode_image(path: str | os.PathLike):
    """The RGB ``PIL.Image`` in ``path``; DataError if it is not a readable image (or would
    exceed Pillow's decompression-bomb pixel limit)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({type(e).__name__})") from None
    except Image.DecompressionBombWarning:
        raise DataError(f"{path}: image too large (decompression bomb limit)") from None


def warn_missing(missing: Counter, n_items: int, column: str | None, columns: list[str]) -> None:
    """One warning: how many of ``n_items`` items have no image, by reason (and whether the
    image column exists at all among the item ``columns``)."""
    total = sum(missing.values())
    if column not in columns:
        log.warning(
            "data.images.column=%r is not an item column (%s): no item has an image",
            column,
            ", ".join(map(str, columns)),
        )
    elif total:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(missing.items()))
        log.warning("%d of %d items have no image (%s)", total, n_items, reasons)
