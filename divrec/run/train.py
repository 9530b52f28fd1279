"""``train(cfg)``: one run from a composed Hydra config; returns the metric a sweeper optimises.

Steps: seed -> data module (split saved in the run folder) -> model (+ frozen-embedding
cache) -> Lightning fit with validation -> validate and test the best checkpoint (so ``val/*``
and ``test/*`` of ``metrics.json`` describe the same weights, named in ``meta``) ->
``metrics.json``, ``recommendations.parquet`` and the W&B run. ``run(cfg)`` wraps it so that
a failing job is recorded as failed and, inside a multirun, returns NaN instead of taking the
sweep down.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from divrec.errors import ConfigError, DivrecError
from divrec.run.checkpoints import own_checkpoint, resume_path
from divrec.run.folder import finished, refuse_finished_run
from divrec.run.quiet import quiet_output

if TYPE_CHECKING:  # imported when a run needs them (torch, Lightning: seconds of start-up)
    import lightning.pytorch as pl

    from divrec.data.datamodule import RecData

log = logging.getLogger(__name__)


def instantiate_dict(node: DictConfig | None, lightning: bool = True, **kwargs: Any) -> list:
    """Every ``_target_`` entry of ``node`` (loggers, callbacks), built with ``kwargs``;
    ``lightning=False``: Lightning's ``CSVLogger`` is built as :class:`~divrec.run.csv_log.CSVLog`
    (the same files, Lightning not imported)."""
    from hydra.utils import instantiate

    from divrec.run.csv_log import LIGHTNING_CSV

    plain = {"_target_": "divrec.run.csv_log.CSVLog"}
    return [
        instantiate(v, **kwargs, **({} if lightning or v._target_ != LIGHTNING_CSV else plain))
        for v in (node or {}).values()
        if v is not None and "_target_" in v
    ]


def eval_points(cfg: DictConfig) -> list[tuple[str, dict, dict]]:
    """(sub-folder, rerank config, knobs) for each evaluation of the trained model.

    Without ``rerank_sweep`` there is one point (the run folder itself). With it, each value
    of ``rerank_sweep.values`` for ``rerank.<rerank_sweep.key>`` is its own sub-run: same
    trained weights, re-ranked and evaluated again (no retraining). ``rerank_sweep.names``
    (e.g. ``[mmr, dpp]``) repeats the values for each re-ranker, in folders
    ``name=<r>,<key>=<v>``.
    """
    base = OmegaConf.to_container(cfg.rerank, resolve=True)
    sweep = cfg.get("rerank_sweep")
    if not sweep:
        return [("", base, {})]
    key = sweep.get("key", "diversity")
    names = list(sweep.get("names") or [])
    from divrec.rerank import RERANKERS

    unknown = [n for n in names if n not in RERANKERS]
    if unknown:
        raise ConfigError(f"rerank_sweep.names: unknown {unknown}; choose from {sorted(RERANKERS)}")
    return [
        (
            f"name={n},{key}={v}" if names else f"{key}={v}",
            {**base, "name": n, key: v},
            {f"rerank.{key}": v, "rerank.name": n},
        )
        for n in names or [base["name"]]
        for v in sweep["values"]
    ]


def train(cfg: DictConfig) -> float | tuple[float, ...]:
    """Run one experiment; returns ``cfg.optimized_metric`` (best validation value; see
    :func:`objective` for a metric the run did not log). A closed-form baseline is fitted and
    evaluated without Lightning (:mod:`divrec.run.closed_form`): same files, same values."""
    t0 = time.time()
    quiet_output()  # third-party noise off, one console line per log record
    out = Path(cfg.paths.output_dir)
    name = f"{cfg.task_name}: data={_data_name(cfg)} model={_model_name(cfg)}"
    log.info("%s seed=%s -> %s", name, cfg.get("seed"), out)
    from divrec.run.closed_form import is_closed_form, train_closed_form

    if is_closed_form(cfg):
        return train_closed_form(cfg, out, t0)
    import lightning.pytorch as pl  # what the rest needs: seconds of imports, after the line
    from hydra.utils import instantiate

    from divrec.run.build import precision
    from divrec.run.prepare import prepare

    quiet_output()  # again: Lightning and torchmetrics add their own console handlers
    points, dm, module = prepare(cfg, out, lightning=True)
    loggers = instantiate_dict(cfg.get("logger"))
    callbacks = instantiate_dict(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, precision=precision(cfg)
    )
    log_params(loggers, cfg, dm)

    trains = getattr(module, "needs_training", True)
    if cfg.train and trains:
        trainer.fit(module, datamodule=dm, ckpt_path=_resume_path(cfg, out))
    elif cfg.train:  # closed-form baseline: fitted in attach(); validate for model selection
        trainer.validate(module, datamodule=dm)
    ckpt_cb = trainer.checkpoint_callback if trains else None
    best = own_checkpoint(ckpt_cb.best_model_path, out) if ckpt_cb is not None and cfg.train else ""
    val_best = (
        float(ckpt_cb.best_model_score)
        if ckpt_cb is not None and ckpt_cb.best_model_score is not None
        else float("nan")
    )
    # Weights to evaluate: the best checkpoint, or a given one when train=false.
    test_ckpt = best or (None if cfg.train else _resume_path(cfg, out))
    evaluated = evaluated_position(test_ckpt, trainer if cfg.train and trains else None)
    # fit's last validation pass describes the last epoch, not the tested weights: those are
    # validated again below (one val pass). A closed-form fit was validated just now.
    validated = bool(cfg.train and not trains)
    fit_metrics = _prefixed(trainer, "val/") if validated else {}
    if ckpt_cb is not None and ckpt_cb.monitor:
        fit_metrics[f"best/{ckpt_cb.monitor}"] = val_best

    results: list[dict[str, Any]] = []
    for i, (sub, rerank_cfg, knobs) in enumerate(points):
        folder = out / sub if sub else out
        module.set_rerank(rerank_cfg)
        if sub:  # each sweep value is its own logged run
            finish_wandb()
            name = f"{out.name}-{sub}"
            trainer.loggers = instantiate_dict(
                cfg.get("logger"), save_dir=str(folder), **wandb_name(cfg, name)
            )
        ckpt = test_ckpt if i == 0 else None
        metrics = dict(fit_metrics)
        if sub or not validated:  # val/* of exactly the weights (and re-ranker) tested below
            _validate(trainer, module, dm, ckpt, quiet=not sub)
            ckpt = None
            metrics.update(_prefixed(trainer, "val/"))
        if cfg.test:
            trainer.test(module, datamodule=dm, ckpt_path=ckpt, weights_only=True, verbose=not sub)
            metrics.update(_prefixed(trainer, "test/"))
        if trainer.is_global_zero:
            write_run(cfg, folder, module, dm, metrics, t0, knobs, best, evaluated, trainer.loggers)
        results.append(metrics)
    if len(points) > 1:
        finish_wandb()
    log.info("run folder: %s", out)
    if is_multi(cfg):  # multi-objective search: values of the validated best weights
        return tuple(objective(results[0], m) for m in cfg.optimized_metric)
    if ckpt_cb is not None and ckpt_cb.monitor == cfg.optimized_metric and not math.isnan(val_best):
        return val_best
    return objective(results[0], cfg.optimized_metric)


def log_params(loggers: list, cfg: DictConfig, dm) -> None:
    """The resolved config and the data statistics, as every logger's hyper-parameters."""
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        lg.log_hyperparams({f"data/{k}": v for k, v in dm.stats.items()})


