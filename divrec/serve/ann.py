"""Approximate nearest-neighbour index of the item vectors (``serve.ann``, FAISS).

``recommend()`` scores a two-tower user by the inner product s_ui = <v_u, v_i> over all N
items; at a million items that full product dominates a request. An :class:`AnnIndex`
returns a candidate list instead, which :func:`divrec.serve.retrieval.rank_with_index` masks,
re-scores exactly and ranks as the exact path does. Kinds (``serve.ann.kind``):

- ``exact``: no index, the full product (the default below ``min_items`` under ``auto``);
- ``ivf``: FAISS ``IndexIVFFlat`` with inner product: k-means into ``nlist`` lists, a query
  scans the ``nprobe`` lists nearest to it (memory: one float32 copy of the vectors);
- ``hnsw``: FAISS ``IndexHNSWFlat`` (graph of ``hnsw_m`` links per item, ``ef_search``
  candidates per query): faster queries, slower builds, ~1.2x the vectors' memory.
- ``auto``: ``exact`` below ``min_items`` items, else ``ivf``.

The index is saved next to the run (``RUN/ann/<kind>.faiss``, FAISS's own format, never
pickle) with a JSON of its settings, the sha256 of the item vectors it was built from and of
the index file; :func:`open_index` reuses it when both match, rebuilds it when the vectors or
settings changed (stale), and refuses a file that does not match its checksum in one line.
Every build or load logs one line with recall@K of the index against the exact top-K on a
sample of queries (users).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from divrec.errors import ConfigError, DataError
from divrec.utils.io import atomic_path, file_sha256, write_json

log = logging.getLogger(__name__)
KINDS = ("auto", "exact", "ivf", "hnsw")
FORMAT = 1  # bump when the saved layout changes: older files are then rebuilt


@dataclass(frozen=True)
class AnnConfig:
    """``serve.ann`` (conf/serve/default.yaml)."""

    kind: str = "auto"
    min_items: int = 100_000  # auto: exact below this many items
    nlist: int | None = None  # ivf lists (None: 4·sqrt(N), at most N / 39)
    nprobe: int = 48  # ivf lists scanned per query
    hnsw_m: int = 32  # hnsw links per item
    ef_construction: int = 80  # hnsw candidates while building
    ef_search: int = 256  # hnsw candidates per query (at least the list asked for)
    margin: int = 50  # candidates fetched beyond k + the history's length
    recall_k: int = 100  # K of the recall line logged at build/load
    recall_queries: int = 200  # users sampled for that line
    train_size: int | None = None  # ivf: k-means sample (None: 40 per list, FAISS's minimum)
    threads: int | None = None  # FAISS threads (None: its default, all cores)

    @classmethod
    def from_dict(cls, raw: Any) -> AnnConfig:
        """Checked config from a dict / DictConfig / kind string / None (defaults)."""
        if raw is None:
            return cls()
        if isinstance(raw, str):
            raw = {"kind": raw}
        try:
            raw = dict(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"serve.ann: expected a mapping or a kind, got {raw!r}") from None
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise ConfigError(f"serve.ann: unknown key(s) {unknown}; allowed: {names}")
        cfg = cls(**raw)
        if cfg.kind not in KINDS:
            raise ConfigError(f"serve.ann.kind: '{cfg.kind}' unknown; choose from {list(KINDS)}")
        for name in names[1:]:
            value = getattr(cfg, name)
            if name in ("nlist", "threads", "train_size") and value is None:
                continue
            low = 0 if name in ("margin", "min_items", "recall_queries") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"serve.ann.{name}: expected an integer >= {low}, got {value!r}")
        return cfg

    def resolve(self, n_items: int) -> str:
        """The kind used for a catalogue of ``n_items``."""
        if self.kind == "auto":
            return "exact" if n_items < self.min_items else "ivf"
        return self.kind

    def build_params(self, kind: str, n_items: int) -> dict[str, int]:
        """Settings that change the saved index (a change makes a saved index stale)."""
        if kind == "ivf":
            nlist = self.nlist or int(4 * np.sqrt(n_items))
            nlist = max(1, min(nlist, n_items // 39 or 1))
            return {"nlist": nlist, "train_size": min(n_items, self.train_size or 40 * nlist)}
        return {"hnsw_m": self.hnsw_m, "ef_construction": self.ef_construction}


def import_faiss(kind: str):
    """The ``faiss`` module, or one ConfigError line saying how to get it."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            f"serve.ann.kind={kind} needs FAISS: pip install faiss-cpu (or faiss-gpu), "
            "or set serve.ann.kind=exact"
        ) from None
    return faiss


