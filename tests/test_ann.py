"""ANN retrieval (``divrec.serve.ann``, ``divrec.serve.retrieval``) against brute force:
recall on clustered data, the exact path's lists, stale and damaged index files, config."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from divrec.errors import ConfigError, DataError
from divrec.evaluation.pipeline import Ranker
from divrec.serve.ann import AnnConfig, exact_top, import_faiss, open_index, recall_at_k
from divrec.serve.retrieval import fetch_size, rank_with_index

faiss = pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install faiss-cpu)")


def clustered(n: int, d: int, clusters: int, seed: int = 0, noise: float = 0.6) -> np.ndarray:
    """Unit vectors around ``clusters`` gaussian centres: [n, d] float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def data():
    """10,000 items in 100 clusters; 100 users pooling 10 random items each (as a history
    tower's mean pooling does)."""
    items = clustered(10000, 32, 100)
    hist = np.random.default_rng(1).integers(0, len(items), (100, 10))
    queries = items[hist].mean(1)
    return items, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def test_exact_top_is_brute_force(data) -> None:
    items, queries = data
    got = exact_top(items, queries[:20], 50, chunk=3000)  # several chunks, ragged last
    ref = brute_top(items, queries[:20], 50)
    for g, r in zip(got, ref, strict=True):
        assert set(g.tolist()) == set(r.tolist())


@pytest.mark.parametrize(
    "cfg", [AnnConfig(kind="ivf"), AnnConfig(kind="hnsw", hnsw_m=16, ef_construction=40)]
)
def test_recall_at_100_against_brute_force(data, cfg: AnnConfig) -> None:
    items, queries = data
    index = open_index(None, items, cfg, queries)
    ref = brute_top(items, queries, 100)
    _, ids = index.search(queries, 100)
    pairs = zip(ids.tolist(), ref.tolist(), strict=True)
    recall = np.mean([len(set(a) & set(r)) / 100 for a, r in pairs])
    assert recall >= 0.95
    assert index.recall == pytest.approx(recall)  # the logged number is this one
    assert recall_at_k(index, items, queries, 100) == pytest.approx(recall)


def test_auto_is_exact_below_min_items(data) -> None:
    items, _ = data
    assert open_index(None, items, AnnConfig()) is None  # 10,000 < 100,000
    assert open_index(None, items, AnnConfig(min_items=10_000, recall_queries=0)).kind == "ivf"


def _exact_list(items, user, seen, k, cfg, emb, cats, user_cats=None):
    scores = (user @ items.T).float()
    ranker = Ranker.from_config(cfg, embeddings=F.normalize(emb.float(), dim=-1), categories=cats)
    top = ranker.rank(scores, seen, k, user_cats)
    return top, scores.gather(1, top)


@pytest.mark.parametrize(
    "rerank",
    [
        {"name": "none"},
        {"name": "mmr", "diversity": 0.4, "candidates": 60},
        {"name": "xquad", "diversity": 0.5, "candidates": 40},
    ],
)
def test_index_lists_equal_the_exact_path(rerank) -> None:
    """An exhaustive IVF (nprobe = nlist) holds every candidate, so the list, its order and
    its scores are the exact path's, with seen items masked and extra items appended."""
    items_np = clustered(3000, 16, 20, seed=2)
    index = open_index(None, items_np, AnnConfig(kind="ivf", nlist=30, nprobe=30))
    extra = torch.from_numpy(clustered(5, 16, 20, seed=3))
    items = torch.cat([torch.from_numpy(items_np), extra])  # 5 call-time items
    emb = torch.randn(len(items), 8, generator=torch.Generator().manual_seed(0))
    cats = (torch.rand(len(items), 6, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    rng = np.random.default_rng(4)
    for trial in range(5):
        hist = rng.choice(len(items), 30, replace=False)
        user = F.normalize(items[hist].mean(0, keepdim=True), dim=-1)
        if trial == 0:
            user = items[-1:].clone()  # a user nearest to a call-time item
        seen = torch.zeros(1, len(items), dtype=torch.bool)
        seen[0, hist] = True
        user_cats = cats[hist].sum(0, keepdim=True)
        user_cats = user_cats / user_cats.sum()
        got = rank_with_index(index, items, user, seen, 10, rerank, emb, cats, user_cats, 5)
        ref = _exact_list(items, user, seen, 10, rerank, emb, cats, user_cats)
        assert got is not None
        assert got[0].tolist() == ref[0].tolist()
        torch.testing.assert_close(got[1], ref[1])
        assert not seen[0, got[0][0]].any()
        if trial == 0:
            assert len(items) - 1 in got[0][0].tolist()


def test_whole_catalogue_rerank_falls_back_to_exact() -> None:
    assert fetch_size(10, {"name": "mmr", "candidates": None}, 3, 5) is None
    assert fetch_size(10, {"name": "none"}, 3, 5) == 18
    assert fetch_size(10, {"name": "mmr", "candidates": 200}, 3, 5) == 208
    assert fetch_size(10, {"name": "mmr"}, 3, 5) == 208  # the Ranker's default M = 200
    items = clustered(500, 8, 5)
    index = open_index(None, items, AnnConfig(kind="ivf", nlist=5))
    t = torch.from_numpy(items)
    emb, cats = t, torch.ones(500, 1)
    cfg = {"name": "mmr", "candidates": None, "diversity": 0.3}
    assert rank_with_index(index, t, t[:1], None, 5, cfg, emb, cats) is None


def test_saved_index_is_reused_rebuilt_when_stale_and_refused_when_damaged(
    tmp_path, caplog
) -> None:
    items = clustered(4000, 16, 20, seed=5)
    cfg = AnnConfig(kind="ivf", nlist=40, nprobe=8, recall_queries=50)
    caplog.set_level(logging.INFO, logger="divrec.serve.ann")
    first = open_index(tmp_path, items, cfg)
    assert (tmp_path / "ivf.faiss").is_file() and (tmp_path / "ivf.json").is_file()
    assert "built" in first.summary and "recall@100 vs exact" in first.summary
    again = open_index(tmp_path, items, cfg)
    assert "loaded" in again.summary
    assert [r.message for r in caplog.records if "ANN ivf" in r.message][-1] == again.summary
    q = items[:7]
    np.testing.assert_array_equal(first.search(q, 20)[1], again.search(q, 20)[1])
    moved = items.copy()
    moved[0] = moved[1]  # other vectors: the saved index is stale
    assert "rebuilt (stale)" in open_index(tmp_path, moved, cfg).summary
    assert json.loads((tmp_path / "ivf.json").read_text())["n_items"] == 4000
    other = AnnConfig(kind="ivf", nlist=20, nprobe=8, recall_queries=50)  # other settings
    assert "rebuilt (stale)" in open_index(tmp_path, moved, other).summary
    assert "loaded" in open_index(tmp_path, moved, other).summary
    # A flipped byte: the checksum in the JSON no longer matches.
    raw = bytearray((tmp_path / "ivf.faiss").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "ivf.faiss").write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        open_index(tmp_path, moved, other)
    assert "\n" not in str(err.value) and "ivf.faiss: does not match the checksum" in str(err.value)
    # A truncated file whose checksum was updated too: FAISS cannot read it.
    (tmp_path / "ivf.faiss").write_bytes(bytes(raw[:100]))
    meta = json.loads((tmp_path / "ivf.json").read_text())
    from divrec.utils.io import file_sha256

    meta["index_sha256"] = file_sha256(tmp_path / "ivf.faiss")
    (tmp_path / "ivf.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"ivf\.faiss: not a readable FAISS index \(") as err:
        open_index(tmp_path, moved, other)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"kind": "annoy"}, r"serve\.ann\.kind: 'annoy' unknown"),
        ({"nprobe": 0}, r"serve\.ann\.nprobe: expected an integer >= 1"),
        ({"nporbe": 4}, r"serve\.ann: unknown key\(s\) \['nporbe'\]"),
        ({"margin": 1.5}, r"serve\.ann\.margin: expected an integer >= 0"),
        (3, r"serve\.ann: expected a mapping or a kind"),
    ],
)
def test_bad_config_is_one_line(raw, match) -> None:
    with pytest.raises(ConfigError, match=match):
        AnnConfig.from_dict(raw)


def test_config_from_a_kind_string_and_defaults() -> None:
    assert AnnConfig.from_dict("hnsw").kind == "hnsw"
    assert AnnConfig.from_dict(None) == AnnConfig()
    assert AnnConfig().resolve(99_999) == "exact" and AnnConfig().resolve(100_000) == "ivf"
    assert AnnConfig().build_params("ivf", 1_000_000)["nlist"] == 4000


def test_missing_faiss_is_one_line(monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ConfigError, match=r"serve\.ann\.kind=ivf needs FAISS: pip install"):
        import_faiss("ivf")


def test_hnsw_returns_lists_longer_than_ef_search() -> None:
    items = clustered(2000, 16, 10, seed=6)
    index = open_index(None, items, AnnConfig(kind="hnsw", ef_search=16, recall_queries=0))
    scores, ids = index.search(items[:3], 150)
    assert ids.shape == (3, 150) and (ids >= 0).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    assert index.index.hnsw.efSearch == 16  # the index's own setting is unchanged
