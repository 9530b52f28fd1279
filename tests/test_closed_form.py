"""Closed-form baselines run without Lightning (#20): the same numbers and files as the
Lightning path, and Lightning never imported."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(compose, folder: Path, lightning: bool, monkeypatch, *overrides: str):
    """train() of ``overrides`` in ``folder``; ``lightning``: forced through the Trainer."""
    import divrec.run.closed_form as closed_form
    from divrec.run.train import train

    cfg = compose(*overrides, "logger=csv", f"paths.output_dir={folder}")
    calls: list[int] = []
    plain = closed_form.train_closed_form
    with monkeypatch.context() as m:
        if lightning:
            m.setattr(closed_form, "is_closed_form", lambda cfg: False)
        m.setattr(closed_form, "train_closed_form", lambda *a: calls.append(1) or plain(*a))
        value = train(cfg)
    assert calls == ([] if lightning else [1])
    top = folder / "metrics.json"  # a rerank_sweep writes one per sub-run only
    return value, json.loads(top.read_text()) if top.is_file() else {}


def _csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "csv" / "version_0" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=pop",),
        ("model=itemknn", "model.options.k=20"),
        ("model=ease", "rerank=mmr"),
        ("model=buy_again", "eval.mask_seen=false", "train=false"),
    ],
    ids=["pop", "itemknn", "ease-mmr", "buy_again-untrained"],
)
def test_plain_run_equals_lightning_run(compose, tmp_path, monkeypatch, overrides):
    plain_value, plain = _run(compose, tmp_path / "plain", False, monkeypatch, *overrides)
    pl_value, pl = _run(compose, tmp_path / "lightning", True, monkeypatch, *overrides)

    keys = {k for k in pl if k != "meta"}
    assert keys == {k for k in plain if k != "meta"}
    assert any(k.startswith("val/") for k in keys) and any(k.startswith("test/") for k in keys)
    assert {k: plain[k] for k in keys} == {k: pl[k] for k in keys}  # exactly, not approximately
    assert plain_value == pl_value == plain["val/ndcg@10"]
    for key in ("best_checkpoint", "evaluated_checkpoint", "evaluated_epoch", "evaluated_step"):
        assert plain["meta"][key] == pl["meta"][key], key
    a = pd.read_parquet(tmp_path / "plain" / "recommendations.parquet")
    b = pd.read_parquet(tmp_path / "lightning" / "recommendations.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert _csv_rows(tmp_path / "plain") == _csv_rows(tmp_path / "lightning")
    names = sorted(p.name for p in (tmp_path / "lightning").iterdir())
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == names


def test_rerank_sweep_sub_runs_equal_lightning(compose, tmp_path, monkeypatch):
    sweep = ("model=pop", "rerank=mmr", "+rerank_sweep={key:diversity,values:[0.0,0.6]}")
    plain_value, _ = _run(compose, tmp_path / "plain", False, monkeypatch, *sweep)
    pl_value, _ = _run(compose, tmp_path / "lightning", True, monkeypatch, *sweep)
    assert plain_value == pl_value
    for sub in ("diversity=0.0", "diversity=0.6"):
        a = json.loads((tmp_path / "plain" / sub / "metrics.json").read_text())
        b = json.loads((tmp_path / "lightning" / sub / "metrics.json").read_text())
        assert {k: v for k, v in a.items() if k != "meta"} == {
            k: v for k, v in b.items() if k != "meta"
        }
        assert a["meta"]["knobs"] == b["meta"]["knobs"]
        assert _csv_rows(tmp_path / "plain" / sub) == _csv_rows(tmp_path / "lightning" / sub)
    low = json.loads((tmp_path / "plain" / "diversity=0.0" / "metrics.json").read_text())
    high = json.loads((tmp_path / "plain" / "diversity=0.6" / "metrics.json").read_text())
    assert low["test/ild_emb@10"] != high["test/ild_emb@10"]  # the sweep re-ranked


SCRIPT = """
import sys
from hydra import compose, initialize_config_dir
from divrec.models.tiny import build_tiny_bert
from divrec.run.train import train

tiny = build_tiny_bert(sys.argv[2] + "/bert", seed=0)
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose(config_name="train", overrides=[
        "data.n_items=200", "data.n_users=80", "data.n_interactions=1500", "logger=csv",
        "trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "model=" + sys.argv[3], f"model.encoder.pretrained={tiny}",
        f"paths.output_dir={sys.argv[2]}/run", f"paths.cache_dir={sys.argv[2]}/cache",
    ])
value = train(cfg)
print(value, sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning")))
"""


@pytest.mark.parametrize("model", ["pop", pytest.param("bpr", marks=pytest.mark.slow)])
def test_closed_form_run_never_imports_lightning(tmp_path, model):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "conf"), str(tmp_path), model],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    value, modules = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert float(value) >= 0.0
    if model == "pop":
        assert modules == "[]", modules
        assert (tmp_path / "run" / "csv" / "version_0" / "metrics.csv").is_file()
    else:  # the control: a trained baseline does go through Lightning
        assert "lightning.pytorch" in modules


def test_wandb_logger_works_without_a_trainer(compose, tmp_path, monkeypatch):
    """logger=wandb on the plain path: Lightning's WandbLogger used on its own (W&B disabled)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    from divrec.run.train import train

    cfg = compose("model=pop", "logger=wandb", f"paths.output_dir={tmp_path / 'run'}")
    value = train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert value == metrics["val/ndcg@10"] and metrics["meta"]["status"] == "ok"
