"""Common interface of the classic baselines and the sparse-matrix helpers they share.

The harness calls ``fit(train)`` once with the [U, N] 0/1 training matrix (a baseline with
``uses_counts`` gets the summed ``row_weights`` of each (user, item) instead), then ``score`` on
batches of users; it masks seen items and takes top-K itself. Everything ``fit`` computes is a
registered buffer, so ``.to(device)``, ``state_dict`` and Lightning checkpoints carry it.
Buffers whose shape is only known after ``fit`` start empty and are resized when a state dict
is loaded into an unfitted module (see ``Baseline._load_from_state_dict``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from divrec.errors import ConfigError, DataError


class Baseline(nn.Module):
    """A recommender that scores the whole catalogue for a batch of users.

    Subclasses set ``needs_training`` (False: ``fit`` is all there is; True: the harness also
    runs a Lightning Trainer over positive (user, item) pairs) and implement ``fit``/``score``.
    ``expected_shape`` (set by ``build_baseline``) makes ``fit`` check the matrix's [U, N].
    """

    needs_training: bool = False
    uses_counts: bool = False  # True: fit gets summed row weights per (user, item), not 0/1
    needs_item_vectors: bool = False  # True: fit also gets item_vectors [N, H] (text space)
    needs_run: bool = False  # True: build_module calls bind_run(dm) before fit (fusion)

    def __init__(self) -> None:
        super().__init__()
        self.expected_shape: tuple[int, int] | None = None
        # Tracks the module's device for closed-form modules, which have no parameters.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    @property
    def buffer_device(self) -> torch.device:
        """Device the module's buffers (and hence ``fit``'s computation) live on."""
        return self._anchor.device

    def fit(self, train: sp.csr_matrix) -> None:
        """Compute everything ``score`` needs from the [U, N] 0/1 training matrix."""
        raise NotImplementedError

    def row_weights(self, ratings: np.ndarray) -> np.ndarray:
        """Weight of each training row (``ratings [rows]``) in the matrix ``fit`` gets when
        ``uses_counts``: one per row (the matrix then counts interactions)."""
        return np.ones(len(ratings), np.float32)

    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: user_idx [B] -> scores [B, N], unmasked."""
        raise NotImplementedError

    def _check_fitted(self, buffer: torch.Tensor) -> None:
        if buffer.numel() == 0:
            raise RuntimeError(f"{type(self).__name__}: call fit(train) before score()")

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Fit-time buffers start empty; give them the saved shape so loading an unfitted
        # module (e.g. LightningModule.load_from_checkpoint) restores the fitted state.
        for name, buf in self._buffers.items():
            key = prefix + name
            if buf is None or name in self._non_persistent_buffers_set or key not in state_dict:
                continue
            saved = state_dict[key]
            if isinstance(saved, torch.Tensor) and saved.shape != buf.shape:
                self._buffers[name] = torch.empty(saved.shape, dtype=buf.dtype, device=buf.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def check_train(
    train: Any, expected_shape: tuple[int, int] | None = None, binary: bool = True
) -> sp.csr_matrix:
    """Validate the training matrix and return it as a float32 CSR with sorted indices.

    Any stored non-zero counts as one interaction (duplicates are summed, then binarised);
    ``binary=False`` keeps the summed values (interaction counts or weights).
    """
    if not sp.issparse(train):
        raise DataError(f"train matrix: expected a scipy.sparse matrix, got {type(train).__name__}")
    if train.ndim != 2 or train.shape[0] == 0 or train.shape[1] == 0:
        raise DataError(
            f"train matrix: expected a non-empty [users, items] matrix, got {train.shape}"
        )
    if expected_shape is not None and tuple(train.shape) != tuple(expected_shape):
        raise DataError(
            f"train matrix: shape {tuple(train.shape)} does not match "
            f"(n_users, n_items) = {tuple(expected_shape)}"
        )
    x = sp.csr_matrix(train, dtype=np.float32, copy=True)
    x.sum_duplicates()
    if not np.all(np.isfinite(x.data)):
        raise DataError("train matrix: contains NaN or infinite values")
    if np.any(x.data < 0):
        raise DataError("train matrix: contains negative values (expected 0/1 interactions)")
    x.eliminate_zeros()
    if x.nnz == 0:
        raise DataError("train matrix: has no interactions")
    if binary:
        x.data[:] = 1.0
    x.sort_indices()
    return x


def csr_tensors(x: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(indptr Long[rows+1], indices Long[nnz]) of a CSR matrix as tensors on ``device``."""
    indptr = torch.from_numpy(x.indptr.astype(np.int64)).to(device)
    indices = torch.from_numpy(x.indices.astype(np.int64)).to(device)
    return indptr, indices


def sorted_coo(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Sparse COO matrix from entries already sorted by (row, col) without duplicates.

    Declared coalesced, so no sort happens; use with ``torch.sparse.mm`` (autograd on the
    dense operand works on CPU and CUDA).
    """
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, size, is_coalesced=True, check_invariants=False
    )


def fixed_width_csr(cols: torch.Tensor, values: torch.Tensor, n_cols: int) -> torch.Tensor:
    """Sparse CSR matrix [R, n_cols] with exactly w entries per row: cols, values [R, w].

    Columns must be sorted within each row. CSR @ dense is several times faster than COO on
    CPU; the "CSR support is in beta" notice is silenced here.
    """
    n_rows, width = cols.shape
    crow = torch.arange(0, n_rows * width + 1, width, device=cols.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow,
            cols.reshape(-1),
            values.reshape(-1),
            size=(n_rows, n_cols),
            check_invariants=False,
        )


def rows_to_dense(
    indptr: torch.Tensor,
    indices: torch.Tensor,
    rows: torch.Tensor,
    n_cols: int,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dense rows of a CSR matrix: rows Long[B] -> Float[B, n_cols], no Python loop; 0/1
    (a binary matrix) unless ``values [nnz]`` are given."""
    rows = rows.to(indptr.device, torch.long)
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    out = torch.zeros(rows.numel(), n_cols, device=indptr.device)
    which = torch.repeat_interleave(torch.arange(rows.numel(), device=indptr.device), lengths)
    if which.numel() == 0:
        return out
    seg_start = torch.cumsum(lengths, 0) - lengths  # offset of each row's segment in `which`
    offset = torch.arange(which.numel(), device=indptr.device) - seg_start[which]
    pos = starts[which] + offset
    out[which, indices[pos]] = 1.0 if values is None else values[pos].to(out.dtype)
    return out


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition`` holds (constructor argument checks)."""
    if not condition:
        raise ConfigError(message)


def is_int(value: Any) -> bool:
    """True for Python/NumPy integers but not booleans."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for finite real numbers (not booleans)."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )
