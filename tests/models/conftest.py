"""Fixtures shared by the encoder and embedding-cache tests."""

import pytest

from divrec.models.pretrained import load_tokenizer


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    """Keep sha256 marker files out of the user's home."""
    monkeypatch.setenv("DIVREC_CACHE_DIR", str(tmp_path / "divrec-cache"))


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)
