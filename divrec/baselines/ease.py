"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): closed-form item-item model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from divrec.baselines.base import (
    Baseline,
    check_train,
    csr_tensors,
    is_int,
    is_number,
    require,
    rows_to_dense,
)
from divrec.errors import DataError
from divrec.rerank.kernels import cpu_threads
from divrec.utils.budget import Estimate, check_budget, parse_budget


class EASE(Baseline):
    """score(u) = X_u · B with B the ridge item-item weights with a zero diagonal.

    With ``text_prior`` α > 0 the weights are pulled toward the language model's item
    similarity instead of toward 0: B = argmin ‖X − XB‖² + λ‖B − αS‖² with diag(B) = 0, S the
    cosine of the items' reference text vectors (clamped at 0, zero diagonal, only each
    column's ``prior_neighbours`` largest kept). Closed form (Lagrange multipliers μ for the
    diagonal): B = P(G + λαS) − P·diag(μ), μ_j = [P(G + λαS)]_jj / P_jj. An item without
    training interactions has a zero column in X, so its column of B is λα·(P S)[:, j]: cold
    items are scored from the text similarity of the user's history to them. α = 0 is EASE.

    G = XᵀX + λI, P = G⁻¹, B_ij = −P_ij / P_jj (each column divided by its diagonal entry),
    B_jj = 0. An item without training interactions has a zero row and column in XᵀX, so G is
    block diagonal and its row and column of B are exactly 0: the solve runs on the ``A``
    items that have interactions only (6,695 of 9,742 on ml-latest-small: a third of the
    cubic cost) and the others score 0, as in the full solve (and in RecBole's EASE). The
    solve is a Cholesky factorisation and the inverse from it (LAPACK potrf + potri, n³
    flops; ``np.linalg.inv`` costs 2n³), in float64 on the module's device (a float32 solve
    moves scores by ~1e-6 on ml-latest-small); B is stored float32 [A, A], so call
    ``.to(device)`` before ``fit`` to solve on a GPU. A solve whose peak memory
    (:func:`memory_estimate`) exceeds ``max_memory_gb`` ("auto": the RAM / GPU memory
    available) is refused in one line before anything large is allocated.
    """

    needs_training = False

    def __init__(
        self,
        l2: float = 500.0,
        text_prior: float = 0.0,
        prior_neighbours: int = 100,
        max_memory_gb: float | str = "auto",
    ) -> None:
        super().__init__()
        require(is_number(l2) and l2 > 0, f"EASE: l2 must be a number > 0, got {l2!r}")
        require(
            is_number(text_prior) and text_prior >= 0,
            f"EASE: text_prior must be a number >= 0, got {text_prior!r}",
        )
        require(
            is_int(prior_neighbours) and prior_neighbours >= 1,
            f"EASE: prior_neighbours must be an integer >= 1, got {prior_neighbours!r}",
        )
        self.l2 = float(l2)
        self.text_prior = float(text_prior)
        self.prior_neighbours = int(prior_neighbours)
        parse_budget(max_memory_gb, "EASE")
        self.max_memory_gb = max_memory_gb
        self.register_buffer("weights", torch.empty(0, 0))  # B, active rows: [A, C]
        self.register_buffer("active", torch.empty(0, dtype=torch.long))  # item indices [A]
        self.register_buffer("cols", torch.empty(0, dtype=torch.long))  # B's columns [C]
        self.register_buffer("n_cols", torch.zeros((), dtype=torch.long))  # N
        self.register_buffer("train_indptr", torch.empty(0, dtype=torch.long))  # [U+1]
        self.register_buffer("train_indices", torch.empty(0, dtype=torch.long))  # [nnz] in [0, A)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints from before the text prior have no `cols`: B's columns were `active`.
        if prefix + "cols" not in state_dict and prefix + "active" in state_dict:
            state_dict[prefix + "cols"] = state_dict[prefix + "active"]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def needs_item_vectors(self) -> bool:
        """True when ``fit`` needs the items' text vectors (``text_prior`` > 0)."""
        return self.text_prior > 0

    def fit(self, train: sp.csr_matrix, item_vectors: torch.Tensor | None = None) -> None:
        """Solve the closed form on the [U, N] training matrix and keep X for scoring;
        ``item_vectors [N, H]`` (the text space) are needed when ``text_prior`` > 0."""
        x = check_train(train, self.expected_shape)
        device = self.buffer_device
        active = np.flatnonzero(np.diff(x.tocsc().indptr))  # items with interactions
        if len(active) == 0:
            raise DataError("EASE: the training matrix has no interactions")
        prior = self.needs_item_vectors
        if prior and (item_vectors is None or tuple(item_vectors.shape[:1]) != (x.shape[1],)):
            raise DataError(
                f"EASE: text_prior > 0 needs item vectors [{x.shape[1]}, H], got "
                f"{None if item_vectors is None else tuple(item_vectors.shape)}"
            )
        est = memory_estimate(
            x,
            active,
            device,
            prior_cols=x.shape[1] if prior else 0,
            prior_dim=int(item_vectors.shape[1]) if prior else 0,
            prior_neighbours=self.prior_neighbours,
        )
        check_budget(
            est,
            self.max_memory_gb,
            f"EASE: the closed form over {len(active):,} items",
            "shrink the catalogue (data.preprocess.kcore_item), use model=itemknn (never holds "
            "[N, N]), or raise model.options.max_memory_gb",
            device,
        )
        xa = x[:, active].astype(np.float64)
        gram = torch.from_numpy((xa.T @ xa).toarray()).to(device)  # [A, A] float64
        gram.diagonal().add_(self.l2)
        chol, info = torch.linalg.cholesky_ex(gram)
        del gram
        if int(info) != 0:  # cannot happen for l2 > 0 unless the numbers overflow
            raise DataError(f"EASE: XᵀX + {self.l2}·I is not positive definite")
        with cpu_threads(device):  # potri's barriers spin on a busy CPU (4x the CPU time)
            p = torch.cholesky_inverse(chol)  # P = G⁻¹ [A, A]
        del chol
        act = torch.from_numpy(active.astype(np.int64)).to(device)
        if prior:
            b = self._with_prior(p, act, item_vectors.to(device), x.shape[1])
            self.cols = torch.arange(x.shape[1], device=device)
        else:
            b = p.div_(-p.diagonal().clone().unsqueeze(0))  # B_ij = −P_ij / P_jj, in place
            b.fill_diagonal_(0.0)
            self.cols = act
        self.weights = b.to(torch.float32)
        self.active = act
        self.n_cols = torch.tensor(x.shape[1], device=device)
        self.train_indptr, self.train_indices = csr_tensors(xa, device)  # X [U, A]

    def _with_prior(
        self, p: torch.Tensor, act: torch.Tensor, vectors: torch.Tensor, n: int
    ) -> torch.Tensor:
        """B's active rows over all N columns [A, N] from P = (G + λI)⁻¹ [A, A] (float64).

        Only the active rows matter (X_u is 0 elsewhere) and P is 1/λ on the inactive
        diagonal, so P(G + λαS) restricted to them is (I − λP) on the active columns plus
        λα·P·S[A, :]; the diagonal multipliers only touch the active columns."""
        s = prior_similarity(vectors, act, self.prior_neighbours).to(p.dtype)  # [A, N]
        b = (p @ s).mul_(self.l2 * self.text_prior)  # λα·P S [A, N]
        del s
        block = b[:, act].add_(p, alpha=-self.l2)  # [A, A], + I below
        block.diagonal().add_(1.0)
        mu = block.diagonal() / p.diagonal()  # [A]
        b[:, act] = block.addcmul_(p, mu.unsqueeze(0), value=-1.0)
        b[torch.arange(len(act), device=act.device), act] = 0.0  # exactly 0, not ~1e-16
        return b

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> X_u [B, A] @ B [A, C] -> scores [B, N] (0 for columns not in C:
        items without interactions, unless the text prior gives every item a column)."""
        self._check_fitted(self.weights)
        x_u = rows_to_dense(self.train_indptr, self.train_indices, user_idx, len(self.active))
        out = x_u.new_zeros(len(x_u), int(self.n_cols))
        out[:, self.cols] = x_u @ self.weights  # [B, A] @ [A, C]
        return out


def prior_similarity(vectors: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """S [len(rows), N]: cosine of ``vectors [N, H]`` rows ``rows`` against every item,
    clamped at 0, 0 where a row meets its own item, and in each column only the ``k``
    largest entries kept (ties at the k-th value are all kept)."""
    v = torch.nn.functional.normalize(vectors.float(), dim=1)
    s = (v[rows] @ v.T).clamp_min_(0.0)  # [A, N]
    s[torch.arange(len(rows), device=s.device), rows] = 0.0
    if k < len(rows):
        kth = torch.topk(s, k, dim=0).values[-1:]  # [1, N]
        s = torch.where(s >= kth, s, torch.zeros((), dtype=s.dtype, device=s.device))
    return s


def memory_estimate(
    x: sp.csr_matrix,
    active: np.ndarray,
    device: torch.device,
    prior_cols: int = 0,
    prior_dim: int = 0,
    prior_neighbours: int = 100,
) -> Estimate:
    """Bytes ``EASE.fit`` holds at once in each phase, for the checked [U, N] matrix ``x``
    (float32 CSR) and its ``active`` items [A]; ``prior_cols`` = N with a text prior of
    ``prior_dim``-dimensional vectors, else 0.

    X over the active items is float64 CSR (12 bytes per non-zero, + a CSR copy inside the
    product); the sparse XᵀX has at most min(A², Σ_u deg_u²) non-zeros (12 bytes each) before
    its dense float64 copy. Then two float64 [A, A] at a time (G and its Cholesky factor, the
    factor and P), B float32 [A, A]; with the prior S float32/float64 [A, N], its column
    top-k [k, N], P·S float64 [A, N] and B float32 [A, N] (see ``_with_prior``).
    """
    a, nnz, n = len(active), int(x.nnz), prior_cols
    where = "cuda" if device.type == "cuda" else "cpu"
    gram_nnz = min(a * a, int(np.square(np.diff(x.indptr).astype(np.float64)).sum()))
    e, aa = Estimate(), 8 * a * a  # one float64 [A, A]
    e.add("sparse X and XᵀX, dense Gram float64 [A, A]", 24 * nnz + 12 * gram_nnz + aa)
    if where == "cuda":
        e.add("dense Gram float64 [A, A]", aa, where)
    e.add("Gram + Cholesky factor float64 [A, A]", 2 * aa, where)
    e.add("Cholesky factor + inverse float64 [A, A]", 2 * aa, where)
    if not n:
        e.add("inverse float64 + B float32 [A, A]", 1.5 * aa, where)
        return e
    k = min(prior_neighbours, a)
    an = a * n
    vectors = 8 * n * prior_dim  # item vectors and their normalised float32 copy [N, H]
    e.add(
        "text prior S float32 [A, N] + its top-k [k, N]", aa + 9 * an + 12 * k * n + vectors, where
    )
    e.add("text prior S float32 + float64 [A, N]", aa + 12 * an, where)
    e.add("S + P·S float64 [A, N]", aa + 16 * an, where)
    e.add("P·S float64 [A, N] + diagonal block [A, A]", 2 * aa + 8 * an, where)
    e.add("B float64 + float32 [A, N]", aa + 12 * an, where)
    return e
