"""ANN retrieval at a million items: build time, memory, ``recommend()`` latency, recall.

``python -m experiments.scale.ann_bench [--n-items 1000000 --dim 384 --clusters 1000]``

The catalogue is synthetic: unit vectors around ``clusters`` gaussian centres (so the
neighbourhoods are uneven and the index cannot just return one cluster), generated in chunks
with a seed. Users are histories of 20 items drawn from 1-3 clusters each. ``recommend()``
runs unchanged on a loaded model whose parts are divrec's own (``CFScorer`` two-tower
scoring, ``TwoTower.pool_history`` with mean pooling, the catalogue view, the Ranker, the
explanations); only the trained towers are replaced by identity heads over the synthetic
vectors, since no run at this size exists here. Each request is one fresh 20-item history,
k = 10, seen items masked; latency is wall-clock per call after loading (the index built or
read, one warm-up call). Exact is the same call without an index (the full [1, N] product).
Writes ``ann_results.json`` next to this file (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from divrec.models.cf import CFContext, CFScorer
from divrec.models.pooling import MeanPooling
from divrec.models.towers import TwoTower
from divrec.serve.ann import AnnConfig, open_index, recall_at_k
from divrec.serve.recommend import LoadedModel, recommend

HERE = Path(__file__).resolve().parent


def clustered_items(n: int, d: int, clusters: int, seed: int, noise: float, chunk: int = 100_000):
    """(unit item vectors [n, d] float32, cluster of each item [n]), built chunk by chunk."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    label = rng.integers(0, clusters, n)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = centres[label[s:e]] + noise * rng.standard_normal((e - s, d), dtype=np.float32)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, label


def histories(label: np.ndarray, n_users: int, length: int, seed: int) -> list[np.ndarray]:
    """Item-index histories of ``length`` items from 1-3 random clusters each."""
    rng = np.random.default_rng(seed)
    members = np.argsort(label, kind="stable")
    starts = np.searchsorted(label[members], np.arange(label.max() + 2))
    out = []
    for _ in range(n_users):
        cl = rng.choice(label.max() + 1, rng.integers(1, 4), replace=False)
        pool = np.concatenate([members[starts[c] : starts[c + 1]] for c in cl])
        out.append(rng.choice(pool, length, replace=False))
    return out


def loaded_model(items: torch.Tensor, n_categories: int, seed: int) -> LoadedModel:
    """A LoadedModel over ``items`` with identity towers and mean history pooling."""
    n = len(items)
    net = SimpleNamespace(
        user_tower="history", pool=MeanPooling(), user_head=nn.Identity(), user_id=None
    )
    net.pool_history = functools.partial(TwoTower.pool_history, net)
    rng = np.random.default_rng(seed)
    cats = torch.zeros(n, n_categories)
    cats[torch.arange(n), torch.from_numpy(rng.integers(0, n_categories, n))] = 1.0
    module = SimpleNamespace(
        net=net,
        cf=CFScorer("two_tower"),
        mask_seen=True,
        rerank_cfg={"name": "none"},
        categories=cats,
        reference_embeddings=None,
    )
    ids = [f"i{i}" for i in range(n)]
    catalogue = SimpleNamespace(
        item_ids=ids,
        titles=[f"item {i}" for i in range(n)],
        index={x: i for i, x in enumerate(ids)},
    )
    dm = SimpleNamespace(history_len=50, catalogue=catalogue)
    return LoadedModel(module, dm, Path("."), Path("."), CFContext(items), None)


