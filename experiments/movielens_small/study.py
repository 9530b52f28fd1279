"""Builds the MovieLens study's tables, CSVs and Pareto plot from the run folders.

Layout read: ``<runs>/<model>/<seed job>/name=<mmr|dpp>,diversity=<v>/metrics.json`` (one
training per model and seed, every re-ranker point evaluated on it, ``rerank_sweep.names``).
A tuned model's grid is one folder per setting, ``<model>--<setting>`` (e.g.
``ease_tuned--l2=150``), each trained and evaluated on every seed.

Every reported point is selected on validation only (``val/*``), never on test:

* tuning: per tuned model and seed, the grid setting with the highest unre-ranked
  ``val/ndcg@10`` of that seed's own validation split (the split changes with the seed);
* "none" is the diversity-0 point (the relevance order); for MMR and DPP, per seed, the largest
  diversity whose ``val/ndcg@10`` stays within 2% of that seed's unre-ranked value;
* dominance: a divrec point "beats" the reference when its validation means are at least the
  reference's on NDCG, genre ILD and genre coverage; the Pareto front is computed on validation
  means. Test values of the selected points are what the table and the claims report
  (mean ± std over seeds).

Run: python -m experiments.movielens_small.study <runs folder> [--out experiments/movielens_small]
     python -m experiments.movielens_small.study <runs folder> --tuned   (per-seed choices only)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from divrec.reports.aggregate import aggregate_seeds
from divrec.reports.collect import collect_runs
from divrec.reports.pareto import pareto_front
from divrec.utils.io import atomic_path

LABELS = {  # model folder (a tuned model: its grid's folders <model>--<setting>) -> (label, family)
    "pop": ("pop", "baseline"),
    "itemknn": ("ItemKNN", "baseline"),
    "itemknn_tuned": ("ItemKNN, k tuned per seed on val", "baseline"),
    "ease": ("EASE", "baseline"),
    "ease_tuned": ("EASE, λ tuned per seed on val", "baseline"),
    "bpr": ("BPR-MF", "baseline"),
    "bpr_tuned": ("BPR-MF, lr tuned per seed on val", "baseline"),
    "lightgcn": ("LightGCN", "baseline"),
    "lightgcn_tuned": ("LightGCN, lr tuned per seed on val", "baseline"),
    "text_only": ("divrec frozen MiniLM, text only", "divrec"),
    "text_id": ("divrec frozen MiniLM + ID (default)", "divrec"),
    "text_id_tuned": ("divrec frozen MiniLM + ID, lr tuned per seed on val", "divrec"),
    "lora": ("divrec LoRA MiniLM + ID (short budget)", "divrec"),
    "reg_ils": ("divrec + ILS regulariser (λ=0.5)", "divrec"),
    "reg_category_entropy": ("divrec + category entropy (λ=0.5)", "divrec"),
    "reg_dpp": ("divrec + DPP regulariser (λ=0.5)", "divrec"),
    "history_hybrid": ("divrec history tower, hybrid CF", "divrec"),
    "history_hybrid_id": ("divrec history tower + ID, hybrid CF", "divrec"),
    "history_hybrid_tuned": (
        "divrec history tower, hybrid CF, IDs and mix tuned per seed",
        "divrec",
    ),
    "hybrid_tuned_entropy": ("divrec tuned hybrid + category entropy (λ=0.5)", "divrec"),
}
SHOWN = [
    "ndcg@10", "ndcg@20", "recall@10", "recall@20", "ild_cat@10", "cat_coverage@10",
    "item_coverage@10", "novelty@10",
]  # fmt: skip
WITHIN = 0.02  # the "NDCG@10 within 2% of its own unre-ranked value"
TUNE_SEP = "--"  # <model>--<setting>: one setting of <model>'s validation grid


def load(runs: Path) -> pd.DataFrame:
    """All evaluated points of all seeds; columns model, rerank, div, seed, wall_s, metrics."""
    df = collect_runs(runs)
    failed = df[df["status"] != "ok"]
    if len(failed):
        print(
            f"warning: {len(failed)} failed/unreadable runs left out:\n{failed[['run', 'error']]}"
        )
    df = df[df["status"] == "ok"]
    metrics = df.attrs["metric_columns"]
    meta = [json.loads((runs / r / "metrics.json").read_text())["meta"] for r in df["run"]]
    out = pd.DataFrame(
        {
            # top folder = model (collect_runs names it "sweep" only when there are several)
            "model": [r.split("/", 1)[0] for r in df["run"]],
            "rerank": df["rerank.name"].to_numpy(),
            "div": df["rerank.diversity"].astype(float).to_numpy(),
            "seed": [m["seed"] for m in meta],
            "wall_s": [float(m["wall_time_s"]) for m in meta],
        }
    )
    return pd.concat([out, df[metrics].reset_index(drop=True)], axis=1)


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    agg = aggregate_seeds(_with_attrs(df), seed="seed")
    return agg.sort_values(["model", "rerank", "div"]).reset_index(drop=True)


def _with_attrs(
    df: pd.DataFrame, knobs: tuple[str, ...] = ("model", "rerank", "div")
) -> pd.DataFrame:
    out = df.drop(columns=[c for c in ("wall_s", "setting") if c in df.columns])
    out["status"] = "ok"
    out.attrs["knob_columns"] = [*knobs, "seed"]
    out.attrs["metric_columns"] = [c for c in out.columns if "/" in c]
    return out


def _unreranked(df: pd.DataFrame) -> pd.Series:
    """Rows of the relevance-order point (MMR at diversity 0 is the plain top-k)."""
    return (df["div"] == 0.0) & (df["rerank"] == "mmr")


def resolve_tuning(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace each ``<model>--<setting>`` grid by ``<model>``: per seed, the setting with the
    highest unre-ranked ``val/ndcg@10`` of that seed (first in folder order on a tie).

    Returns the frame with one setting per tuned model and seed (``wall_s``: the whole grid's
    time for that seed) and the choices (model, seed, setting, val/ndcg@10).
    """
    grid = df["model"].str.contains(TUNE_SEP, regex=False)
    cols = ["model", "seed", "setting", "val/ndcg@10"]
    if not grid.any():
        return df, pd.DataFrame(columns=cols)
    g = df[grid].copy()
    g[["model", "setting"]] = g["model"].str.split(TUNE_SEP, n=1, expand=True).to_numpy()
    zero = g[_unreranked(g)]
    choices = zero.loc[zero.groupby(["model", "seed"], sort=False)["val/ndcg@10"].idxmax(), cols]
    walls = g.groupby(["model", "seed", "setting"])["wall_s"].max().groupby(["model", "seed"]).sum()
    kept = g.merge(choices[["model", "seed", "setting"]], on=["model", "seed", "setting"])
    kept["wall_s"] = [walls[(m, s)] for m, s in zip(kept["model"], kept["seed"], strict=True)]
    out = pd.concat([df[~grid], kept], ignore_index=True)
    return out, choices.sort_values(["model", "seed"]).reset_index(drop=True)


