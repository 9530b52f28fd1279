"""A closed-form baseline's run (pop, itemknn, ease, buy_again) without Lightning.

Nothing is trained by gradient: the fit happens when the model is built
(:meth:`~divrec.baselines.core.BaselineCore.attach`), so validation and test are plain loops
over the data module's loaders through the same evaluation code as Lightning's hooks
(:class:`~divrec.evaluation.ranking.RankingCore`: ``begin_pass``, ``eval_step``, ``end_pass``).
The run writes what :func:`divrec.run.train.train` writes for such a model (``metrics.json``,
``recommendations.parquet``, ``split/``, the loggers' files; no checkpoint: there is no
training) and returns the same value. Lightning is never imported for ``logger=csv|none``,
which saves its seconds of start-up and half a GiB; W&B and TensorBoard loggers are
Lightning's own classes, used without a Trainer. A run given ``ckpt_path``, or on more than
one device, goes through Lightning as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from divrec.errors import ConfigError
from divrec.run.prepare import prepare
from divrec.run.train import (
    evaluated_position,
    finish_wandb,
    instantiate_dict,
    is_multi,
    log_params,
    objective,
    print_table,
    wandb_name,
    write_run,
)

log = logging.getLogger(__name__)

LIGHTNING_TRAINER = "lightning.pytorch.Trainer"


def is_closed_form(cfg: DictConfig) -> bool:
    """True for a baseline without gradient training, evaluated on one device with no
    checkpoint to load: the runs :func:`train_closed_form` does without Lightning."""
    model = cfg.get("model") or {}
    if model.get("kind") != "baseline" or cfg.get("ckpt_path") is not None:
        return False
    from divrec.baselines import BASELINES

    name = str(model.get("name", "")).lower()
    trainer = cfg.get("trainer") or {}
    single = (
        trainer.get("_target_") == LIGHTNING_TRAINER
        and trainer.get("devices", 1) == 1
        and trainer.get("num_nodes", 1) == 1
        and trainer.get("strategy", "auto") == "auto"
    )
    return single and name in BASELINES and not BASELINES[name].needs_training


def eval_device(cfg: DictConfig) -> torch.device:
    """The device Lightning would pick for ``trainer.accelerator`` (cpu, gpu/cuda, auto)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator}: no CUDA device here")
        return torch.device("cuda")
    if accelerator == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def evaluate(module, loader, stage: str, device: torch.device) -> dict[str, float]:
    """One ``stage`` ("val" or "test") pass over ``loader``: ``{"val/ndcg@10": ...}``, each
    value rounded to float32 as Lightning's ``log_dict`` stores it."""
    module.begin_pass(device, keep=stage == "test")
    for i, batch in enumerate(loader):
        if device.type != "cpu":
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        module.eval_step(batch, stage, i)
    values = module.end_pass(stage)
    return dict(zip(values, torch.tensor(list(values.values())).tolist(), strict=True))


def _log(loggers: list, values: dict[str, float]) -> None:
    """``values`` as one row of every logger (epoch 0, step 0: what an evaluation outside a
    fit logs under Lightning), then written out."""
    for lg in loggers:
        lg.log_metrics({**values, "epoch": 0}, step=0)
        lg.finalize("success")


def train_closed_form(cfg: DictConfig, out: Path, t0: float) -> float | tuple[float, ...]:
    """:func:`divrec.run.train.train` for a model :func:`is_closed_form` accepts."""
    points, dm, module = prepare(cfg, out, lightning=False)
    device = eval_device(cfg)
    module.to(device).eval()
    loggers = instantiate_dict(cfg.get("logger"), lightning=False)
    log_params(loggers, cfg, dm)
    val, test = dm.val_dataloader, dm.test_dataloader
    fit_metrics: dict[str, Any] = {}
    if cfg.train:  # the fit's validation (model selection), logged as Lightning's would be
        fit_metrics = evaluate(module, val(), "val", device)
        print_table(fit_metrics, "validation")
        _log(loggers, fit_metrics)
    evaluated = evaluated_position(None, None)  # closed form: no checkpoint, no position
    results: list[dict[str, Any]] = []
    for sub, rerank_cfg, knobs in points:
        folder = out / sub if sub else out
        module.set_rerank(rerank_cfg)
        if sub:  # each sweep value is its own logged run
            finish_wandb()
            name = f"{out.name}-{sub}"
            loggers = instantiate_dict(
                cfg.get("logger"), lightning=False, save_dir=str(folder), **wandb_name(cfg, name)
            )
        metrics = dict(fit_metrics)
        if sub or not cfg.train:  # val/* of exactly the re-ranker tested below
            values = evaluate(module, val(), "val", device)
            if sub:  # the first pass logged the validation of the main run already
                _log(loggers, values)
            metrics.update(values)
        if cfg.test:
            values = evaluate(module, test(), "test", device)
            if not sub:
                print_table(values, "test")
            _log(loggers, values)
            metrics.update(values)
        write_run(cfg, folder, module, dm, metrics, t0, knobs, "", evaluated, loggers)
        results.append(metrics)
    if len(points) > 1:
        finish_wandb()
    log.info("run folder: %s", out)
    if is_multi(cfg):
        return tuple(objective(results[0], m) for m in cfg.optimized_metric)
    return objective(results[0], cfg.optimized_metric)
