"""Per-seed model selection on validation for the lm_vs_id study.

Usage: python -m experiments.lm_vs_id.select NAME=SWEEP_DIR [NAME=SWEEP_DIR ...]
Each SWEEP_DIR is one ``+protocol=recbole`` multirun (one setting, seeds 1,2,3); settings with
the same NAME prefix (before ``--``) form one tuned model. For each model and seed the setting
with the best ``val/ndcg@10`` is kept; the test metrics of the kept runs are printed as
mean ± std over seeds (sample std, ddof=1), with the picks.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "ild_cat@10",
           "cat_coverage@10", "item_coverage@10")  # fmt: skip


def runs(sweep: Path) -> list[tuple[int, dict]]:
    """(seed, metrics.json) of every finished job under one multirun folder."""
    out = []
    for m in sorted(sweep.glob("*/metrics.json")):
        cfg = OmegaConf.load(m.parent / ".hydra" / "config.yaml")
        out.append((int(cfg.seed), json.loads(m.read_text())))
    return out


def main(argv: list[str]) -> None:
    models: dict[str, dict[int, list[tuple[str, dict]]]] = defaultdict(lambda: defaultdict(list))
    for arg in argv:
        name, _, folder = arg.partition("=")
        for seed, metrics in runs(Path(folder)):
            models[name.split("--")[0]][seed].append((name, metrics))
    for model, seeds in models.items():
        picks = {s: max(c, key=lambda nm: nm[1]["val/ndcg@10"]) for s, c in sorted(seeds.items())}
        cells = []
        for key in METRICS:
            vals = np.array([m[f"test/{key}"] for _, m in picks.values()])
            std = vals.std(ddof=1) if len(vals) > 1 else float("nan")
            cells.append(f"{key} {vals.mean():.4f} ± {std:.4f}")
        chosen = ", ".join(f"s{s}: {n}" for s, (n, _) in picks.items())
        print(f"{model} ({len(picks)} seeds; picks {chosen})\n  " + "\n  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
