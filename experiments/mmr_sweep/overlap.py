"""Overlap@10 of MMR and DPP lists with the plain top-10, at diversity 0.0, 0.1, ..., 0.9.

One model's test scores (Hydra overrides; default EASE on ml-latest-small) go through the
evaluation path (:class:`divrec.evaluation.pipeline.Ranker`: seen masked, top-200, min-max,
re-rank) at each diversity; overlap@10 = |list & plain top-10| / 10, averaged over test users,
with ild_cat@10 beside it. Writes ``overlap.csv`` and ``overlap.png`` next to this file and
prints the markdown table of README.md.

Run: ``DIVREC_DATA_DIR=<data> python experiments/mmr_sweep/overlap.py [overrides ...]``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from divrec.metrics.diversity import ild_cat

HERE = Path(__file__).resolve().parent
DIVERSITIES = [round(0.1 * i, 1) for i in range(10)]
RERANKERS = ("mmr", "dpp")
K, CANDIDATES = 10, 200
DEFAULTS = ["data=movielens", "model=ease", "rerank=none", "eval.metrics=[ild_emb]"]


@torch.no_grad()
def overlap_curves(module, dm) -> list[dict]:
    """One row per (re-ranker, diversity): mean overlap@10 with the plain top-10, ild_cat@10."""
    module.on_eval_start()
    sums: dict[tuple[str, float], list[float]] = {}
    n_users = 0
    for batch in dm.test_dataloader():
        scores = module.score(batch).float()
        plain = module.ranker.with_config({"name": "none"}).rank(scores, batch["seen"], K)
        for name in RERANKERS:
            for div in DIVERSITIES:
                cfg = {"name": name, "diversity": div, "candidates": CANDIDATES}
                top = module.ranker.with_config(cfg).rank(scores, batch["seen"], K)
                same = (top[:, :, None] == plain[:, None, :]).any(2).float().mean(1)
                ild = ild_cat(module.categories[top], [K])[:, 0]
                acc = sums.setdefault((name, div), [0.0, 0.0])
                acc[0] += float(same.sum())
                acc[1] += float(ild.sum())
        n_users += len(scores)
    return [
        {"reranker": n, "diversity": d, "overlap@10": s / n_users, "ild_cat@10": i / n_users}
        for (n, d), (s, i) in sums.items()
    ]


def markdown(rows: list[dict]) -> str:
    """Diversity rows, one overlap and one ild_cat column per re-ranker."""
    by = {(r["reranker"], r["diversity"]): r for r in rows}
    head = ["diversity"] + [f"{n} {m}" for n in RERANKERS for m in ("overlap@10", "ild_cat@10")]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for d in DIVERSITIES:
        cells = [f"{by[(n, d)][m]:.3f}" for n in RERANKERS for m in ("overlap@10", "ild_cat@10")]
        lines.append(f"| {d:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Overlap@10 against diversity, one line per re-ranker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    for name in RERANKERS:
        pts = [(r["diversity"], r["overlap@10"]) for r in rows if r["reranker"] == name]
        ax.plot(*zip(*pts, strict=True), marker="o", label=name.upper())
    ax.set_xlabel("rerank.diversity")
    ax.set_ylabel("overlap@10 with plain top-10")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str]) -> None:
    from experiments.benchmarks.bench_eval import build

    setup = build(DEFAULTS + argv)
    rows = overlap_curves(setup.module, setup.dm)
    with open(HERE / "overlap.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, HERE / "overlap.png")
    print(markdown(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
