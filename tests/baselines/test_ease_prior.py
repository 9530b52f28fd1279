"""EASE with a text prior against a direct per-column solve of its objective."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from divrec.baselines import build_baseline
from divrec.baselines.ease import prior_similarity
from divrec.errors import ConfigError, DataError


def _data(seed: int = 0, users: int = 30, items: int = 12, cold: int = 3):
    rng = np.random.default_rng(seed)
    x = (rng.random((users, items)) < 0.3).astype(np.float64)
    x[:, items - cold :] = 0.0  # the last items have no training interaction
    x[0, 0] = 1.0
    vectors = rng.normal(size=(items, 5))
    return x, vectors


def _prior_brute(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """S [len(rows), N]: clamped cosine, own item 0, per column the k largest (loops)."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    s = np.zeros((len(rows), len(v)))
    for a, i in enumerate(rows):
        for j in range(len(v)):
            s[a, j] = 0.0 if i == j else max(0.0, float(v[i] @ v[j]))
    for j in range(len(v)):
        col = s[:, j]
        if k < len(rows):
            kth = np.sort(col)[::-1][k - 1]
            s[:, j] = np.where(col >= kth, col, 0.0)
    return s


def _direct(x: np.ndarray, s_full: np.ndarray, lam: float, alpha: float) -> np.ndarray:
    """B [N, N]: for each column j, argmin ‖x_j − X b‖² + λ‖b − αs_j‖² with b_j = 0."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        keep = [i for i in range(n) if i != j]
        xk = x[:, keep]
        rhs = xk.T @ x[:, j] + lam * alpha * s_full[keep, j]
        b[keep, j] = np.linalg.solve(xk.T @ xk + lam * np.eye(n - 1), rhs)
    return b


def test_prior_similarity_matches_loops():
    x, vectors = _data()
    rows = np.array([0, 2, 3, 5, 8])
    got = prior_similarity(torch.from_numpy(vectors), torch.from_numpy(rows), k=2)
    assert np.allclose(got.numpy(), _prior_brute(vectors, rows, 2), atol=1e-6)


@pytest.mark.parametrize(("alpha", "k"), [(0.0, 4), (0.3, 4), (1.0, 100)])
def test_closed_form_matches_direct_solve(alpha, k):
    x, vectors = _data()
    lam = 3.0
    model = build_baseline(
        "ease", n_users=x.shape[0], n_items=x.shape[1], l2=lam, text_prior=alpha,
        prior_neighbours=k,
    )  # fmt: skip
    model.fit(sp.csr_matrix(x), item_vectors=torch.from_numpy(vectors).float())
    active = np.flatnonzero(x.sum(0) > 0)
    s_rows = _prior_brute(vectors, active, k)  # [A, N]
    s_full = np.zeros((x.shape[1], x.shape[1]))
    s_full[active] = s_rows  # inactive rows never meet a user's history
    want = _direct(x, s_full, lam, alpha)
    scores = model.score(torch.arange(x.shape[0])).double().numpy()
    assert np.allclose(scores, x @ want, atol=1e-4)
    cold = np.flatnonzero(x.sum(0) == 0)
    if alpha > 0:  # cold items get scores from the text prior alone
        assert np.abs(scores[:, cold]).max() > 1e-3
    else:
        assert np.all(scores[:, cold] == 0.0)


def test_prior_zero_is_plain_ease():
    x, vectors = _data(seed=3)
    plain = build_baseline("ease", n_users=x.shape[0], n_items=x.shape[1], l2=2.0)
    plain.fit(sp.csr_matrix(x))
    off = build_baseline("ease", n_users=x.shape[0], n_items=x.shape[1], l2=2.0, text_prior=0.0)
    off.fit(sp.csr_matrix(x), item_vectors=torch.from_numpy(vectors).float())
    users = torch.arange(x.shape[0])
    assert torch.equal(plain.score(users), off.score(users))


def test_bad_prior_options_and_missing_vectors():
    with pytest.raises(ConfigError, match="text_prior"):
        build_baseline("ease", n_users=2, n_items=2, text_prior=-1.0)
    with pytest.raises(ConfigError, match="prior_neighbours"):
        build_baseline("ease", n_users=2, n_items=2, prior_neighbours=0)
    x, _ = _data()
    model = build_baseline("ease", n_users=x.shape[0], n_items=x.shape[1], text_prior=0.1)
    with pytest.raises(DataError, match="item vectors"):
        model.fit(sp.csr_matrix(x))


def test_checkpoint_without_cols_loads():
    """A state dict saved before the text prior existed (no ``cols``) still scores."""
    x, _ = _data(seed=5)
    model = build_baseline("ease", n_users=x.shape[0], n_items=x.shape[1], l2=2.0)
    model.fit(sp.csr_matrix(x))
    state = {k: v for k, v in model.state_dict().items() if k != "cols"}
    fresh = build_baseline("ease", n_users=x.shape[0], n_items=x.shape[1], l2=2.0)
    fresh.load_state_dict(state)
    users = torch.arange(x.shape[0])
    assert torch.equal(fresh.score(users), model.score(users))


def test_prior_ranks_cold_items_of_the_users_taste_first():
    """Two taste groups: users interact only within their group's warm items; each group also
    has cold items (no interaction). With text vectors that carry the group and every warm item
    of a group among a cold item's neighbours, the prior scores
    every user's own-group cold items above the other group's; plain EASE scores them 0."""
    rng = np.random.default_rng(7)
    n_items, warm = 20, 8  # items 0-9 group 0, 10-19 group 1; in each, the last 2 are cold
    group = np.repeat([0, 1], 10)
    cold = np.array([i % 10 >= warm for i in range(n_items)])
    x = np.zeros((40, n_items))
    for u in range(40):
        g = u % 2
        pool = np.flatnonzero((group == g) & ~cold)
        x[u, rng.choice(pool, size=4, replace=False)] = 1.0
    vectors = np.eye(2)[group] + 0.1 * rng.normal(size=(n_items, 2))
    model = build_baseline(
        "ease", n_users=40, n_items=n_items, l2=5.0, text_prior=0.5, prior_neighbours=8
    )
    model.fit(sp.csr_matrix(x), item_vectors=torch.from_numpy(vectors).float())
    scores = model.score(torch.arange(40)).numpy()
    for u in range(40):
        own = scores[u, cold & (group == u % 2)]
        other = scores[u, cold & (group != u % 2)]
        assert own.min() > other.max()