def _set_threads(faiss: Any, cfg: AnnConfig) -> None:
    """Apply ``serve.ann.threads`` (FAISS's OpenMP setting is process-wide)."""
    if cfg.threads:
        faiss.omp_set_num_threads(cfg.threads)


def vectors_sha256(items: np.ndarray) -> str:
    """sha256 of a float32 C-contiguous [N, d] array's shape and bytes."""
    h = hashlib.sha256(str(items.shape).encode())
    h.update(memoryview(np.ascontiguousarray(items, np.float32)).cast("B"))
    return h.hexdigest()


class AnnIndex:
    """A FAISS inner-product index over item vectors [N, d] (rows = item indices)."""

    def __init__(self, index: Any, kind: str, cfg: AnnConfig, meta: dict[str, Any]) -> None:
        self.index, self.kind, self.cfg, self.meta = index, kind, cfg, meta
        self.n_items, self.dim = int(meta["n_items"]), int(meta["dim"])
        self.recall: float | None = None  # recall@K vs exact of the last check
        self.summary = ""  # the build/load log line
        self._set_search_params()

    @classmethod
    def build(cls, items: np.ndarray, cfg: AnnConfig, kind: str, seed: int = 0) -> AnnIndex:
        """Build a ``kind`` ("ivf" / "hnsw") index over ``items [N, d]`` (float32)."""
        faiss = import_faiss(kind)
        _set_threads(faiss, cfg)
        items = np.ascontiguousarray(items, np.float32)
        n, d = items.shape
        params = cfg.build_params(kind, n)
        t0 = time.perf_counter()
        if kind == "ivf":
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, params["nlist"], faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = items[np.sort(rng.choice(n, min(n, params["train_size"]), replace=False))]
            index.cp.seed = seed
            index.train(sample)
            index.add(items)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params["ef_construction"]
            index.add(items)
        else:
            raise ConfigError(f"serve.ann.kind: cannot build an index of kind '{kind}'")
        meta = {
            "format": FORMAT,
            "kind": kind,
            "params": params,
            "n_items": n,
            "dim": d,
            "vectors_sha256": vectors_sha256(items),
            "faiss_version": getattr(faiss, "__version__", "?"),
            "build_seconds": round(time.perf_counter() - t0, 3),
        }
        return cls(index, kind, cfg, meta)

    def _set_search_params(self) -> None:
        if self.kind == "ivf":
            self.index.nprobe = min(self.cfg.nprobe, self.index.nlist)
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = self.cfg.ef_search

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(inner products, item indices), each [B, n], best first; -1 / -inf pad a list the
        index could not fill."""
        q = np.ascontiguousarray(queries, np.float32)
        n = min(int(n), self.n_items)
        if self.kind == "hnsw" and n > self.cfg.ef_search:  # HNSW returns at most ef items
            faiss = import_faiss(self.kind)
            return self.index.search(q, n, params=faiss.SearchParametersHNSW(efSearch=n))
        return self.index.search(q, n)

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> None:
        """``folder/<kind>.faiss`` + ``<kind>.json``, each written atomically (JSON last)."""
        faiss = import_faiss(self.kind)
        folder = Path(folder)
        index_file = folder / f"{self.kind}.faiss"
        with atomic_path(index_file) as tmp:
            faiss.write_index(self.index, str(tmp))
            self.meta["index_sha256"] = file_sha256(tmp)
        write_json(folder / f"{self.kind}.json", self.meta)

    @classmethod
    def load(cls, folder: str | Path, items: np.ndarray, cfg: AnnConfig, kind: str):
        """The saved index for these ``items`` and settings; None when absent or stale
        (other vectors, settings or format); DataError (one line) when its file is damaged."""
        folder = Path(folder)
        meta_file, index_file = folder / f"{kind}.json", folder / f"{kind}.faiss"
        if not (meta_file.is_file() and index_file.is_file()):
            return None
        try:
            import json

            meta = json.loads(meta_file.read_text())
            stale = (
                meta.get("format") != FORMAT
                or meta.get("kind") != kind
                or meta.get("params") != cfg.build_params(kind, len(items))
                or meta.get("vectors_sha256") != vectors_sha256(items)
            )
        except (OSError, ValueError, AttributeError):
            stale = True  # an unreadable JSON: rebuild (it is written last)
        if stale:
            return None
        if file_sha256(index_file) != meta.get("index_sha256"):
            raise DataError(
                f"{index_file}: does not match the checksum in {meta_file.name} (damaged or "
                "replaced); delete both files to rebuild the index"
            )
        faiss = import_faiss(kind)
        _set_threads(faiss, cfg)
        try:
            index = faiss.read_index(str(index_file))
        except RuntimeError as e:
            first = (str(e).strip().splitlines() or ["unreadable"])[0][:160]
            raise DataError(f"{index_file}: not a readable FAISS index ({first})") from None
        return cls(index, kind, cfg, meta)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Item indices [B, k] of the k largest <q, v_i>, by chunks of items (exact reference)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for s in range(0, len(items), chunk):
        sc = queries @ items[s : s + chunk].T  # [B, c]
        cat_s = np.concatenate([best_s, sc], 1)
        cat_i = np.concatenate(
            [best_i, np.broadcast_to(np.arange(s, s + sc.shape[1]), sc.shape)], 1
        )
        keep = np.argpartition(-cat_s, min(k, cat_s.shape[1]) - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cat_s, keep, 1), np.take_along_axis(cat_i, keep, 1)
    return best_i


def recall_at_k(index: AnnIndex, items: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean |ANN top-k ∩ exact top-k| / k over ``queries [Q, d]``."""
    k = min(k, len(items))
    exact = exact_top(items, queries, k)
    _, ann = index.search(queries, k)
    hits = [len(np.intersect1d(a[a >= 0], e)) for a, e in zip(ann, exact, strict=True)]
    return float(np.mean(hits)) / k


