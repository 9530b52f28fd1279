"""Differentiable diversity regularisers on the model's in-batch softmax.

Every term takes ``logits: [B, C]`` (users x candidate columns, e.g. the duplicate-masked
in-batch logits of :mod:`divrec.losses.relevance`; ``-inf`` entries are allowed and get zero
probability), ``cand_emb: [C, d]`` candidate item embeddings and ``cand_cats: [C, K]`` 0/1
category indicators (or ``[B, C, d]`` / ``[B, C, K]``: a candidate set of each user's own,
e.g. its top-C catalogue items), and returns a scalar to be MINIMISED: ``loss = relevance + lambda * term``
pushes the model's distribution ``p = softmax(logits)`` (rowwise) towards more diverse lists.
Terms say which inputs they need (``needs_embeddings`` / ``needs_categories``); unused ones
may be ``None``. Duplicate candidate columns are treated as separate (identical) candidates.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec.errors import ConfigError, DataError

EPS = 1e-12


class DiversityTerm:
    """Base class: ``term(logits [B, C], cand_emb [(B,) C, d] | None, cand_cats [(B,) C, K]
    | None)``."""

    needs_embeddings = False
    needs_categories = False

    def __call__(self, logits: Tensor, cand_emb: Tensor | None, cand_cats: Tensor | None) -> Tensor:
        self._check(logits, cand_emb, cand_cats)
        return self.compute(logits, cand_emb, cand_cats)

    def compute(self, logits: Tensor, cand_emb: Tensor | None, cand_cats: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _check(self, logits: Tensor, cand_emb: Tensor | None, cand_cats: Tensor | None) -> None:
        name = type(self).__name__
        if logits.ndim != 2:
            raise DataError(f"{name}: logits must be [B, C], got {tuple(logits.shape)}")
        n_cand = logits.shape[1]
        for arg, needed, what in (
            (cand_emb, self.needs_embeddings, "cand_emb"),
            (cand_cats, self.needs_categories, "cand_cats"),
        ):
            if arg is None:
                if needed:
                    raise DataError(f"{name}: {what} is required but was None")
            elif not (
                (arg.ndim == 2 and arg.shape[0] == n_cand)
                or (arg.ndim == 3 and arg.shape[:2] == logits.shape)
            ):
                raise DataError(
                    f"{name}: {what} must be [C={n_cand}, *] or [B, C]={tuple(logits.shape)} "
                    f"+ [*], got {tuple(arg.shape)}"
                )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def cosine_similarity_matrix(emb: Tensor) -> Tensor:
    """``sim: [(B,) C, C]`` cosines of the rows of ``emb: [(B,) C, d]`` (PSD Gram matrix)."""
    unit = F.normalize(emb, dim=-1, eps=EPS)
    return unit @ unit.mT


def jaccard_similarity_matrix(cats: Tensor) -> Tensor:
    """``sim: [(B,) C, C]`` Jaccard |A n B| / |A u B| of 0/1 category rows ``[(B,) C, K]``;
    0 when both are empty."""
    cats = cats.to(torch.get_default_dtype()) if not cats.is_floating_point() else cats
    inter = cats @ cats.mT
    size = cats.sum(dim=-1)
    union = size.unsqueeze(-1) + size.unsqueeze(-2) - inter
    return torch.where(union > 0, inter / union.clamp_min(EPS), torch.zeros_like(inter))


class NoDiversity(DiversityTerm):
    """Zero term: attached to the graph with zero gradient (and no NaN from -inf logits)."""

    def compute(self, logits: Tensor, cand_emb: Tensor | None, cand_cats: Tensor | None) -> Tensor:
        finite = torch.where(torch.isfinite(logits), logits, torch.zeros_like(logits))
        return finite.sum() * 0.0


class ILS(DiversityTerm):
    """Expected intra-list similarity ``mean_u sum_{i != j} p_ui p_uj sim(i, j)``.

    ``similarity="embedding"``: cosine of ``cand_emb`` rows (detached unless
    ``detach_embeddings=False``, in which case the term also pushes embeddings apart).
    ``similarity="category"``: Jaccard similarity of ``cand_cats`` rows (1 iff identical
    category sets, 0 if disjoint or either item has no category).
    ``normalize=True`` (default) divides each user's sum by ``sum_{i != j} p_ui p_uj``: the
    expected similarity of two *distinct* items drawn from p. The raw sum is also minimised by
    putting all mass on one item (a one-item "list" has no pairs), which works against
    diversity; the normalised form is only lowered by spreading mass over dissimilar items.
    """

    def __init__(
        self, similarity: str = "embedding", detach_embeddings: bool = True, normalize: bool = True
    ) -> None:
        if similarity not in ("embedding", "category"):
            raise ConfigError(
                f"ILS: similarity must be 'embedding' or 'category', got {similarity!r}"
            )
        self.similarity = similarity
        self.detach_embeddings = bool(detach_embeddings)
        self.normalize = bool(normalize)
        self.needs_embeddings = similarity == "embedding"
        self.needs_categories = similarity == "category"

    def compute(self, logits: Tensor, cand_emb: Tensor | None, cand_cats: Tensor | None) -> Tensor:
        if self.similarity == "embedding":
            assert cand_emb is not None
            emb = cand_emb.detach() if self.detach_embeddings else cand_emb
            sim = cosine_similarity_matrix(emb)
        else:
            assert cand_cats is not None
            sim = jaccard_similarity_matrix(cand_cats)
        p = torch.softmax(logits, dim=1)  # [B, C]
        sim = sim.to(p.dtype)
        off = sim - torch.diag_embed(sim.diagonal(dim1=-2, dim2=-1))  # exclude i == j pairs
        ils = (_rowmat(p, off) * p).sum(dim=1)  # [B]
        if self.normalize:
            ils = ils / distinct_pair_mass(p).clamp_min(torch.finfo(p.dtype).tiny)
        return ils.mean()


def _rowmat(p: Tensor, mat: Tensor) -> Tensor:
    """Row ``b`` of ``p: [B, C]`` times ``mat: [C, X]`` (shared) or ``mat[b]: [B, C, X]`` -> [B, X]."""
    return p @ mat if mat.ndim == 2 else (p.unsqueeze(1) @ mat).squeeze(1)


def distinct_pair_mass(p: Tensor) -> Tensor:
    """``sum_{i != j} p_i p_j`` of each row of ``p: [B, C]`` -> [B], stable when p is sharp.

    Mathematically ``1 - sum_i p_i^2``, which cancels in float32 once one p_i is near 1
    (a 25-nat logit gap leaves ~1e-10 of a value rounded at ~1e-7). Written as
    ``sum_i p_i r_i`` with ``r_i = sum_{j != i} p_j``: ``r`` of the largest entry is the sum
    of the others, and ``r_i = S - p_i`` (``S = sum p``) of the rest never cancels (p_i <= S/2).
    """
    top = p.argmax(dim=1, keepdim=True)  # [B, 1]
    rest = p.scatter(1, top, 0.0)  # p without each row's largest entry
    others = p.sum(dim=1, keepdim=True) - p  # r_i; used for the rest only (rest is 0 at top)
    return p.gather(1, top).squeeze(1) * rest.sum(dim=1) + (rest * others).sum(dim=1)


class CategoryEntropy(DiversityTerm):
    """Minus the entropy of each user's expected category distribution, averaged over users.

    Each item's categories get weight ``1 / n_categories`` (so a multi-category item spreads
    one unit of mass); items without categories contribute nothing. ``q_u = normalise(sum_i
    p_ui w_i)`` over categories; the term is ``sum_k q_uk log q_uk`` with the log clamped at
    1e-12 (0 log 0 = 0). Its minimum ``-log K`` is reached when mass is spread evenly over the
    K categories. A user whose probable candidates all lack categories contributes 0.
    """

    needs_categories = True

    def compute(self, logits: Tensor, cand_emb: Tensor | None, cand_cats: Tensor | None) -> Tensor:
        assert cand_cats is not None
        p = torch.softmax(logits, dim=1)  # [B, C]
        cats = cand_cats.to(p.dtype)
        weights = cats / cats.sum(dim=-1, keepdim=True).clamp_min(1.0)  # rows sum to 1 or 0
        mass = _rowmat(p, weights)  # [B, K]
        q = mass / mass.sum(dim=1, keepdim=True).clamp_min(EPS)
        return (q * q.clamp_min(EPS).log()).sum(dim=1).mean()


class DPPTerm(DiversityTerm):
    """DPP volume of each user's top-m candidates: ``-log det(I + L) / m``, averaged.

    The m = min(top_m, C) candidates with the largest logits are selected per user (the
    selection itself carries no gradient). Quality ``q_i = sqrt(m * p~_i)`` with ``p~`` the
    softmax over those m logits, ``S`` the cosine similarity of ``cand_emb`` (PSD), and
    ``L = diag(q) S diag(q)`` (so trace L = m when S has unit diagonal).

    Why ``det(I + L)`` rather than ``det(L)``: ``log det L = sum log q_i^2 + log det S``
    separates, so its gradient w.r.t. the logits carries no similarity information.
    ``det(I + L) = sum_{Y subset of top-m} det(L_Y)`` couples them: it grows when probability
    sits on mutually dissimilar items. Bounds: with orthogonal candidates and uniform p~ the
    term is ``-log 2`` (its minimum); with identical candidates it is ``-log(1 + m) / m``.

    Numerics: ``jitter * I`` is added and the log-determinant is ``2 sum log diag(chol)``
    from a batched ``torch.linalg.cholesky_ex``. Users whose factorisation fails get the jitter
    multiplied by 10 (up to 6 times); any still failing fall back to eigenvalues clamped at
    ``jitter``, so the term does not become NaN for finite inputs.
    """

    needs_embeddings = True
    max_retries = 6

    def __init__(self, top_m: int = 8, jitter: float = 1e-4, detach_embeddings: bool = True):
        if isinstance(top_m, bool) or not isinstance(top_m, int) or top_m < 1:
            raise ConfigError(f"DPPTerm: top_m must be an integer >= 1, got {top_m!r}")
        if not isinstance(jitter, (int, float)) or not jitter > 0:
            raise ConfigError(f"DPPTerm: jitter must be > 0, got {jitter!r}")
        self.top_m = top_m
        self.jitter = float(jitter)
        self.detach_embeddings = bool(detach_embeddings)

    def compute(self, logits: Tensor, cand_emb: Tensor | None, cand_cats: Tensor | None) -> Tensor:
        assert cand_emb is not None
        m = min(self.top_m, logits.shape[1])
        top_logits, idx = logits.topk(m, dim=1)  # [B, m]
        # exp(0.5 * log p~) keeps the gradient finite where p~ = 0 (masked -inf columns).
        q = torch.exp(0.5 * torch.log_softmax(top_logits, dim=1)) * math.sqrt(m)  # [B, m]
        emb = cand_emb.detach() if self.detach_embeddings else cand_emb
        sim = cosine_similarity_matrix(emb).to(q.dtype)  # [(B,) C, C]
        if sim.ndim == 2:
            sub = sim[idx.unsqueeze(2), idx.unsqueeze(1)]  # [B, m, m]
        else:
            rows = torch.arange(len(idx), device=idx.device)[:, None, None]
            sub = sim[rows, idx.unsqueeze(2), idx.unsqueeze(1)]
        eye = torch.eye(m, dtype=q.dtype, device=q.device)
        kernel = eye + q.unsqueeze(2) * sub * q.unsqueeze(1)
        if kernel.dtype in (torch.float16, torch.bfloat16):  # no half-precision Cholesky
            kernel = kernel.float()
        return -(robust_logdet(kernel, self.jitter, self.max_retries) / m).mean()


def robust_logdet(mat: Tensor, jitter: float, max_retries: int = 6) -> Tensor:
    """``logdet: [B]`` of symmetric PSD ``mat: [B, m, m]`` + jitter I, via batched Cholesky.

    A gradient-free pass finds each matrix's jitter (x10 per failed try, at most
    ``max_retries`` times); one differentiable Cholesky then uses it. Matrices that still fail
    use ``sum log clamp(eigvalsh, jitter)``, so no NaN enters the forward or backward pass.
    """
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype, device=mat.device)
    with torch.no_grad():
        scale = torch.full(mat.shape[:1], jitter, dtype=mat.dtype, device=mat.device)
        failed = torch.linalg.cholesky_ex(mat + jitter * eye).info != 0
        for _ in range(max_retries):
            if not bool(failed.any()):
                break
            scale = torch.where(failed, scale * 10.0, scale)
            retry = mat[failed] + scale[failed, None, None] * eye
            failed = _put(
                torch.zeros_like(failed), failed, torch.linalg.cholesky_ex(retry).info != 0
            )
    safe = torch.where(failed[:, None, None], eye, mat + scale[:, None, None] * eye)
    chol = torch.linalg.cholesky_ex(safe).L
    logdet = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    if bool(failed.any()):
        eig = torch.linalg.eigvalsh(mat[failed]).clamp_min(jitter)
        logdet = _put(logdet, failed, eig.log().sum(-1))
    return logdet


def _put(base: Tensor, where: Tensor, values: Tensor) -> Tensor:
    """Out-of-place ``base[where] = values`` (keeps autograd through ``values``)."""
    out = base.clone()
    out[where] = values
    return out


# Which candidates a term sees in training (``loss.diversity.scope``): the in-batch items
# (``batch``) or each user's top-``top_c`` catalogue items (``topk``, divrec.models.module).
DIVERSITY_SCOPES = ("batch", "topk")

DIVERSITY_TERMS: dict[str, type[DiversityTerm]] = {
    "none": NoDiversity,
    "ils": ILS,
    "category_entropy": CategoryEntropy,
    "dpp": DPPTerm,
}


def build_diversity_term(name: str, **kwargs: Any) -> DiversityTerm:
    """Build a term from its config name and keyword options; ConfigError on unknown ones."""
    if name not in DIVERSITY_TERMS:
        raise ConfigError(
            f"unknown diversity term {name!r}; choose one of {sorted(DIVERSITY_TERMS)}"
        )
    cls = DIVERSITY_TERMS[name]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"diversity term {name!r}: bad options {sorted(kwargs)} ({exc})"
        ) from None
