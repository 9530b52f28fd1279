"""Benchmark divrec's batched re-rankers against a per-user pyversity loop.

Shape of the real evaluation: N = 10,000 items with 384-d (non-negative, seeded) embeddings,
B = 1,024 users with ~50 seen items each, top M = 500 candidates per user re-ranked to k = 10.
The baseline loops over users: top-M by score (argpartition, then score desc / index asc, the
same tie rule as divrec), gathers those embeddings and calls ``pyversity.mmr`` / ``.dpp``.
Reported: median wall seconds of 3 repeats after a warm-up (ours and pyversity interleaved so
both see the same load on a shared machine), wall and process-CPU-time speed-ups, our GFLOP/s
counted as 2 * k * M * d flops per user (the minimum for k similarity rows), and the share of
users whose k picks agree exactly (same items, same order) with pyversity. pyversity's DPP
weighs ``exp(beta z)`` (z-scored scores, ``beta = (1 - diversity) * scale``) where divrec's
weighs ``exp(alpha r)`` (``alpha = (1 - diversity) / (2 diversity)``, Chen et al. 2018); the
loop calls it with diversity 0.5 and a per-user ``scale = 2 alpha (std + eps32)``, the same
kernel up to a per-user constant, so the picks still agree.

Run: ``python experiments/benchmarks/bench_rerank.py [--device cuda] [--diversity 0.5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from divrec.rerank import dpp, kernels, mmr, xquad

N_ITEMS, DIM, N_USERS, CANDIDATES, K, N_SEEN, N_CATEGORIES = 10_000, 384, 1_024, 500, 10, 50, 20


def build(device: str = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded float32 inputs of the evaluation shape (embeddings non-negative)."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(N_USERS, N_ITEMS, generator=gen)
    seen = torch.rand(N_USERS, N_ITEMS, generator=gen).argsort(dim=1)[:, :N_SEEN]
    scores.scatter_(1, seen, -torch.inf)
    embeddings = torch.rand(N_ITEMS, DIM, generator=gen)
    categories = (torch.rand(N_ITEMS, N_CATEGORIES, generator=gen) < 0.15).float()
    user_categories = torch.rand(N_USERS, N_CATEGORIES, generator=gen)
    user_categories /= user_categories.sum(dim=1, keepdim=True)
    out = {
        "scores": scores,
        "embeddings": embeddings,
        "categories": categories,
        "user_categories": user_categories,
    }
    return {name: t.to(device) for name, t in out.items()}


def _clock(fn: Callable[[], Any], device: str) -> tuple[float, float, Any]:
    """Wall seconds, process CPU seconds and result of one call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _timed(fns: list[Callable[[], Any]], device: str, repeats: int = 3) -> list[dict]:
    """Median wall and CPU seconds of each function over ``repeats`` after a warm-up call.

    The functions are interleaved in every repeat so that all of them see the same load
    (the benchmark machine is shared).
    """
    results = [fn() for fn in fns]
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            wall, cpu, results[i] = _clock(fn, device)
            walls[i].append(wall)
            cpus[i].append(cpu)
    return [
        {"wall": statistics.median(w), "cpu": statistics.median(c), "result": r}
        for w, c, r in zip(walls, cpus, results, strict=True)
    ]


def pyversity_loop(
    method: str, scores: np.ndarray, embeddings: np.ndarray, diversity: float
) -> np.ndarray:
    """Per-user baseline: top-M candidates, gather their embeddings, call pyversity."""
    import pyversity
    from pyversity.utils import EPS32

    from divrec.rerank.dpp import relevance_weight

    out = np.empty((len(scores), K), dtype=np.int64)
    for u, row in enumerate(scores):
        top = np.argpartition(-row, CANDIDATES - 1)[:CANDIDATES]
        top = top[np.lexsort((top, -row[top]))]  # score desc, then item index asc
        top = top[np.isfinite(row[top])]  # seen items never enter
        if method == "mmr":
            res = pyversity.mmr(embeddings[top], row[top], K, diversity=diversity)
        else:  # exp(beta z) with beta = 0.5 * scale = alpha * (std + eps) is exp(alpha (s - mean))
            scale = 2.0 * relevance_weight(diversity) * (float(row[top].std()) + float(EPS32))
            res = pyversity.dpp(embeddings[top], row[top], K, diversity=0.5, scale=scale)
        out[u] = top[res.indices]
    return out


