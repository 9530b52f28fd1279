"""Pareto plot of the lm_vs_id study: EASE + text prior re-ranked vs tuned EASE re-ranked.

Reads ``+protocol=recbole`` multiruns of the EASE + text prior model, each with a
``rerank_sweep``, one folder per model under the runs folder (layout of the MovieLens study: ``<runs>/<model>/<seed job>/name=...``) and
the tuned-EASE rows of ``experiments/movielens_small/aggregate.csv`` (same protocol, same
seeds, same re-ranker grid). Writes ``pareto.png`` (test means of NDCG@10 vs genre ILD@10, one
curve per model x re-ranker) and ``pareto.csv`` (every point, mean and std over seeds).

The dominance check follows the study's rule: a point beats the reference (tuned EASE + MMR
0.5) when its **validation** means are at least the reference's on NDCG@10, genre ILD@10 and
genre coverage@10; the test values of such points are then reported, never chosen on.

Run: python -m experiments.lm_vs_id.pareto <runs folder> [--out experiments/lm_vs_id]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from divrec.reports.pareto import pareto_front
from divrec.utils.io import atomic_path
from experiments.movielens_small import study

STUDY = Path(__file__).parents[1] / "movielens_small" / "aggregate.csv"
REFERENCE = ("ease_tuned", "mmr", 0.5)  # the "tuned EASE + MMR 0.5"
AXES = ("ndcg@10", "ild_cat@10", "cat_coverage@10")
NAMES = {
    "ease_tuned": "tuned EASE",
    "ease_text_prior": "EASE + text prior (λ 300)",
    "ease_text_prior_fine": "EASE + text prior, finer re-rank grid",
}


def points(runs: Path, study_csv: Path = STUDY) -> pd.DataFrame:
    """Seed means/stds of every (model, re-ranker, diversity) point: the prior's sweep under
    ``runs`` and tuned EASE's rows from the MovieLens study."""
    ours = study.aggregate(study.load(runs))
    ease = pd.read_csv(study_csv)
    ease = ease[ease["model"] == REFERENCE[0]]
    cols = ["model", "rerank", "div", "n_seeds"]
    cols += [f"{s}/{m} {a}" for s in ("val", "test") for m in AXES for a in ("mean", "std")]
    return pd.concat([ease[cols], ours[cols]], ignore_index=True)


def dominating(df: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """(the reference row, rows whose validation means are >= the reference's on every axis)."""
    model, rerank, div = REFERENCE
    ref = df[(df["model"] == model) & (df["rerank"] == rerank) & (df["div"] == div)].iloc[0]
    val = [f"val/{m} mean" for m in AXES]
    ours = df[df["model"] != model]
    return ref, ours[(ours[val] >= ref[val].to_numpy(dtype=float)).all(axis=1)]


def plot(df: pd.DataFrame, ref: pd.Series, path: Path) -> None:
    """Test means, one curve per model x re-ranker (diversity 0 -> 0.8), the reference ringed
    and the Pareto front on validation means crossed."""
    x, y = "test/ndcg@10 mean", "test/ild_cat@10 mean"
    front = pareto_front(df, "val/ndcg@10 mean", "val/ild_cat@10 mean").to_numpy()
    fig = Figure(figsize=(8, 6), dpi=120)
    ax = fig.add_subplot()
    for (model, name), g in df.groupby(["model", "rerank"], sort=False):
        g = g.sort_values("div")
        style = "-o" if name == "mmr" else "--^"
        ax.plot(g[x], g[y], style, ms=4, lw=0.9, label=f"{NAMES.get(model, model)} + {name}")
        for _, r in g.iterrows():
            ax.annotate(f"{r['div']:.1f}", (r[x], r[y]), fontsize=6, alpha=0.7)
    ax.scatter([ref[x]], [ref[y]], s=140, facecolors="none", edgecolors="r", lw=1.5, zorder=4,
               label="reference: tuned EASE + MMR 0.5")  # fmt: skip
    ax.scatter(df[x][front], df[y][front], marker="x", s=45, c="k", zorder=5,
               label="Pareto front on validation means")  # fmt: skip
    ax.set_xlabel("test NDCG@10 (mean of 3 seeds, +protocol=recbole)")
    ax.set_ylabel("test genre ILD@10 (mean of 3 seeds)")
    ax.set_title("ml-latest-small: re-ranking sweeps (labels: diversity)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _fmt(r: pd.Series, split: str = "test") -> str:
    vals = " / ".join(f"{r[f'{split}/{m} mean']:.4f} ± {r[f'{split}/{m} std']:.4f}" for m in AXES)
    return f"{NAMES.get(r['model'], r['model'])} + {r['rerank']} {r['div']:g}: {vals}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--out", type=Path, default=Path(__file__).parent)
    p.add_argument("--study", type=Path, default=STUDY)
    a = p.parse_args(argv)
    df = points(a.runs, a.study)
    ref, beats = dominating(df)
    with atomic_path(a.out / "pareto.csv") as tmp:
        df.to_csv(tmp, index=False)
    plot(df, ref, a.out / "pareto.png")
    print(f"reference (test, NDCG / ILD / cat coverage @10): {_fmt(ref)}")
    print(f"reference (val): {_fmt(ref, 'val')}")
    if beats.empty:
        print("no point dominates the reference on validation means")
    test = [f"test/{m} mean" for m in AXES]
    for _, r in beats.sort_values("val/ndcg@10 mean", ascending=False).iterrows():
        also = bool((r[test].to_numpy(dtype=float) >= ref[test].to_numpy(dtype=float)).all())
        print(
            f"dominates on validation: {_fmt(r, 'val')}\n"
            f"  its test ({'also' if also else 'not'} dominating on test): {_fmt(r)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
