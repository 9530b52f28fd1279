"""Latency budgets that used to be test assertions (tests assert behaviour, never wall-clock).

* ``shop_sim_seconds``: generating the default ``shop_sim`` (5,000 items, 60,000 rows); budget
  2 s (it is loaded at the start of every default run and every test that uses it).
* ``recommend_seconds``: one ``recommend()`` call of a history-tower run for a 50-item history
  (warm: the model is loaded and one call has run); budget 1 s (interactive serving).

Both return the median of ``repeats`` timed calls in seconds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

SHOP_SIM_BUDGET_S = 2.0
RECOMMEND_BUDGET_S = 1.0


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def shop_sim_seconds(repeats: int = 3, **sizes: int) -> float:
    """Median seconds of ``load_shop_sim(**sizes)`` (default sizes when none are given)."""
    from divrec.data.sources.shop_sim import load_shop_sim

    return _median_seconds(lambda: load_shop_sim(**sizes), repeats)


def history_run(overrides: list[str], out: Path) -> Path:
    """Train a short history-tower run into ``out`` (checkpoint + .hydra/config.yaml)."""
    from omegaconf import OmegaConf

    from divrec.run.train import train
    from experiments.benchmarks.bench_eval import compose_config

    drop = ("callbacks=", "paths.output_dir=")  # this run saves a checkpoint in ``out``
    cfg = compose_config(
        [
            *(o for o in overrides if not o.startswith(drop)),
            "model.user_tower=history",
            "logger=none",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.enable_progress_bar=false",
            f"paths.output_dir={out}",
        ]
    )
    train(cfg)
    (out / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return next((out / "checkpoints").glob("epoch*.ckpt"))


def recommend_seconds(checkpoint: Path, history_len: int = 50, repeats: int = 5) -> float:
    """Median seconds of ``recommend()`` for the first ``history_len`` catalogue items."""
    from divrec.serve.recommend import load_model, recommend

    model = load_model(checkpoint)
    history = model.dm.catalogue.item_ids[:history_len]
    recs = recommend(model, history, k=10)  # warm-up
    if len(recs) != 10:
        raise RuntimeError(f"recommend() returned {len(recs)} rows, expected 10")
    return _median_seconds(lambda: recommend(model, history, k=10), repeats)