def objective(metrics: dict[str, float], name: str) -> float:
    """``metrics[name]`` for a sweeper. A category metric the run could not log (no item
    categories) is replaced by its ``ild_emb`` counterpart, said in one warning; any other
    missing metric is NaN (the finished run stays a success; a sweeper sees a failed trial),
    with one warning naming the logged ones."""
    from divrec.metrics.evaluator import category_fallback

    if name in metrics:
        return float(metrics[name])
    alt = category_fallback(name)
    if alt is not None and alt in metrics:
        log.warning("optimized_metric %s not logged (no item categories): using %s", name, alt)
        return float(metrics[alt])
    logged = ", ".join(sorted(k for k in metrics if "/" in k)) or "none"
    log.warning("optimized_metric: %r was not logged by this run (NaN); logged: %s", name, logged)
    return float("nan")


def _validate(trainer: pl.Trainer, module, dm, ckpt: str | None, quiet: bool) -> None:
    """One validation pass of ``ckpt`` (None: the weights in memory). ``quiet``: not logged
    as a point of the per-epoch validation curve (it would be drawn at the last epoch); the
    values reach the loggers' run summary through :func:`_write_run` instead."""
    loggers = trainer.loggers
    if quiet:
        trainer.loggers = []
    try:
        trainer.validate(module, datamodule=dm, ckpt_path=ckpt, weights_only=True, verbose=False)
    finally:
        trainer.loggers = loggers


def evaluated_position(ckpt: str | None, trainer: pl.Trainer | None) -> dict[str, Any]:
    """``meta`` keys naming the weights behind ``val/*`` and ``test/*``: the checkpoint file
    and its epoch and global step (read from the file); without a file, the in-memory weights
    at the end of ``trainer``'s fit (None: untrained or closed-form, no position)."""
    epoch = step = None
    if ckpt:
        import torch

        try:  # mmap: the weights are not read
            state = torch.load(ckpt, map_location="cpu", mmap=True, weights_only=True)
            epoch, step = state.get("epoch"), state.get("global_step")
        except Exception as e:  # noqa: BLE001 - the run's results matter more than its label
            log.warning("could not read epoch/step of %s: %s", ckpt, e)
    elif trainer is not None:
        epoch, step = trainer.current_epoch - 1, trainer.global_step
    return {"evaluated_checkpoint": ckpt or None, "evaluated_epoch": epoch, "evaluated_step": step}