def time_requests(m: LoadedModel, hists: list[list[str]], k: int) -> tuple[list[float], list]:
    recommend(m, hists[0], k=k)  # warm-up
    times, lists = [], []
    for h in hists:
        t0 = time.perf_counter()
        recs = recommend(m, h, k=k)
        times.append(time.perf_counter() - t0)
        lists.append(recs.item_id.tolist())
    return times, lists


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=1.0, help="per-dimension noise / centre scale")
    ap.add_argument("--kind", default="ivf", help="ivf | hnsw")
    ap.add_argument("--nprobe", type=int, default=48)
    ap.add_argument("--sweep", default="4,8,16,32,48,96", help="ivf nprobe values for the table")
    ap.add_argument("--ef-search", type=int, default=256)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--exact-requests", type=int, default=50)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch + FAISS threads (0: their defaults)"
    )
    ap.add_argument("--index-dir", default=None, help="where the index is saved (default: tmp)")
    ap.add_argument("--out", default=str(HERE / "ann_results.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(
            args.threads
        )  # a busy CPU: spinning OpenMP barriers cost more than a second thread gains
    t0 = time.perf_counter()
    items_np, label = clustered_items(args.n_items, args.dim, args.clusters, args.seed, args.noise)
    gen_s = time.perf_counter() - t0
    hist_idx = histories(label, args.requests + 200, 20, args.seed + 1)
    items = torch.from_numpy(items_np)  # shares memory with items_np
    cfg = AnnConfig(
        kind=args.kind, nprobe=args.nprobe, ef_search=args.ef_search, threads=args.threads or None
    )
    # recall queries: 200 users (their mean-pooled history vectors), as recommend() builds them
    qv = np.stack([items_np[h].mean(0) for h in hist_idx[-200:]])
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    folder = Path(args.index_dir or tempfile.mkdtemp(prefix="ann_bench_"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    index = open_index(folder, items_np, cfg, qv)
    build_s = time.perf_counter() - t0
    print(index.summary, flush=True)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    del index  # one copy of the index in memory from here on
    t0 = time.perf_counter()
    reloaded = open_index(folder, items_np, cfg, qv)  # what a second load_model does
    load_s = time.perf_counter() - t0
    print(reloaded.summary, flush=True)
    index_file = folder / f"{reloaded.kind}.faiss"
    # search-only latency (one query at a time), the part the index replaces
    search_t = []
    for v in qv[:100]:
        s = time.perf_counter()
        reloaded.search(v[None], 100)
        search_t.append(time.perf_counter() - s)
    m = loaded_model(items, 20, args.seed)
    hists = [[f"i{i}" for i in h] for h in hist_idx[: args.requests]]
    sweep = []
    if reloaded.kind == "ivf":  # nprobe is a search setting: the same index serves each row
        m.ann = reloaded
        for nprobe in [int(v) for v in args.sweep.split(",") if v]:
            reloaded.index.nprobe = nprobe
            t, _ = time_requests(m, hists[:100], 10)
            rec = recall_at_k(reloaded, items_np, qv, 100)
            sweep.append(
                {
                    "nprobe": nprobe,
                    "recall_at_100": round(rec, 4),
                    "p50_ms": round(pct(t, 50), 2),
                    "p95_ms": round(pct(t, 95), 2),
                }
            )
            print(sweep[-1], flush=True)
        reloaded.index.nprobe = args.nprobe
    m.ann = reloaded
    ann_t, ann_lists = time_requests(m, hists, 10)
    m.ann = None
    n_exact = min(args.exact_requests, len(hists))
    exact_t, exact_lists = time_requests(m, hists[:n_exact], 10)
    overlap = np.mean(
        [len(set(a) & set(e)) / 10 for a, e in zip(ann_lists, exact_lists, strict=False)]
    )
    # recall@100 of the served lists (seen items masked) against exact, on 50 users
    m.ann = reloaded
    a100 = [recommend(m, h, k=100).item_id.tolist() for h in hists[:50]]
    m.ann = None
    e100 = [recommend(m, h, k=100).item_id.tolist() for h in hists[:50]]
    served_recall = np.mean([len(set(a) & set(e)) / 100 for a, e in zip(a100, e100, strict=True)])
    res = {
        "n_items": args.n_items,
        "dim": args.dim,
        "clusters": args.clusters,
        "noise": args.noise,
        "kind": reloaded.kind,
        "params": reloaded.meta["params"],
        "nprobe": args.nprobe if reloaded.kind == "ivf" else None,
        "ef_search": args.ef_search if reloaded.kind == "hnsw" else None,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "generate_s": round(gen_s, 1),
        "build_s": round(build_s, 1),
        "load_s": round(load_s, 1),
        "index_file_mb": round(index_file.stat().st_size / 2**20, 1),
        "items_mb": round(items_np.nbytes / 2**20, 1),
        "peak_rss_gb_before_index": round(rss0, 2),
        "peak_rss_gb_after_build": round(rss1, 2),
        "peak_rss_gb_end": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "index_recall_at_100": round(reloaded.recall, 4),
        "served_recall_at_100": round(float(served_recall), 4),
        "served_overlap_at_10": round(float(overlap), 4),
        "search_p50_ms": round(pct(search_t, 50), 2),
        "ann_recommend_p50_ms": round(pct(ann_t, 50), 2),
        "ann_recommend_p95_ms": round(pct(ann_t, 95), 2),
        "exact_recommend_p50_ms": round(pct(exact_t, 50), 2),
        "exact_recommend_p95_ms": round(pct(exact_t, 95), 2),
        "requests": len(ann_t),
        "exact_requests": n_exact,
        "mean_ms_ann": round(statistics.mean(ann_t) * 1e3, 2),
        "nprobe_sweep": sweep,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
