"""Benchmark set-up (composed config, data module, model) and full-catalogue evaluation speed.

:func:`build` composes ``conf/train.yaml`` with the benchmark's overrides exactly as
``python train.py`` would and builds the data module and LightningModule through
:mod:`divrec.build` (frozen-embedding cache included). :func:`eval_throughput` runs the
model's validation loop (``trainer.validate``: score all items for every validation user,
mask seen items, top-K, all configured metrics) and reports users/s and peak memory.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from experiments.benchmarks.bench_training import lightning_trainer, quiet, sync

ROOT = Path(__file__).resolve().parents[2]


def compose_config(overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` (Hydra's compose API, no run folder)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@dataclass
class Setup:
    """A built benchmark subject: config, set-up data module, attached module."""

    cfg: DictConfig
    dm: Any
    module: Any
    precision: Any
    build_seconds: float


def build(overrides: list[str]) -> Setup:
    """Compose, seed and build the data module and model (fills caches on first use)."""
    import lightning.pytorch as pl

    from divrec.build import build_datamodule, build_module, precision

    t0 = time.perf_counter()
    cfg = compose_config(overrides)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    with quiet():
        dm = build_datamodule(cfg)
        module = build_module(cfg, dm)
    return Setup(cfg, dm, module, precision(cfg), time.perf_counter() - t0)


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the process's peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class PeakMemory:
    """Peak memory of a block above its starting level: CPU RSS sampled every ``interval`` s
    by a thread (tensors bypass tracemalloc), or the CUDA allocator's peak on a GPU."""

    def __init__(self, device: str, interval: float = 0.005) -> None:
        self.device, self.interval = device, interval
        self.delta_mb = self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            sync(self.device)
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            sync(self.device)
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes())
        self.peak_mb = peak / 2**20
        self.delta_mb = (peak - self._base) / 2**20


def eval_throughput(setup: Setup, device: str) -> dict[str, float]:
    """Users/s and peak memory of one full ``trainer.validate`` pass (after a one-batch
    warm-up pass, so that one-time set-up is not timed)."""
    cfg, dm, module = setup.cfg, setup.dm, setup.module
    users = len(dm.val_dataloader().dataset)
    with quiet():
        lightning_trainer(cfg, setup.precision, [], limit_val_batches=1).validate(
            module, datamodule=dm, verbose=False
        )
        trainer = lightning_trainer(cfg, setup.precision, [])
        with PeakMemory(device) as mem:
            sync(device)
            t0 = time.perf_counter()
            metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
            sync(device)
            seconds = time.perf_counter() - t0
    return {
        "users": users,
        "items": len(dm.catalogue),
        "seconds": seconds,
        "users_per_s": users / seconds,
        "peak_delta_mb": mem.delta_mb,
        "peak_mb": mem.peak_mb,
        "n_metrics": len(metrics),
    }
