"""Bad configuration through ``run()`` (what ``python train.py`` calls): one ``error:`` line
before any data is loaded, and the run folder gets no checkpoints or split."""

from __future__ import annotations

import pytest

from divrec.run.train import run
from tests.faults.conftest import one_line


@pytest.mark.parametrize(
    "override,needle",
    [
        ("optim.lr=-1", "optim.lr"),
        ("+model.no_such_key=1", "model.no_such_key"),
        ("rerank.name=bogus", "rerank.name"),
        ("data.split.ratios=[0.5,0.5,0.5]", "data.split.ratios"),
        ("model.encoder.finetune=sideways", "model.encoder.finetune"),
        ("+rerank_sweep={values:[0.1],names:[nope]}", "rerank_sweep.names"),
        ("ckpt_path=https://example.org/model.ckpt", "remote checkpoints are refused"),
        ("ckpt_path=/no/such/file.ckpt", "no such checkpoint file"),
    ],
    ids=[
        "negative-lr",
        "unknown-key",
        "unknown-reranker",
        "split-ratios",
        "finetune-mode",
        "sweep-reranker",
        "remote-ckpt",
        "missing-ckpt",
    ],
)
def test_bad_config_is_one_line_before_data_loads(compose, tmp_path, monkeypatch, override, needle):
    monkeypatch.delenv("DIVREC_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as info:
        run(compose(override))
    text = one_line(info.value.code, needle)
    assert text.startswith("error:"), text
    assert not (tmp_path / "run" / "split").exists(), "data was loaded before the check"