def open_index(
    folder: str | Path | None,
    items: np.ndarray,
    cfg: AnnConfig,
    queries: np.ndarray | None = None,
    seed: int = 0,
) -> AnnIndex | None:
    """The index ``cfg`` asks for over ``items [N, d]``: loaded from ``folder`` when it is
    current, else built (and saved there if ``folder`` is given); None for the exact kind.

    Logs one line: kind, size, build/load time and recall@K vs exact on ``queries [Q, d]``
    (default: ``recall_queries`` item vectors as queries)."""
    kind = cfg.resolve(len(items))
    if kind == "exact":
        return None
    items = np.ascontiguousarray(items, np.float32)
    t0 = time.perf_counter()
    index = AnnIndex.load(folder, items, cfg, kind) if folder is not None else None
    how = "loaded"
    if index is None:
        how = (
            "built"
            if folder is None or not (Path(folder) / f"{kind}.json").exists()
            else "rebuilt (stale)"
        )
        index = AnnIndex.build(items, cfg, kind, seed)
        if folder is not None:
            index.save(folder)
    seconds = time.perf_counter() - t0
    if queries is None or not len(queries):
        rng = np.random.default_rng(seed)
        queries = items[rng.choice(len(items), min(len(items), cfg.recall_queries), replace=False)]
    queries = np.ascontiguousarray(queries[: cfg.recall_queries], np.float32)
    if len(queries):
        index.recall = recall_at_k(index, items, queries, cfg.recall_k)
    settings = ", ".join(f"{k}={v}" for k, v in sorted(index.meta["params"].items()))
    search = f"nprobe={index.index.nprobe}" if kind == "ivf" else f"ef_search={cfg.ef_search}"
    recall = "n/a" if index.recall is None else f"{index.recall:.3f}"
    index.summary = (
        f"ANN {kind} index over {len(items):,} items ({settings}, {search}) {how} in "
        f"{seconds:.1f} s; recall@{min(cfg.recall_k, len(items))} vs exact {recall} on "
        f"{len(queries)} users"
    )
    log.info(index.summary)
    return index