def select(df: pd.DataFrame) -> pd.DataFrame:
    """Per model and seed, on that seed's validation: the unre-ranked point and, per
    re-ranker, the largest diversity whose ``val/ndcg@10`` is within 2% of the unre-ranked one;
    then mean ± std over seeds per (model, re-ranker), ``divs`` = the chosen diversity per seed."""
    rows = []
    for model in [m for m in LABELS if m in set(df["model"])]:
        for _, g in df[df["model"] == model].groupby("seed", sort=True):
            zero = g[_unreranked(g)].iloc[0]
            rows.append({**zero.to_dict(), "rerank": "none"})
            floor = (1 - WITHIN) * zero["val/ndcg@10"]
            for name in ("mmr", "dpp"):
                ok = g[(g["rerank"] == name) & (g["val/ndcg@10"] >= floor)]
                if len(ok):
                    rows.append(ok.sort_values("div").iloc[-1].to_dict())
    per_seed = pd.DataFrame(rows)
    agg = aggregate_seeds(_with_attrs(per_seed, ("model", "rerank")), seed="seed")
    divs = per_seed.groupby(["model", "rerank"], sort=False)["div"].agg(
        lambda d: "/".join(f"{v:.1f}" for v in d)
    )
    agg["divs"] = [divs[(m, r)] for m, r in zip(agg["model"], agg["rerank"], strict=True)]
    return agg


