"""What a tiny run prints without a terminal: one line per epoch, no noise, no repeats (#17)."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
EPOCH_LOGGER = "divrec.run.epoch_log"
NOISE = (
    "litlogger",
    "litmodels",
    "anonymous",
    "LeafSpec",
    "Modules in eval mode",
    "module(s) in eval mode",
    "log_every_n_steps",
)


def _epoch_lines(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == EPOCH_LOGGER and r.getMessage().startswith("epoch ")
    ]


def test_one_line_per_validation_epoch_and_one_pipeline_run(compose, caplog, monkeypatch):
    import divrec.data.datamodule as datamodule
    from divrec.run.train import train

    calls = []
    real = datamodule.load_source
    monkeypatch.setattr(datamodule, "load_source", lambda *a, **k: calls.append(1) or real(*a, **k))
    caplog.set_level(logging.INFO)
    cfg = compose("trainer.max_epochs=2", "trainer.limit_train_batches=2")
    train(cfg)

    assert len(calls) == 1, "the data pipeline ran more than once in one process"
    lines = _epoch_lines(caplog)
    assert len(lines) == 2, lines
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"epoch {epoch}/2 step {2 * epoch}: "), line
        assert re.search(r"val/ndcg@10=\d", line) and re.search(r"val/recall@10=\d", line), line
        assert re.search(r"val/ild_(cat|emb)@10=\d", line), line  # a diversity metric
        assert re.search(r"early stop: best \d\S*, wait [01]/3", line), line
        assert re.search(r"kept: epoch00[01]\.ckpt \(val/ndcg@10=\d", line), line
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    kept = re.search(r"kept: (\S+)", lines[-1]).group(1)
    assert (folder / kept).is_file()
    assert any(r.getMessage().startswith("model: ") for r in caplog.records)


def test_no_epoch_line_outside_fit(compose, caplog):
    """A validate-only run (closed-form baseline) logs no epoch line."""
    from divrec.run.train import train

    caplog.set_level(logging.INFO)
    train(compose("model=pop", "test=false"))
    assert _epoch_lines(caplog) == []


def test_tiny_run_output_has_no_noise_or_repeats(compose, capfd, recwarn):
    """As under Hydra: a root console handler; every INFO line once, no noise strings.
    ``run`` (what train.py calls) finishes the W&B run, so no run leaks into later tests."""
    from divrec.run.train import run

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        run(compose("logger=wandb", "trainer.max_epochs=2", "trainer.limit_train_batches=2"))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out, err = capfd.readouterr()
    logged = stream.getvalue()
    text = "\n".join([out, err, logged, *(str(w.message) for w in recwarn)])
    for noise in NOISE:
        assert noise not in text, noise
    info = [line for line in logged.splitlines() if line.startswith("INFO ")]
    repeated = {line for line in info if info.count(line) > 1}
    assert not repeated, repeated
    assert "GPU available" in logged  # real news stays, printed once
    assert "GPU available" not in out + err


def test_default_trainer_has_no_module_mode_summary():
    trainer = OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml")
    callbacks = OmegaConf.load(ROOT / "conf" / "callbacks" / "default.yaml")
    assert trainer.enable_model_summary is False
    assert callbacks.epoch_log._target_ == "divrec.run.epoch_log.EpochLog"
