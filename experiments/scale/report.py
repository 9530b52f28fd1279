"""Tables, fitted exponents, the log-log plot and the README section of ``make bench-scale``.

Time is the stage's process CPU seconds: the harness runs one torch thread, so that is the
work the stage needs and what its wall time is on an idle core, while wall time on these
shared cores depends on the other jobs (both are recorded and shown). Exponents: for each
stage, the slope of ``log(CPU seconds)`` (and of wall seconds) and of ``log(peak RSS above the
process's baseline after imports)`` against ``log(interactions)`` over the measured sizes on
the path to ml-25m (``numpy.polyfit``, degree 1); the evaluation is also fitted against
``test users x items``, its size by definition. A size that was not measured (the ml-25m shop
when it did not fit the time here) is *extrapolated* from the largest measured path size with
those exponents, and every such number is labelled so. The README section between the
``scale`` markers is rebuilt; the rest of the file (hand-written findings, other sections) is
kept.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from divrec.utils.io import atomic_path
from experiments.scale.sizes import ML25M
from experiments.scale.stages import STAGES

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
ANN = "<!-- ann section -->"
PLOT = "scale.png"
E2E_BUDGET_S = 60 * 60  # the ml-25m shop end to end, embedding fill excluded
RSS_BUDGET_MB = 8 * 1024
LINEAR_SLACK = 1.15  # a fitted exponent up to this counts as linear (noise of shared cores)


def load_results(folder: Path, names: list[str] | None = None) -> list[dict]:
    """Every ``<size>.json`` in ``folder`` (or those of ``names``), by interaction count."""
    paths = [folder / f"{n}.json" for n in names] if names else sorted(folder.glob("*.json"))
    records = [json.loads(p.read_text()) for p in paths if p.exists()]
    return sorted(
        records,
        key=lambda r: (not r["size"]["on_path"], r["size"]["n_interactions"], r["size"]["n_items"]),
    )


def above_base(record: dict, stage: str) -> float:
    """Peak RSS of ``stage`` above the process's RSS after imports, MB (at least 1)."""
    return max(record["stages"][stage]["peak_rss_mb"] - record["base_rss_mb"], 1.0)


def end_to_end_s(record: dict) -> float:
    """CPU seconds of the run without the one-time embedding fill (stages but embed; start-up
    counted at its wall time, mostly imports)."""
    st = record["stages"]
    return record["startup_s"] + sum(st[s]["cpu_s"] for s in STAGES if s != "embed")


def end_to_end_wall_s(record: dict) -> float:
    st = record["stages"]
    return record["startup_s"] + sum(st[s]["wall_s"] for s in STAGES if s != "embed")


def slope(x: list[float], y: list[float]) -> float | None:
    """Fitted exponent ``b`` of ``y = a x^b`` (least squares on logs); None with < 2 sizes."""
    if len(x) < 2 or len(set(x)) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def path_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["size"]["on_path"]]


def exponents(records: list[dict]) -> dict[str, dict[str, float | None]]:
    """``{stage: {"time": b, "wall": b, "rss": b}}`` against interactions (time: CPU
    seconds), path sizes only;
    ``evaluate`` also gets ``"time_vs_pairs"`` against test users x items."""
    path = path_records(records)
    x = [r["size"]["n_interactions"] for r in path]
    out: dict[str, dict[str, float | None]] = {}
    for s in STAGES:
        out[s] = {
            "time": slope(x, [max(r["stages"][s]["cpu_s"], 1e-6) for r in path]),
            "wall": slope(x, [r["stages"][s]["wall_s"] for r in path]),
            "rss": slope(x, [above_base(r, s) for r in path]),
        }
    pairs = [r["counts"]["test_users"] * r["counts"]["items"] for r in path]
    cpu = [r["stages"]["evaluate"]["cpu_s"] for r in path]
    out["evaluate"]["time_vs_pairs"] = slope(pairs, cpu)
    return out


def extrapolate(records: list[dict], fits: dict, n: int = ML25M[0]) -> dict | None:
    """Per-stage CPU seconds and peak RSS at ``n`` interactions on the path, from the
    largest measured path size and the fitted exponents (None: under two path sizes)."""
    path = path_records(records)
    if len(path) < 2 or any(fits[s]["time"] is None for s in STAGES):
        return None
    last = path[-1]
    ratio = n / last["size"]["n_interactions"]
    stages = {}
    for s in STAGES:
        base = last["base_rss_mb"]
        stages[s] = {
            "cpu_s": last["stages"][s]["cpu_s"] * ratio ** fits[s]["time"],
            "peak_rss_mb": base + above_base(last, s) * ratio ** fits[s]["rss"],
        }
    return {"from": last["size"]["name"], "n": n, "stages": stages, "startup_s": last["startup_s"]}


