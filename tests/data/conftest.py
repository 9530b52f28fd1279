"""Fixtures for data tests on sources other than shop_sim."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, TINY_OVERRIDES


@pytest.fixture
def compose_source(tiny_model_dir, tmp_path):
    """compose_source(*overrides): like ``compose`` but without the shop_sim size keys, so
    ``data=csv`` / ``data=movielens`` can be chosen; runs and caches go under ``tmp_path``."""
    from hydra import compose, initialize_config_dir

    keep = [o for o in TINY_OVERRIDES if not o.startswith(("data.n_", "model.", "model/"))]

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose(
                config_name="train",
                overrides=[
                    *keep,
                    f"paths.output_dir={tmp_path / 'run'}",
                    f"paths.cache_dir={tmp_path / 'cache'}",
                    *overrides,
                    f"model.encoder.pretrained={tiny_model_dir}",
                ],
            )

    return _compose