def run(device: str = "cpu", diversity: float = 0.5, cpu_threads: int | None = 1) -> list[dict]:
    """Time ours vs the pyversity loop for MMR and DPP (plus ours-only xQuAD); one dict each.

    ``cpu_threads``: torch intra-op threads for ours on CPU (``kernels.CPU_THREADS``; None =
    torch's setting). pyversity (numpy) runs single-threaded either way.
    """
    before = kernels.CPU_THREADS
    kernels.CPU_THREADS = cpu_threads
    try:
        return _run(device, diversity)
    finally:
        kernels.CPU_THREADS = before


def _run(device: str, diversity: float) -> list[dict]:
    data = build(device)
    threads = torch.get_num_threads()
    if device == "cpu" and kernels.CPU_THREADS is not None:
        threads = min(threads, kernels.CPU_THREADS)
    scores, emb = data["scores"], data["embeddings"]
    scores_np, emb_np = scores.cpu().numpy(), emb.cpu().numpy()
    flops = 2.0 * K * CANDIDATES * DIM * N_USERS
    rows = []
    for name, fn in (("mmr", mmr), ("dpp", dpp)):
        ours, base = _timed(
            [
                lambda fn=fn: fn(scores, emb, K, diversity, CANDIDATES),
                lambda n=name: pyversity_loop(n, scores_np, emb_np, diversity),
            ],
            device,
        )
        agree = float((ours["result"].cpu().numpy() == base["result"]).all(axis=1).mean())
        rows.append(
            {
                "method": name,
                "device": device,
                "threads": threads,
                "ours_s": ours["wall"],
                "pyversity_s": base["wall"],
                "speedup": base["wall"] / ours["wall"],
                "cpu_speedup": base["cpu"] / ours["cpu"],
                "gflops": flops / ours["wall"] / 1e9,
                "agreement": agree,
            }
        )
    cats, users = data["categories"], data["user_categories"]
    (ours,) = _timed([lambda: xquad(scores, cats, K, diversity, users, CANDIDATES)], device)
    rows.append(
        {
            "method": "xquad",
            "device": device,
            "threads": threads,
            "ours_s": ours["wall"],
            "pyversity_s": None,
            "speedup": None,
            "cpu_speedup": None,
            "gflops": None,
            "agreement": None,
        }
    )
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table of ``run`` results ("-" where there is no pyversity baseline)."""
    cols = [
        ("method", "method", "{}"),
        ("device", "device", "{}"),
        ("threads", "threads", "{}"),
        ("ours s", "ours_s", "{:.3f}"),
        ("pyversity s", "pyversity_s", "{:.3f}"),
        ("speed-up", "speedup", "{:.2f}x"),
        ("CPU-time speed-up", "cpu_speedup", "{:.2f}x"),
        ("GFLOP/s", "gflops", "{:.2f}"),
        ("agree %", "agreement", "{:.1%}"),
    ]
    table = [[title for title, _, _ in cols]]
    for r in rows:
        table.append(["-" if r[key] is None else fmt.format(r[key]) for _, key, fmt in cols])
    widths = [max(len(line[i]) for line in table) + 2 for i in range(len(cols))]
    lines = ["".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in table]
    lines.insert(1, "-" * sum(widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (``make bench``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--diversity", type=float, default=0.5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads for ours; 0 = torch's setting"
    )
    args = parser.parse_args(argv)
    print(f"N={N_ITEMS} d={DIM} B={N_USERS} M={CANDIDATES} k={K} diversity={args.diversity}")
    print(format_table(run(args.device, args.diversity, args.threads or None)))


if __name__ == "__main__":
    main()
