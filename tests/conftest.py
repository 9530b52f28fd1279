"""Shared fixtures: environment for offline runs, the tiny BERT, and Hydra-composed configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
if "DIVREC_CACHE_DIR" not in os.environ:  # hash markers etc. never land in the user's home
    import tempfile

    os.environ["DIVREC_CACHE_DIR"] = tempfile.mkdtemp(prefix="divrec-test-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Small shop_sim + tiny BERT: a full fit/test in a few seconds on 2 CPU cores.
TINY_OVERRIDES = [
    "data.n_items=300",
    "data.n_users=120",
    "data.n_interactions=3000",
    "data.batch_size=64",
    "data.text.max_user_len=48",
    "logger=none",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "model.head_hidden=32",
    "model.id_embeddings=false",  # tests of the text/history towers alone; the hybrid is opt-in
    "model.user_tower=text",  # the text tower and plain two-tower scoring, not the default
    "model/cf=two_tower",  # history tower + hybrid CF: tests name what they test
    "model.cache.bf16=false",
]
# The TINY_OVERRIDES keys that only a two-tower model has (left out for model=<baseline>).
TWO_TOWER_KEYS = ("model.head_hidden", "model.id_embeddings", "model.user_tower", "model/cf")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Folder of a tiny BERT (config.json, model.safetensors, tokenizer) built with seed 0."""
    from divrec.models.tiny import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", seed=0)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One token/embedding cache per test session (content-keyed, so sharing is safe)."""
    return tmp_path_factory.mktemp("cache")


def compose_tiny(out: Path, tiny_model_dir: str, cache: Path, *overrides: str):
    """A DictConfig for a tiny run writing to ``out``: TINY_OVERRIDES (less the two-tower keys
    for a baseline, less shop_sim's size keys for another ``data=`` source) + ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    baseline = any(o.startswith("model=") and o != "model=two_tower" for o in overrides)
    other_source = any(o.startswith("data=") and o != "data=shop_sim" for o in overrides)
    drop = (TWO_TOWER_KEYS if baseline else ()) + (
        ("data.n_",) if other_source else ()  # shop_sim's size keys
    )
    tiny = [o for o in TINY_OVERRIDES if not (drop and o.startswith(drop))]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(
            config_name="train",
            overrides=[
                *tiny,
                f"model.encoder.pretrained={tiny_model_dir}",
                f"paths.output_dir={out}",
                f"paths.cache_dir={cache}",
                *overrides,
            ],
        )


@pytest.fixture
def compose(tiny_model_dir, shared_cache, tmp_path):
    """compose(*overrides) -> a resolved-ready DictConfig for a tiny run in ``tmp_path``
    (any ``data=`` source: shop_sim's size keys are left out for the others)."""

    def _compose(*overrides: str, cache: Path | None = None):
        return compose_tiny(tmp_path / "run", tiny_model_dir, cache or shared_cache, *overrides)

    return _compose
