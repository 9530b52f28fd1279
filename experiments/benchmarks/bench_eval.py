"""Benchmark set-up (sizes, composed config, data module, model) and evaluation speed.

:class:`Sizes` holds every workload size (``Sizes()`` for ``make bench``, ``Sizes.toy`` for the
smoke test); :func:`frozen_setup` / :func:`encoder_setup` build the default frozen model and its
fully fine-tuned variant. :func:`build` composes ``conf/train.yaml`` with the benchmark's overrides exactly as
``python train.py`` would and builds the data module and LightningModule through
:mod:`divrec.run.build` (frozen-embedding cache included). :func:`eval_throughput` runs the
model's validation loop (``trainer.validate``: score all items for every validation user,
mask seen items, top-K, all configured metrics) and reports users/s and peak memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from experiments.benchmarks.bench_training import lightning_trainer, quiet, sync

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "bench"


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

    from divrec.run.build import build_datamodule, build_module, precision

    t0 = time.perf_counter()
    cfg = compose_config(overrides)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    with quiet():
        dm = build_datamodule(cfg)
        module = build_module(cfg, dm)
    return Setup(cfg, dm, module, precision(cfg), time.perf_counter() - t0)


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; ``Sizes()`` is ``make bench``, :meth:`toy` the smoke test's."""

    data: str = "movielens" if os.environ.get("DIVREC_DATA_DIR") else "shop_sim"
    data_overrides: tuple[str, ...] = ()
    model_overrides: tuple[str, ...] = ()
    pretrained: str = "minilm"
    cache_dir: str = str(CACHE)
    out_dir: str = str(CACHE / "runs")
    rounds: int = 3  # heads-only runs interleaved this often; best of each reported
    frozen_batch: int = 256  # the data config's default batch size
    frozen_warmup: int = 10
    frozen_steps: int = 60
    uncached_steps: int = 2  # steps that run the frozen backbone (~10 CPU-s each at 1 thread)
    enc_rounds: int = 2  # fine-tuning runs (divrec, plain loop, sentence-transformers) interleaved
    enc_batch: int = 64  # trainable-encoder rows: pairs per step and token limit
    enc_seq: int = 32
    enc_warmup: int = 2
    enc_steps: int = 8
    mfu_batch: int = 256  # GPU row: full fine-tuning at 256 pairs x 64 tokens, bf16
    mfu_seq: int = 64
    mfu_warmup: int = 5
    mfu_steps: int = 20
    matmul_n: int = 8192
    rerank: bool = True  # the re-ranker row runs at its fixed evaluation shape only
    shop_sim_sizes: dict = field(default_factory=dict)  # latency row: load_shop_sim(**these)

    @classmethod
    def toy(cls, model_dir: str, cache_dir: str, out_dir: str) -> Sizes:
        """Seconds-scale sizes on the tiny BERT and a small shop_sim (smoke test)."""
        return cls(
            data="shop_sim",
            data_overrides=("data.n_items=200", "data.n_users=80", "data.n_interactions=1500"),
            model_overrides=("model.head_hidden=32", "model.cache.bf16=false"),
            pretrained=model_dir,
            cache_dir=cache_dir,
            out_dir=out_dir,
            rounds=1,
            enc_rounds=1,
            frozen_batch=16,
            frozen_warmup=1,
            frozen_steps=2,
            uncached_steps=1,
            enc_batch=8,
            enc_seq=16,
            enc_warmup=1,
            enc_steps=2,
            mfu_batch=8,
            mfu_seq=16,
            mfu_warmup=1,
            mfu_steps=2,
            matmul_n=64,
            rerank=False,
            shop_sim_sizes={"n_items": 200, "n_users": 80, "n_interactions": 1500},
        )


def _overrides(sizes: Sizes, device: str, *extra: str) -> list[str]:
    return [
        f"data={sizes.data}",
        *sizes.data_overrides,
        "logger=none",
        "callbacks=none",
        f"paths.output_dir={sizes.out_dir}",
        f"paths.cache_dir={sizes.cache_dir}",
        f"model.encoder.pretrained={sizes.pretrained}",
        f"trainer.accelerator={'gpu' if device.startswith('cuda') else 'cpu'}",
        *sizes.model_overrides,
        *extra,
    ]


def frozen_setup(sizes: Sizes, device: str) -> Setup:
    """The default model (frozen MiniLM, cached pooled vectors) at the default batch size."""
    return build(_overrides(sizes, device, f"data.batch_size={sizes.frozen_batch}"))


def encoder_setup(sizes: Sizes, device: str, batch: int, seq: int) -> Setup:
    """The same model with full fine-tuning, ``batch`` pairs, ``seq``-token texts."""
    return build(
        _overrides(
            sizes,
            device,
            "model.encoder.finetune=full",
            f"data.batch_size={batch}",
            f"data.text.max_user_len={seq}",
            f"data.text.max_item_len={seq}",
            "optim.lr=2e-5",
            "eval.metrics=[recall,ndcg]",  # no evaluation here: skip the reference vectors
        )
    )


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the process's peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _maxrss_bytes()


def _release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``) so that the RSS rises
    again when a measured block allocates; elsewhere only a garbage collection."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class PeakMemory:
    """Peak memory of a block above its starting level: CPU RSS sampled every ``interval`` s
    by a thread after freed heap pages were returned to the OS (tensors bypass tracemalloc),
    or the CUDA allocator's peak on a GPU."""

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
            _release_free_heap()
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
    """Users/s (wall-clock and process CPU time) and peak memory of one full
    ``trainer.validate`` pass, after a one-batch warm-up pass so that one-time set-up is not
    timed."""
    cfg, dm, module = setup.cfg, setup.dm, setup.module
    users = len(dm.val_dataloader().dataset)
    with quiet():
        lightning_trainer(cfg, setup.precision, [], limit_val_batches=1).validate(
            module, datamodule=dm, verbose=False
        )
        trainer = lightning_trainer(cfg, setup.precision, [])
        with PeakMemory(device) as mem:
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
            sync(device)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    return {
        "users": users,
        "items": len(dm.catalogue),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "users_per_s": users / seconds,
        "users_per_cpu_s": users / cpu_seconds,
        "peak_delta_mb": mem.delta_mb,
        "peak_mb": mem.peak_mb,
        "n_metrics": len(metrics),
    }