def is_multi(cfg: DictConfig) -> bool:
    return OmegaConf.is_list(cfg.optimized_metric)


def _prefixed(trainer: pl.Trainer, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def wandb_name(cfg: DictConfig, name: str) -> dict[str, Any]:
    return {"name": name} if "wandb" in (cfg.get("logger") or {}) else {}


def write_run(cfg, folder: Path, module, dm, metrics, t0, knobs, best, evaluated, loggers):
    """metrics.json, recommendations.parquet and the W&B summary and table of one run."""
    from divrec.run.artifacts import recommendations_frame, write_metrics, write_recommendations
    from divrec.run.wandb_log import log_recommendation_table

    recs = recommendations_frame(
        module.recommendations,
        dm.user_ids,
        dm.catalogue.item_ids,
        because=getattr(module, "because", None) or None,
    )
    if cfg.test:
        write_recommendations(folder / "recommendations.parquet", recs)
    meta = run_meta(cfg, dm, t0, status="ok")
    meta["best_checkpoint"] = best
    meta.update(evaluated)
    if knobs:  # a sub-run keeps its job's own knobs (e.g. the seed of a multirun) too
        from divrec.reports.collect import parse_overrides

        own = meta.get("knobs") or parse_overrides(meta["overrides"])
        meta["knobs"] = {**own, **knobs}
        meta["overrides"] = [*meta["overrides"], *(f"{k}={v}" for k, v in knobs.items())]
        meta["run_name"] = f"{Path(cfg.paths.output_dir).name}/{folder.name}"
    write_metrics(folder / "metrics.json", metrics, meta)
    _summarise(loggers, metrics, evaluated)
    log_recommendation_table(list(loggers), recs, dm)


def _summarise(loggers, metrics: dict[str, float], evaluated: dict[str, Any]) -> None:
    """W&B run summary = ``metrics.json``: the last logged ``val/*`` is fit's last epoch."""
    from divrec.run.wandb_log import wandb_loggers

    for lg in wandb_loggers(loggers):
        lg.experiment.summary.update({**metrics, **evaluated})


def _resume_path(cfg: DictConfig, out: Path) -> str | None:
    return resume_path(cfg, out)  # "last": the newest intact checkpoint; URLs refused


def run_meta(
    cfg: DictConfig, dm: RecData | None, t0: float, status: str, error: str | None = None
) -> dict[str, Any]:
    """The ``meta`` block of ``metrics.json``."""
    from hydra.core.hydra_config import HydraConfig

    from divrec.run.artifacts import config_hash, versions

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


def print_table(stats: dict[str, Any], title: str = "dataset") -> None:
    """``stats`` as a two-column table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in stats.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console(stderr=True).print(table)


def _is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def run(cfg: DictConfig) -> float | tuple[float, ...]:
    """``train`` with failure isolation and a W&B run that always finishes."""
    from divrec.launch.ddp_guard import check_ddp_multirun

    try:
        check_ddp_multirun(cfg)  # sweep-wide mistake: stop at once, one line
        refuse_finished_run(cfg.paths.output_dir, cfg.get("overwrite", False))
    except DivrecError as e:
        raise SystemExit(f"error: {e}") from None
    t0 = time.time()
    try:
        return train(cfg)
    except Exception as e:  # record the failure in the run folder, then decide
        from divrec.run.artifacts import write_metrics

        finish_wandb(exit_code=1)
        out = Path(cfg.paths.output_dir)
        msg = f"{type(e).__name__}: {e}"
        try:
            if not finished(out) or cfg.get("overwrite", False):  # never over a finished run
                write_metrics(out / "metrics.json", {}, run_meta(cfg, None, t0, "failed", msg))
        except Exception as w:  # noqa: BLE001 - never mask the original error
            log.error("could not write metrics.json for the failed run: %s", w)
        if _is_multirun():
            log.error("job failed (%s); the sweep continues with NaN", msg)
            return tuple(math.nan for _ in cfg.optimized_metric) if is_multi(cfg) else math.nan
        if isinstance(e, DivrecError) and not os.environ.get("DIVREC_TRACEBACK"):
            raise SystemExit(f"error: {e}") from None
        raise
    finally:
        finish_wandb()


def finish_wandb(exit_code: int = 0) -> None:
    """Finish this process's W&B run; nothing to do (and nothing imported) without W&B."""
    if "wandb" in sys.modules:
        from divrec.run.wandb_log import finish_wandb as finish

        finish(exit_code)


def _data_name(cfg: DictConfig) -> str:
    data = cfg.get("data") or {}
    return str(data.get("release") or data.get("name") or data.get("source", "?"))


def _model_name(cfg: DictConfig) -> str:
    model = cfg.get("model") or {}
    return str(model.get("name") if model.get("kind") == "baseline" else model.get("kind", "?"))
