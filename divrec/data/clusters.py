"""Categories for a catalogue without a taxonomy: k-means over the frozen item text vectors.

``data.categories_from=clusters`` replaces the source's categories by ``data.n_clusters``
clusters of the reference item vectors (the frozen pretrained encoder's mean-pooled item
texts: the space MMR/DPP re-rank in and ``ild_emb`` measures), so that category diversity,
xQuAD and the category loss terms work on any shop. Because the clusters come from that same
space, ``ild_cat`` over them is a coarse view of ``ild_emb``, not an independent signal.

K-means is scikit-learn's (k-means++ init, ``n_init`` restarts, seeded) on L2-normalised
vectors; the labels are cached next to the embeddings, keyed by the vectors' content, K and
the seed. Each cluster is named after its most distinctive title words (TF-IDF), e.g.
``c03 candle, holder``, so reports and explanations stay readable.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch

from divrec.errors import ConfigError

log = logging.getLogger(__name__)

CATEGORY_SOURCES = ("source", "clusters")  # data.categories_from
N_INIT = 4  # k-means restarts (the best inertia is kept)


def check_cluster_args(categories_from: str, n_clusters: int, cluster_seed: int) -> None:
    """ConfigError unless the ``data.categories_from`` / ``n_clusters`` / ``cluster_seed``
    values are usable (checked before any data is loaded)."""
    if categories_from not in CATEGORY_SOURCES:
        raise ConfigError(
            f"data.categories_from={categories_from!r}: expected one of {list(CATEGORY_SOURCES)}"
        )
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 2:
        raise ConfigError(f"data.n_clusters={n_clusters!r}: must be an integer >= 2")
    if isinstance(cluster_seed, bool) or not isinstance(cluster_seed, int):
        raise ConfigError(f"data.cluster_seed={cluster_seed!r}: must be an integer")


def cluster_key(vectors: torch.Tensor, n_clusters: int, seed: int) -> str:
    """Cache key of the clustering of ``vectors: [N, H]`` (content, K, seed, restarts)."""
    h = hashlib.sha256(vectors.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(f"k={n_clusters},seed={seed},n_init={N_INIT}".encode())
    return f"clusters-{h.hexdigest()[:16]}"


def kmeans_labels(vectors: torch.Tensor, n_clusters: int, seed: int) -> torch.Tensor:
    """Cluster of each item: ``vectors [N, H]`` -> labels ``[N]`` int64 in [0, K).

    Rows are L2-normalised first (cosine geometry, as the re-rankers use). Labels are
    renumbered by first occurrence, so item 0 is in cluster 0 and equal partitions give
    equal labels whatever order k-means found them in.
    """
    from sklearn.cluster import KMeans

    n = vectors.shape[0]
    if n_clusters > n:
        raise ConfigError(f"data.n_clusters={n_clusters}: the catalogue has only {n} items")
    x = vectors.detach().double().cpu().numpy()
    x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    km = KMeans(n_clusters=n_clusters, n_init=N_INIT, random_state=seed).fit(x)
    raw = km.labels_.astype(np.int64)
    _, first = np.unique(raw, return_index=True)
    order = raw[np.sort(first)]  # raw labels in order of first occurrence
    remap = np.empty(n_clusters, np.int64)
    remap[order] = np.arange(len(order))
    return torch.from_numpy(remap[raw])


def cluster_names(
    labels: torch.Tensor, titles: list[str], n_clusters: int, top_words: int = 2
) -> list[str]:
    """``c<j> word, word`` per cluster j: its titles' highest mean TF-IDF words ([K] names;
    a cluster without items, possible when items share vectors, keeps the bare ``c<j>``)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    width = len(str(n_clusters - 1))
    names = [f"c{j:0{width}d}" for j in range(n_clusters)]
    vec = TfidfVectorizer(stop_words="english")
    try:
        tfidf = vec.fit_transform(titles)
    except ValueError:  # no word at all (empty or numeric titles): plain names
        return names
    vocab = vec.get_feature_names_out()
    lab = labels.numpy()
    for j in range(n_clusters):
        rows = np.flatnonzero(lab == j)
        if not len(rows):
            continue
        mean = np.asarray(tfidf[rows].mean(axis=0)).ravel()
        best = [vocab[t] for t in np.argsort(-mean, kind="stable")[:top_words] if mean[t] > 0]
        if best:
            names[j] += " " + ", ".join(best)
    return names


def one_hot(labels: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """[N] labels -> [N, K] float 0/1 category matrix (one category per item)."""
    out = torch.zeros(labels.numel(), n_clusters)
    out[torch.arange(labels.numel()), labels] = 1.0
    return out
