"""``train(cfg)``: one run from a composed Hydra config; returns the metric a sweeper optimises.

Steps: seed -> data module (split saved in the run folder) -> model (+ frozen-embedding
cache) -> Lightning fit with validation -> test on the best checkpoint -> ``metrics.json``,
``recommendations.parquet`` and the W&B run. ``run(cfg)`` wraps it so that a failing job is
recorded as failed and, inside a multirun, returns NaN instead of taking the sweep down.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from divrec.artifacts import (
    config_hash,
    recommendations_frame,
    versions,
    write_metrics,
    write_recommendations,
)
from divrec.data.datamodule import RecDataModule
from divrec.errors import ConfigError, DivrecError
from divrec.models.module import RecModule
from divrec.models.ranking import RankingModule
from divrec.wandb_utils import finish_wandb, log_recommendation_table

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> RecDataModule:
    """Instantiate ``cfg.data`` into a set-up ``RecDataModule``."""
    dm: RecDataModule = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup()
    return dm


def build_module(cfg: DictConfig, dm: RecDataModule) -> RankingModule:
    """The LightningModule for ``cfg.model`` (two-tower or baseline), attached to ``dm``."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    kind = model_cfg.pop("kind", "two_tower")
    cache_cfg = model_cfg.pop("cache", {}) or {}
    evaluation = OmegaConf.to_container(cfg.eval, resolve=True)
    rerank_cfg = OmegaConf.to_container(cfg.rerank, resolve=True)
    sizes = {"n_items": len(dm.catalogue), "n_users": len(dm.user_ids)}
    if kind == "baseline":
        from divrec.baselines.module import BaselineModule

        module = BaselineModule(
            model_cfg["name"],
            **sizes,
            options=model_cfg.get("options"),
            evaluation=evaluation,
            rerank_cfg=rerank_cfg,
        )
        ref = reference_embeddings(cfg, dm, cache_cfg) if _needs_reference(cfg) else None
        module.attach(dm, ref)
        return module
    if kind != "two_tower":
        raise ConfigError(f"model.kind: '{kind}' unknown; use two_tower or baseline")
    module = RecModule(
        model={**model_cfg, **sizes},
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        evaluation=evaluation,
        rerank_cfg=rerank_cfg,
    )
    item_base = user_base = ref = None
    if module.net.frozen:
        item_base, user_base = frozen_bases(module, dm, cfg, cache_cfg)
        if module.net.item_encoder.pooling == "mean":
            ref = item_base
    if ref is None and _needs_reference(cfg):
        ref = reference_embeddings(cfg, dm, cache_cfg)
    module.attach(dm, item_base, user_base, ref)
    return module


def _needs_reference(cfg: DictConfig) -> bool:
    return cfg.rerank.get("name", "none") in ("mmr", "dpp") or "ild_emb" in cfg.eval.metrics


def _cache(cfg: DictConfig):
    from divrec.models.embed_cache import EmbeddingCache

    return EmbeddingCache(Path(cfg.paths.cache_dir) / "embeddings")


def reference_embeddings(cfg: DictConfig, dm: RecDataModule, cache_cfg: dict) -> torch.Tensor:
    """The frozen pretrained encoder's mean-pooled item vectors [N, H] (the shared item space
    of re-rankers and ``ild_emb``), from the embedding cache."""
    from divrec.models.embed_cache import cached_pooled_embeddings
    from divrec.models.encoder import TextEncoder

    enc_cfg = cfg.model.encoder
    encoder = TextEncoder(
        enc_cfg.pretrained,
        pooling="mean",
        finetune="frozen",
        trust_remote_code=bool(enc_cfg.get("trust_remote_code", False)),
    )
    ref, _ = cached_pooled_embeddings(
        _cache(cfg),
        encoder,
        dm.item_tokens.input_ids,
        dm.item_tokens.attention_mask,
        name="items",
        batch_size=int(cache_cfg.get("batch_size", 128)),
        device=_device(),
        bf16=bool(cache_cfg.get("bf16", True)),
    )
    return ref


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def frozen_bases(module: RecModule, dm: RecDataModule, cfg: DictConfig, cache_cfg: dict):
    """Pooled backbone vectors for all items (and user texts), from the on-disk cache."""
    from divrec.models.embed_cache import cached_pooled_embeddings

    cache = _cache(cfg)
    device = _device()
    bf16 = bool(cache_cfg.get("bf16", True))
    bs = int(cache_cfg.get("batch_size", 128))
    t0 = time.perf_counter()
    item_base, hit_i = cached_pooled_embeddings(
        cache,
        module.net.item_encoder,
        dm.item_tokens.input_ids,
        dm.item_tokens.attention_mask,
        name="items",
        batch_size=bs,
        device=device,
        bf16=bf16,
    )
    user_base, hit_u = None, True
    if module.net.user_tower == "text":
        user_base, hit_u = cached_pooled_embeddings(
            cache,
            module.net.user_encoder,
            dm.user_tokens.input_ids,
            dm.user_tokens.attention_mask,
            name="users",
            batch_size=bs,
            device=device,
            bf16=bf16,
        )
    dt = time.perf_counter() - t0
    dm.stats["cache/embeddings_hit"] = bool(hit_i and hit_u)
    dm.stats["cache/embeddings_seconds"] = round(dt, 2)
    log.info(
        "frozen embeddings %s in %.1f s", "reused from cache" if hit_i and hit_u else "computed", dt
    )
    return item_base, user_base