def targets(records: list[dict], fits: dict, extra: dict | None) -> list[tuple[str, str, str]]:
    """``(target, value, met)`` rows; ``met`` is ``yes``, ``no``, or ``-`` when unknown."""
    big = next((r for r in records if r["size"]["n_interactions"] == ML25M[0]), None)
    if big is not None:
        e2e, rss, how = end_to_end_s(big), big["peak_rss_mb"], "measured"
    elif extra is not None:
        st = extra["stages"]
        e2e = extra["startup_s"] + sum(st[s]["cpu_s"] for s in STAGES if s != "embed")
        rss, how = max(v["peak_rss_mb"] for v in st.values()), f"EXTRAPOLATED from {extra['from']}"
    else:
        e2e = rss = math.nan
        how = "not measured, too few sizes to extrapolate"
    rows = [
        (
            "ml-25m-sized shop end to end <= 60 min (embedding fill excluded; CPU time, 1 thread)",
            f"{e2e / 60:.1f} min ({how})",
            _met(e2e <= E2E_BUDGET_S, e2e),
        ),
        (
            "peak RSS <= 8 GB (ml-25m-sized shop)",
            f"{rss / 1024:.2f} GB ({how})",
            _met(rss <= RSS_BUDGET_MB, rss),
        ),
    ]
    worse = [
        f"{s} ({k} {fits[s][k]:.2f})"
        for s in STAGES
        if s != "evaluate"
        for k in ("time", "rss")
        if fits[s][k] is not None and fits[s][k] > LINEAR_SLACK
    ]
    known = any(fits[s]["time"] is not None for s in STAGES)
    rows.append(
        (
            f"no stage but evaluate worse than linear in interactions (exponent <= {LINEAR_SLACK})",
            ", ".join(worse) or ("all stages <= linear" if known else "needs two path sizes"),
            ("no" if worse else "yes") if known else "-",
        )
    )
    return rows


def _met(ok: bool, value: float) -> str:
    return "-" if math.isnan(value) else ("yes" if ok else "no")


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _size_label(r: dict) -> str:
    s = r["size"]
    return f"{s['name']} ({s['n_interactions']:,} / {s['n_items']:,} / {s['n_users']:,})"


