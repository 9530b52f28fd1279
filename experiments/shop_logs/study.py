"""Tables of the shop-log study from its run folders (``run.sh``): README.md between markers.

Layout read: ``<runs>/<split>-repeats_<off|on>-<model>[-s<seed>]/<job>/[name=..,diversity=..]/
metrics.json``. Every number is a **test** metric, mean ± std over the seeds; nothing is
selected (every grid point is listed), so no choice looks at test.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

FOLDER = re.compile(r"^(?P<split>[a-z_]+)-repeats_(?P<repeats>on|off)-(?P<model>[a-z_]+?)(-s\d+)?$")
MAIN = [
    ("test/ndcg@10", "NDCG@10"),
    ("test/ndcg_repeat@10", "NDCG@10 repeat"),
    ("test/ndcg_new@10", "NDCG@10 new"),
    ("test/repeat_share@10", "repeat share@10"),
    ("test/ild_emb@10", "ILD emb@10"),
]
RERANK = [
    ("test/ndcg@10", "NDCG@10"),
    ("test/ild_cat@10", "ILD clusters@10"),
    ("test/cat_coverage@10", "cluster coverage@10"),
    ("test/ild_emb@10", "ILD emb@10"),
]
MODELS = {
    "pop": "most popular",
    "ease": "EASE (λ=500)",
    "buy_again": "buy again",
    "two_tower": "two-tower (default)",
    "two_tower_nocats": "two-tower, no categories",
}
README = Path(__file__).with_name("README.md")


def load(runs: Path) -> pd.DataFrame:
    """One row per metrics.json with status ok: split, repeats, model, rerank, seed, metrics."""
    rows = []
    for f in sorted(runs.glob("*/*/**/metrics.json")):
        top = f.relative_to(runs).parts[0]
        m = FOLDER.match(top)
        data = json.loads(f.read_text())
        meta = data.pop("meta")
        if m is None or meta.get("status") != "ok":
            continue
        knobs = meta.get("knobs") or {}
        div = float(knobs.get("rerank.diversity", 0.0) or 0.0)
        name = knobs.get("rerank.name", "none") if div > 0 else "none"
        rows.append(
            {**m.groupdict(), "rerank": name, "diversity": div, "seed": meta["seed"], **data}
        )
    return pd.DataFrame(rows)


def _cell(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "–"
    return f"{v.mean():.4f} ± {v.std(ddof=0):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def table(df: pd.DataFrame, cols: list[tuple[str, str]], keys: list[str]) -> str:
    """Markdown table: one row per ``keys`` group, mean ± std over seeds of ``cols``."""
    head = ["split", "repeats", "model", *(["re-rank"] if "rerank" in keys else []), "seeds"]
    out = ["| " + " | ".join(head + [c for _, c in cols]) + " |"]
    out.append("|" + "---|" * (len(head) + len(cols)))
    order = {m: j for j, m in enumerate(MODELS)}
    groups = sorted(
        df.groupby(keys),
        key=lambda g: (g[0][0] != "random", g[0][1], order.get(g[0][2], 99), g[0][3:]),
    )
    for key, g in groups:
        split, repeats, model = key[:3]
        cells = [split, repeats, MODELS.get(model, model)]
        if "rerank" in keys:
            cells.append("none" if key[3] == "none" else f"{key[3]} {key[4]:g}")
        cells.append(str(g["seed"].nunique()))
        cells += [_cell(g[k]) if k in g else "–" for k, _ in cols]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def report(df: pd.DataFrame) -> str:
    plain = df[df["rerank"] == "none"]
    two = df[df["model"].isin(["two_tower", "two_tower_nocats"])]
    keys = ["split", "repeats", "model", "rerank", "diversity"]
    return (
        "Unre-ranked lists, test metrics, mean ± std over seeds:\n\n"
        + table(plain, MAIN, ["split", "repeats", "model"])
        + "\n\nThe two-tower's lists re-ranked (every grid point; xQuAD needs categories):\n\n"
        + table(two, RERANK, keys)
    )


def write_between_markers(readme: Path, text: str) -> None:
    """Replace what lies between the results markers of ``readme`` by ``text``."""
    start, end = "<!-- results start -->", "<!-- results end -->"
    s = readme.read_text()
    i, j = s.index(start) + len(start), s.index(end)
    readme.write_text(s[:i] + "\n" + text + "\n" + s[j:])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    runs = Path(args[0] if args else "outputs/shop_logs")
    df = load(runs)
    if df.empty:
        print(f"{runs}: no finished runs", file=sys.stderr)
        return 1
    df.to_csv(Path(__file__).with_name("runs.csv"), index=False)
    text = report(df)
    write_between_markers(README, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