def _precision(cfg: DictConfig) -> Any:
    if cfg.trainer.get("precision") is not None:
        return cfg.trainer.precision
    gpu = cfg.trainer.get("accelerator") in ("gpu", "cuda") or (
        cfg.trainer.get("accelerator") == "auto" and torch.cuda.is_available()
    )
    return "bf16-mixed" if gpu else "32-true"


def _instantiate_dict(node: DictConfig | None) -> list:
    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def train(cfg: DictConfig) -> float:
    """Run one experiment; returns ``cfg.optimized_metric`` (best validation value)."""
    t0 = time.time()
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")

    dm = build_datamodule(cfg)
    _print_stats(dm.stats)
    dm.save_split(out / "split")
    module = build_module(cfg, dm)

    loggers = _instantiate_dict(cfg.get("logger"))
    callbacks = _instantiate_dict(cfg.get("callbacks"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, precision=_precision(cfg)
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        lg.log_hyperparams({f"data/{k}": v for k, v in dm.stats.items()})

    ckpt_path = _resume_path(cfg, out)
    trains = getattr(module, "needs_training", True)
    if cfg.train and trains:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    elif cfg.train:  # closed-form baseline: fitted in attach(); validate for model selection
        trainer.validate(module, datamodule=dm)
    ckpt_cb = trainer.checkpoint_callback if trains else None
    best = ckpt_cb.best_model_path if ckpt_cb is not None and cfg.train else ""
    val_best = (
        float(ckpt_cb.best_model_score)
        if ckpt_cb is not None and ckpt_cb.best_model_score is not None
        else float("nan")
    )
    metrics: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
    }
    if cfg.test:
        trainer.test(module, datamodule=dm, ckpt_path=best or None, weights_only=True)
        metrics.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        )
    if ckpt_cb is not None and ckpt_cb.monitor:
        metrics[f"best/{ckpt_cb.monitor}"] = val_best

    if trainer.is_global_zero:
        recs = recommendations_frame(module.recommendations, dm.user_ids, dm.catalogue.item_ids)
        if cfg.test:
            write_recommendations(out / "recommendations.parquet", recs)
        meta = run_meta(cfg, dm, t0, status="ok")
        meta["best_checkpoint"] = best
        write_metrics(out / "metrics.json", metrics, meta)
        log_recommendation_table(loggers, recs, dm)
    log.info("run folder: %s", out)
    target = metrics.get(cfg.optimized_metric, val_best)
    if (
        cfg.optimized_metric.startswith("val/")
        and not math.isnan(val_best)
        and ckpt_cb is not None
        and ckpt_cb.monitor == cfg.optimized_metric
    ):
        target = val_best
    return float(target)


def _resume_path(cfg: DictConfig, out: Path) -> str | None:
    if cfg.get("ckpt_path") in (None, ""):
        return None
    if cfg.ckpt_path == "last":
        last = out / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    return str(cfg.ckpt_path)


def run_meta(
    cfg: DictConfig, dm: RecDataModule | None, t0: float, status: str, error: str | None = None
) -> dict[str, Any]:
    """The ``meta`` block of ``metrics.json``."""
    container = OmegaConf.to_container(cfg, resolve=False)
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:
        overrides = []
    return {
        "status": status,
        "error": error,
        "overrides": overrides,
        "knobs": dict(cfg.get("knobs") or {}),
        "group": cfg.get("group"),
        "run_name": Path(cfg.paths.output_dir).name,
        "data_fingerprint": getattr(dm, "data_fingerprint", None),
        "data_stats": getattr(dm, "stats", {}),
        "config_hash": config_hash(container),
        "versions": versions(),
        "wall_time_s": round(time.time() - t0, 2),
        "seed": cfg.get("seed"),
    }


def _print_stats(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="dataset", show_header=False)
    for k, v in stats.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console(stderr=True).print(table)


def _is_multirun() -> bool:
    try:
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def run(cfg: DictConfig) -> float:
    """``train`` with failure isolation and a W&B run that always finishes."""
    t0 = time.time()
    try:
        return train(cfg)
    except Exception as e:  # record the failure in the run folder, then decide
        finish_wandb(exit_code=1)
        out = Path(cfg.paths.output_dir)
        msg = f"{type(e).__name__}: {e}"
        try:
            write_metrics(out / "metrics.json", {}, run_meta(cfg, None, t0, "failed", msg))
        except Exception:  # noqa: BLE001 - never mask the original error
            log.exception("could not write metrics.json for the failed run")
        if _is_multirun():
            log.error("job failed (%s); the sweep continues with NaN", msg)
            return float("nan")
        if isinstance(e, DivrecError) and not os.environ.get("DIVREC_TRACEBACK"):
            raise SystemExit(f"error: {e}") from None
        raise
    finally:
        finish_wandb()
