"""Item spaces for ``ild_emb`` (``eval.diversity_space``), chosen apart from the re-rankers'.

MMR and DPP always work in the frozen encoder's item space (``reference_embeddings``); the
metric can be measured there or in a space no re-ranker optimises:

* ``reference``: the frozen encoder's mean-pooled item vectors (what MMR/DPP optimise).
* ``categories``: each item's 0/1 category row (cosine of category sets; ``ild_cat`` is the
  Jaccard version).
* ``tfidf``: TF-IDF of the item texts over their ``TFIDF_TERMS`` most frequent words
  (lower-cased ``\\w+`` tokens, raw counts times smoothed idf ``ln((1 + N) / (1 + df)) + 1``).

Every space is returned as ``[N, d]`` float32 rows; the evaluator L2-normalises them (a zero
row, e.g. an item with none of the kept words, has cosine 0 with everything).
"""

from __future__ import annotations

import re
from collections import Counter

import torch
from torch import Tensor

from divrec.errors import ConfigError

DIVERSITY_SPACES = ("reference", "categories", "tfidf")
TFIDF_TERMS = 1024  # vocabulary size of the tfidf space
_WORD = re.compile(r"\w+")


def tfidf_vectors(texts: list[str], terms: int = TFIDF_TERMS) -> Tensor:
    """``[len(texts), min(terms, vocabulary)]`` TF-IDF rows; ties in frequency by word order."""
    docs = [Counter(_WORD.findall(t.lower())) for t in texts]
    total: Counter = Counter()
    df: Counter = Counter()
    for doc in docs:
        total.update(doc)
        df.update(doc.keys())
    vocab = sorted(total, key=lambda w: (-total[w], w))[:terms]
    col = {w: j for j, w in enumerate(vocab)}
    out = torch.zeros(len(texts), len(vocab))
    for i, doc in enumerate(docs):
        for w, n in doc.items():
            if w in col:
                out[i, col[w]] = float(n)
    idf = torch.tensor([df[w] for w in vocab], dtype=torch.float64)
    idf = torch.log((1.0 + len(texts)) / (1.0 + idf)) + 1.0
    return (out.double() * idf).float()


def diversity_space(name: str, catalogue, reference: Tensor | None) -> Tensor:
    """Item vectors ``[N, d]`` of the space ``name`` for ``catalogue`` (a ``Catalogue``).

    ``reference: [N, H]`` is the frozen encoder's item space (needed for ``reference`` only).
    """
    if name == "reference":
        if reference is None:
            raise ConfigError("eval.diversity_space=reference needs the reference embeddings")
        return reference.float()
    if name == "categories":
        return catalogue.category_matrix.float()
    if name == "tfidf":
        return tfidf_vectors(list(catalogue.texts))
    raise ConfigError(f"eval.diversity_space: unknown {name!r}; choose one of {DIVERSITY_SPACES}")