def table(sel: pd.DataFrame, walls: pd.Series) -> str:
    head = ["model", "re-rank", "seeds", *SHOWN, "wall s/seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for _, r in sel.iterrows():
        rr = "none" if r["rerank"] == "none" else f"{r['rerank'].upper()} {r['divs']}"
        cells = [LABELS[r["model"]][0], rr, str(int(r["n_seeds"]))]
        for m in SHOWN:
            mean, std = r[f"test/{m} mean"], r[f"test/{m} std"]
            cells.append(f"{mean:.4f} ± {0.0 if pd.isna(std) else std:.4f}")
        cells.append(f"{walls[r['model']]:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_baseline(sel: pd.DataFrame) -> str:
    """The baseline with the highest unre-ranked mean ``val/ndcg@10`` (chosen on validation)."""
    none = sel[(sel["rerank"] == "none") & sel["model"].map(lambda m: LABELS[m][1] == "baseline")]
    return str(none.loc[none["val/ndcg@10 mean"].idxmax(), "model"])


def accuracy_gap(sel: pd.DataFrame, baseline: str) -> str:
    """Best divrec model (unre-ranked, chosen on validation) against ``baseline`` on test."""
    none = sel[sel["rerank"] == "none"].set_index("model")
    ours = none[none.index.map(lambda m: LABELS[m][1] == "divrec")]
    best = ours["val/ndcg@10 mean"].idxmax()
    a, b = ours.loc[best, "test/ndcg@10 mean"], none.loc[baseline, "test/ndcg@10 mean"]
    return (
        f"best divrec by val ({LABELS[best][0]}) test/ndcg@10 {a:.4f} vs best baseline "
        f"({LABELS[baseline][0]}) {b:.4f}: {100 * (a / b - 1):+.1f}%"
    )


VAL_COLS = ["val/ndcg@10 mean", "val/ild_cat@10 mean", "val/cat_coverage@10 mean"]
TEST_COLS = [c.replace("val/", "test/") for c in VAL_COLS]


def _point(r: pd.Series, cols: list[str]) -> str:
    div = (
        f"{r['rerank']} {r['divs']}"
        if "divs" in r and isinstance(r["divs"], str)
        else (f"{r['rerank']} {r['div']:.1f}")
    )
    return f"{LABELS[r['model']][0]} {div}: " + ", ".join(
        f"{c.split()[0]} {r[c]:.4f}" for c in cols
    )


def front_members(agg: pd.DataFrame) -> str:
    """The Pareto front of NDCG@10 vs genre ILD@10 on validation means, with test values."""
    front = agg[pareto_front(agg, "val/ndcg@10 mean", "val/ild_cat@10 mean")]
    parts = [
        f"{LABELS[r['model']][0]} {r['rerank']} {r['div']:.1f} "
        f"({r['test/ndcg@10 mean']:.4f}, {r['test/ild_cat@10 mean']:.4f})"
        for _, r in front.sort_values("val/ndcg@10 mean").iterrows()
    ]
    return (
        "Pareto front on validation (NDCG@10, genre ILD@10), test values, least accurate "
        "first: " + "; ".join(parts)
    )


def dominance(agg: pd.DataFrame, sel: pd.DataFrame, baseline: str) -> list[str]:
    """Does any divrec point beat ``baseline`` + MMR (its selected point) on NDCG, genre ILD
    and genre coverage at once? Searched on validation means; test values reported."""
    ref = sel[(sel["model"] == baseline) & (sel["rerank"] == "mmr")].iloc[0]
    ours = agg[agg["model"].map(lambda m: LABELS.get(m, ("", ""))[1] == "divrec")]
    beats = ours[(ours[VAL_COLS] >= ref[VAL_COLS].to_numpy(dtype=float)).all(axis=1)]
    out = [f"reference (test) {_point(ref, TEST_COLS)}"]
    if beats.empty:
        best = ours.loc[ours[VAL_COLS[0]].idxmax()]
        out.append(
            "no divrec point dominates it on validation; most accurate divrec point on "
            f"validation (test) {_point(best, TEST_COLS)}"
        )
    for _, b in beats.iterrows():
        on_test = bool(
            (b[TEST_COLS].to_numpy(dtype=float) >= ref[TEST_COLS].to_numpy(dtype=float)).all()
        )
        out.append(
            f"dominates it on validation (test; {'also' if on_test else 'not'} on test) "
            + _point(b, TEST_COLS)
        )
    return out


def plot(agg: pd.DataFrame, sel: pd.DataFrame, path: Path) -> None:
    """ndcg@10 vs ild_cat@10 (test means) of every model x re-ranker x diversity point; the
    selected points and the validation Pareto front are marked at their test values."""
    x, y = "test/ndcg@10 mean", "test/ild_cat@10 mean"
    front = pareto_front(agg, "val/ndcg@10 mean", "val/ild_cat@10 mean").to_numpy()
    fig = Figure(figsize=(10, 7), dpi=120)
    ax = fig.add_subplot()
    models = [m for m in LABELS if m in set(agg["model"])]
    colors = {m: c for m, c in zip(models, _palette(len(models)), strict=True)}
    for m in models:
        for name, marker, ls in (("mmr", "o", "-"), ("dpp", "^", "--")):
            g = agg[(agg["model"] == m) & (agg["rerank"] == name)].sort_values("div")
            label = f"{LABELS[m][0]}" if name == "mmr" else None
            ax.plot(g[x], g[y], ls, marker=marker, ms=3, lw=0.8, c=colors[m], label=label)
    s = sel[sel["rerank"] != "none"]
    ax.scatter(s[x], s[y], s=70, facecolors="none", edgecolors="k", lw=1.2, zorder=4,
               label="re-ranked within 2% of own val NDCG (mean of per-seed picks)")  # fmt: skip
    idx = np.flatnonzero(front)
    ax.scatter(agg[x].to_numpy()[idx], agg[y].to_numpy()[idx], marker="x", s=40, c="k",
               zorder=5, label="Pareto front on validation")  # fmt: skip
    ax.set_xlabel("test NDCG@10 (mean of 3 seeds)")
    ax.set_ylabel("test genre ILD@10 (mean of 3 seeds)")
    ax.set_title("ml-latest-small: each curve is one model re-ranked with MMR (o) / DPP (^), 0→0.8")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if n > 10 else colormaps["tab10"]
    return [cmap(i) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--out", type=Path, default=Path(__file__).parent)
    p.add_argument("--tuned", action="store_true", help="print the per-seed tuning choices only")
    a = p.parse_args(argv)
    df, choices = resolve_tuning(load(a.runs))
    if a.tuned:  # the per-seed choices, e.g. to launch runs that build on a tuned setting
        print(choices.to_string(index=False))
        return 0
    agg = aggregate(df)
    sel = select(df)
    walls = df.groupby(["model", "seed"])["wall_s"].max().groupby("model").mean()
    df.sort_values(["model", "seed", "rerank", "div"]).to_csv(a.out / "runs.csv", index=False)
    choices.to_csv(a.out / "tuned.csv", index=False)
    agg.to_csv(a.out / "aggregate.csv", index=False)
    sel.to_csv(a.out / "selected.csv", index=False)
    plot(agg, sel, a.out / "pareto.png")
    base = best_baseline(sel)
    lines = [accuracy_gap(sel, base), *dominance(agg, sel, base), front_members(agg)]
    text = table(sel, walls) + "\n" + "".join(f"- {line}\n" for line in lines)
    print(text)
    readme = a.out / "README.md"
    if readme.exists():  # the README's table is this output, never typed by hand
        write_between_markers(readme, text)
    return 0


START, END = "<!-- study.py: table start -->", "<!-- study.py: table end -->"


def write_between_markers(readme: Path, text: str) -> None:
    doc = readme.read_text()
    if START not in doc or END not in doc:
        print(f"{readme}: no {START} / {END} markers; README left as is")
        return
    head, rest = doc.split(START, 1)
    tail = rest.split(END, 1)[1]
    with atomic_path(readme) as tmp:
        Path(tmp).write_text(f"{head}{START}\n{text}{END}{tail}")


if __name__ == "__main__":
    raise SystemExit(main())