def stage_table(records: list[dict]) -> list[str]:
    """Markdown: one row per stage, one column per size: ``CPU s (wall s) / peak RSS GB``."""
    head = "| stage | " + " | ".join(_size_label(r) for r in records) + " |"
    lines = [head, "|" + " --- |" * (len(records) + 1)]
    for s in STAGES:
        cells = [
            f"{r['stages'][s]['cpu_s']:,.1f} s ({r['stages'][s]['wall_s']:,.0f}) / "
            f"{r['stages'][s]['peak_rss_mb'] / 1024:.2f} GB"
            for r in records
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    e2e = [
        f"{end_to_end_s(r) / 60:.1f} min ({end_to_end_wall_s(r) / 60:.0f}) / "
        f"{r['peak_rss_mb'] / 1024:.2f} GB"
        for r in records
    ]
    lines.append("| **end to end** (start-up + all but embed) | " + " | ".join(e2e) + " |")
    return lines


def counts_table(records: list[dict]) -> list[str]:
    keys = ("train_pairs", "train_steps", "test_users", "user_texts", "eval_batch_size")
    lines = ["| size | " + " | ".join(keys) + " | embed fill s | MiniLM fill (est.) |"]
    lines.append("|" + " --- |" * (len(keys) + 3))
    for r in records:
        c = r["counts"]
        cells = [f"{c[k]:,}" for k in keys]
        lines.append(
            f"| {r['size']['name']} | "
            + " | ".join(cells)
            + f" | {r['embed_fill_s']:.1f} | {_minilm_fill(r)} |"
        )
    return lines


def _minilm_fill(r: dict) -> str:
    m = r.get("minilm") or {}
    if "item_cpu_s_per_text" not in m:
        return "-"
    c = r["counts"]
    items = c["items"] * m["item_cpu_s_per_text"]
    users = c["user_texts"] * m["user_cpu_s_per_text"]
    return f"{(items + users) / 60:,.0f} CPU-min (items {items / 60:,.0f}, user texts {users / 60:,.0f})"


def exponent_table(fits: dict) -> list[str]:
    lines = [
        "| stage | CPU time | wall time | peak RSS above baseline |",
        "| --- | --- | --- | --- |",
    ]
    for s in STAGES:
        f = fits[s]
        lines.append(f"| {s} | {_f(f['time'])} | {_f(f['wall'])} | {_f(f['rss'])} |")
    lines.append(
        f"| evaluate vs test users x items | {_f(fits['evaluate'].get('time_vs_pairs'))} | | |"
    )
    return lines


def plot(records: list[dict], path: Path) -> bool:
    """Log-log plot of CPU seconds and peak RSS per stage against interactions (path sizes,
    the 1M-item catalogue as separate markers); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    path_r = path_records(records)
    off = [r for r in records if not r["size"]["on_path"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in STAGES:
        for ax, key in zip(axes, ("cpu_s", "rss"), strict=True):
            val = (
                (lambda r, s=s: r["stages"][s]["cpu_s"])
                if key == "cpu_s"
                else (lambda r, s=s: r["stages"][s]["peak_rss_mb"] / 1024)
            )
            x = [r["size"]["n_interactions"] for r in path_r]
            (line,) = ax.plot(x, [val(r) for r in path_r], marker="o", label=s)
            if off:
                ax.scatter(
                    [r["size"]["n_interactions"] for r in off],
                    [val(r) for r in off],
                    marker="x",
                    color=line.get_color(),
                )
    for ax, label in zip(axes, ("CPU seconds (1 thread)", "peak RSS (GB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("divrec stages vs shop size (o: path to ml-25m, x: 1M-item catalogue)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return True


ID_TABLES = Path(__file__).resolve().parent / "id_tables.json"


def id_table_lines(path: Path) -> list[str]:
    """The dense ID tables' per-step cost (``experiments.scale.id_tables``), when measured."""
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    return [
        "### Dense ID tables: optimiser cost per training step (`python -m experiments.scale.id_tables`)",
        "",
        "| shop | rows (items + users) | width | CPU ms per step |",
        "| --- | --- | --- | --- |",
        *(f"| {r['size']} | {r['rows']:,} | {r['dim']} | {r['step_s'] * 1e3:.1f} |" for r in rows),
        "",
    ]


def render(records: list[dict], plotted: bool) -> str:
    """The generated section (between the markers)."""
    fits = exponents(records)
    extra = (
        None
        if any(r["size"]["n_interactions"] == ML25M[0] for r in records)
        else extrapolate(records, fits)
    )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    r0 = records[0] if records else {}
    out = [
        BEGIN,
        "## How cost grows",
        "",
        "Generated by `make bench-scale` (`python -m experiments.scale.run`) from",
        "`experiments/scale/results/*.json`; the findings below the section are hand-written.",
        "",
        f"- date: {now}; encoder: the tiny BERT (`divrec.models.tiny`) unless said otherwise;",
        f"  torch threads: {r0.get('threads', '-')}; every size in a fresh process with an empty cache",
        "- load average (1 min) at start of each size: "
        + ", ".join(f"{r['size']['name']} {r['load'][0][0]:.1f}" for r in records),
        "- sizes are `name (interactions / items / users)`; cells are `CPU seconds (wall seconds)",
        "  / peak RSS` of that stage; CPU seconds of one thread are the work (the wall time on an",
        "  idle core), wall seconds depend on the other jobs on these shared cores; peak RSS is",
        "  the process's resident set, so it includes what earlier stages keep",
        "",
        "### Per stage",
        "",
        *stage_table(records),
        "",
        *counts_table(records),
        "",
        "### Fitted exponents (log-log slope against interactions, path sizes: "
        + ", ".join(r["size"]["name"] for r in path_records(records))
        + ")",
        "",
        *exponent_table(fits),
        "",
    ]
    if plotted:
        out += [f"![time and memory per stage against interactions]({PLOT})", ""]
    if extra is not None:
        out += [
            f"### ml-25m-sized shop: EXTRAPOLATED (not measured) from {extra['from']}",
            "",
            "| stage | CPU s (extrapolated) | peak RSS GB (extrapolated) |",
            "| --- | --- | --- |",
            *(
                f"| {s} | {v['cpu_s']:,.0f} | {v['peak_rss_mb'] / 1024:.2f} |"
                for s, v in extra["stages"].items()
            ),
            "",
        ]
    out += id_table_lines(ID_TABLES)
    out += [
        "### Targets",
        "",
        "| target | value | met |",
        "| --- | --- | --- |",
        *(f"| {a} | {b} | {c} |" for a, b, c in targets(records, fits, extra)),
        END,
    ]
    return "\n".join(out)


HEADER = """# Scale: how divrec's cost grows with the shop

`make bench-scale` runs the simulated shop (`data=shop_sim`) at growing sizes through the
pipeline of `python train.py`, stage by stage (`experiments/scale/stages.py`), and writes the
section below.
"""


def write_readme(path: Path, records: list[dict], results: Path | None = None) -> None:
    """Rebuild the generated section of ``path`` (and the plot next to it)."""
    plotted = bool(records) and plot(records, path.parent / PLOT)
    block = render(records, plotted)
    old = path.read_text() if path.exists() else f"{HEADER}\n{BEGIN}\n{END}\n\n{ANN}\n"
    if BEGIN in old and END in old:
        text = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        text = f"{old.rstrip()}\n\n{block}\n"
    if ANN not in text:
        text = f"{text.rstrip()}\n\n{ANN}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
