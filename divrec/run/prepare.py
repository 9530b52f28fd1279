"""What every run does before fitting, with or without Lightning: checks, run folder, seed,
data, saved split and the model (:func:`prepare`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from divrec.run.folder import prepare_run_folder
from divrec.run.train import eval_points, print_table

if TYPE_CHECKING:
    from divrec.data.datamodule import RecData
    from divrec.evaluation.ranking import RankingCore

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig, out: Path, lightning: bool) -> tuple[list, RecData, RankingCore]:
    """What every run does before fitting: checks, run folder, seed, data, saved split and
    the model; (evaluation points, data, model). ``lightning``: Lightning's classes."""
    import torch

    from divrec.config.check import validate_against_data, validate_config
    from divrec.metrics.evaluator import has_categories
    from divrec.run.build import build_datamodule, build_module

    validate_config(cfg)  # before any data is loaded: typos, types, ranges
    points = eval_points(cfg)  # a bad rerank_sweep fails now, not after training
    prepare_run_folder(cfg, out)  # ckpt_path checked; an earlier attempt's checkpoints go
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(int(cfg.seed), lightning)
    torch.set_float32_matmul_precision("high")

    dm = build_datamodule(cfg, lightning)
    validate_against_data(cfg, len(dm.catalogue), has_categories(dm.catalogue.category_matrix))
    print_table(dm.stats)
    dm.save_split(out / "split")
    return points, dm, build_module(cfg, dm, lightning)


def seed_everything(seed: int, lightning: bool) -> None:
    """Seed Python, NumPy and torch; with ``lightning`` through Lightning (which also seeds
    its data-loader workers)."""
    if lightning:
        import lightning.pytorch as pl

        pl.seed_everything(seed, workers=True)
        return
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every device's generator too
    log.info("seed set to %d", seed)
