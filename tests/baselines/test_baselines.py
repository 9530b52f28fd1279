"""Baselines against independent references: manual counts, numpy closed forms, brute-force
cosine loops, dense-matrix propagation, and a block-structured toy problem for the trained ones.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset

from divrec.baselines import BPR, EASE, ItemKNN, LightGCN, Pop, build_baseline
from divrec.baselines.itemknn import neighbours
from divrec.errors import ConfigError, DataError


def random_binary(seed: int, shape: tuple[int, int], density: float) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < density).astype(np.float32)


def block_matrix() -> tuple[np.ndarray, np.ndarray]:
    """20 users x 20 items: users 0-9 like items 0-9, users 10-19 like items 10-19.

    Each user hides 4 in-group items from training ((u + t) % 10 for t = 0..3), so every item
    is still seen by 6 users of its group. Returns (train, held_out) 0/1 matrices.
    """
    train = np.zeros((20, 20), dtype=np.float32)
    held = np.zeros_like(train)
    for u in range(20):
        g = 10 * (u // 10)
        for t in range(10):
            (held if t < 4 else train)[u, g + (u + t) % 10] = 1.0
    return train, held


def ranks_block_correctly(scores: np.ndarray, train: np.ndarray, held: np.ndarray) -> float:
    """Fraction of users whose every held-out in-group item outscores every out-group item."""
    ok = 0
    for u in range(scores.shape[0]):
        g = u // 10
        out_group = [i for i in range(20) if i // 10 != g]
        held_items = np.flatnonzero(held[u])
        ok += scores[u, held_items].min() > scores[u, out_group].max()
    return ok / scores.shape[0]


# --------------------------------------------------------------------------------- Pop


def test_pop_counts_every_interaction() -> None:
    x = random_binary(1, (15, 7), 0.4)
    manual = [sum(x[u, i] for u in range(15)) for i in range(7)]
    model = Pop()
    model.fit(sp.csr_matrix(x))
    scores = model.score(torch.tensor([0, 3, 3]))
    assert scores.shape == (3, 7)
    for row in scores:
        assert row.tolist() == manual


def test_pop_counts_hand_example() -> None:
    # item 0: users 0,1,2 -> 3; item 1: user 1 -> 1; item 2: nobody -> 0
    x = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=np.float32))
    model = Pop()
    model.fit(x)
    assert model.score(torch.tensor([2])).tolist() == [[3.0, 1.0, 0.0]]


# -------------------------------------------------------------------------------- EASE


def test_ease_matches_numpy_closed_form() -> None:
    x = random_binary(2, (25, 9), 0.35)
    l2 = 3.0
    g = x.T.astype(np.float64) @ x + l2 * np.eye(9)
    p = np.linalg.inv(g)
    b_ref = -p / np.diag(p)[None, :]
    np.fill_diagonal(b_ref, 0.0)
    model = EASE(l2=l2)
    model.fit(sp.csr_matrix(x))
    assert model.active.tolist() == list(range(9))  # every item has interactions here
    np.testing.assert_allclose(model.weights.numpy(), b_ref, rtol=1e-5, atol=1e-6)
    assert np.all(np.diag(model.weights.numpy()) == 0.0)
    users = torch.tensor([0, 4, 24, 4])
    scores = model.score(users)
    assert scores.shape == (4, 9)
    np.testing.assert_allclose(scores.numpy(), x[users.numpy()] @ b_ref, rtol=1e-5, atol=1e-5)


def test_ease_items_without_interactions_match_the_full_closed_form() -> None:
    """The solve skips items nobody interacted with; the scores are the full solve's."""
    x = random_binary(3, (30, 12), 0.3)
    x[:, [2, 7, 11]] = 0  # three items with no training interaction
    l2 = 2.0
    p = np.linalg.inv(x.T.astype(np.float64) @ x + l2 * np.eye(12))
    b_ref = -p / np.diag(p)[None, :]
    np.fill_diagonal(b_ref, 0.0)
    model = EASE(l2=l2)
    model.fit(sp.csr_matrix(x))
    assert model.weights.shape == (9, 9) and 2 not in model.active.tolist()
    users = torch.arange(30)
    scores = model.score(users).numpy()
    np.testing.assert_allclose(scores, x @ b_ref, rtol=1e-5, atol=1e-5)
    assert np.all(scores[:, [2, 7, 11]] == 0.0)
    fresh = EASE(l2=l2)
    fresh.load_state_dict(model.state_dict())  # the active set travels with the weights
    np.testing.assert_allclose(fresh.score(users).numpy(), scores, rtol=1e-6, atol=1e-7)


def test_ease_matches_dense_inverse_with_empty_items_and_users() -> None:
    """Against dense np.linalg.inv over all N items on a larger random matrix: inactive
    items (first, last, a run in the middle) and users without any interaction."""
    x = random_binary(11, (60, 40), 0.15)
    x[:, [0, 17, 18, 19, 39]] = 0
    x[[3, 44], :] = 0
    l2 = 7.5
    p = np.linalg.inv(x.T.astype(np.float64) @ x + l2 * np.eye(40))
    b_ref = -p / np.diag(p)[None, :]
    np.fill_diagonal(b_ref, 0.0)
    model = EASE(l2=l2)
    model.fit(sp.csr_matrix(x))
    scores = model.score(torch.arange(60)).numpy()
    np.testing.assert_allclose(scores, x @ b_ref, rtol=1e-5, atol=1e-6)
    assert np.all(scores[[3, 44]] == 0.0) and np.all(scores[:, [0, 17, 18, 19, 39]] == 0.0)


def test_ease_refuses_a_solve_that_cannot_fit_in_memory(monkeypatch) -> None:
    import divrec.utils.budget as budget

    monkeypatch.setattr(budget, "available_bytes", lambda *a, **k: 0)
    with pytest.raises(DataError, match=r"EASE: the closed form over 9 items needs about"):
        EASE(l2=1.0).fit(sp.csr_matrix(random_binary(2, (25, 9), 0.35)))


# ------------------------------------------------------------------------------ ItemKNN


def brute_force_knn(x: np.ndarray, k: int, shrink: float) -> np.ndarray:
    """W[i, j] = sim(i, j) for the k most similar i of each j (ties: lower i), else 0."""
    n_users, n_items = x.shape
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i == j:
                continue
            dot = sum(x[u, i] * x[u, j] for u in range(n_users))
            ni = math.sqrt(sum(x[u, i] ** 2 for u in range(n_users)))
            nj = math.sqrt(sum(x[u, j] ** 2 for u in range(n_users)))
            den = ni * nj + shrink
            sim[i, j] = dot / den if den > 0 else 0.0
    w = np.zeros_like(sim)
    for j in range(n_items):
        order = sorted(range(n_items), key=lambda i: (-sim[i, j], i))
        for i in order[:k]:
            w[i, j] = sim[i, j]
    return w, sim


def boundary_is_unambiguous(sim: np.ndarray, k: int) -> bool:
    """True when no column has distinct-index near-ties straddling the k-th place."""
    for j in range(sim.shape[1]):
        s = np.sort(np.delete(sim[:, j], j))[::-1]
        if k < len(s) and s[k - 1] > 0 and s[k - 1] - s[k] < 1e-6:
            return False
    return True


@pytest.mark.parametrize(
    ("k", "shrink", "empty"),
    [(3, 0.0, []), (2, 1.5, []), (50, 0.0, []), (2, 0.0, [0, 5, 9]), (4, 0.5, [0, 5, 9])],
)
def test_itemknn_matches_brute_force(k: int, shrink: float, empty: list[int]) -> None:
    """Scores are the brute force over all N items; ``empty`` items have no training
    interaction (fit skips them: they score 0 and, with sim 0, are nobody's neighbour).
    k = 50 > N keeps everything."""
    # Pick the first seed whose top-k boundaries hold no near-ties (the set kept is then
    # defined independently of float rounding).
    for seed in range(200):
        x = random_binary(seed, (30, 10), 0.3)
        x[:, empty] = 0
        w_ref, sim = brute_force_knn(x, k, shrink)
        if boundary_is_unambiguous(sim, k):
            break
    else:
        pytest.fail("no tie-free matrix found")
    model = ItemKNN(k=k, shrink=shrink)
    model.fit(sp.csr_matrix(x))
    users = torch.arange(30)
    scores = model.score(users).numpy()
    assert scores.shape == (30, 10)
    np.testing.assert_allclose(scores, x @ w_ref, rtol=1e-5, atol=1e-6)
    assert np.all(scores[:, empty] == 0.0)
    fresh = ItemKNN(k=k, shrink=shrink)
    fresh.load_state_dict(model.state_dict())  # an unfitted module restores the fitted one
    np.testing.assert_array_equal(fresh.score(users).numpy(), scores)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_selection_breaks_ties_by_lower_index(k: int) -> None:
    # Small integers make ties everywhere; reference: Python sort by (-value, row index).
    sim = torch.from_numpy(np.random.default_rng(5).integers(0, 4, (7, 6)).astype(np.float32))
    idx, vals = neighbours(sim.T, k)  # rows of sim.T are columns of sim
    assert idx.shape == vals.shape == (6, k)
    for j in range(6):
        col = sim[:, j].tolist()
        expected = sorted(sorted(range(7), key=lambda i: (-col[i], i))[:k])
        assert idx[j].tolist() == expected
        assert vals[j].tolist() == [col[i] for i in expected]


def test_itemknn_ties_go_to_lower_index_and_empty_items_are_zero() -> None:
    # item 2 = users {0, 1}; item 0 = users {0, 2}; item 1 = users {1, 3}; item 3 = nobody.
    # sim(0, 2) = 1 / (sqrt2 * sqrt2) = 0.5 = sim(1, 2): with k = 1 item 2 keeps item 0.
    # sim(0, 1) = 0, and item 3 has zero norm -> all its similarities are 0 (no NaN).
    x = np.zeros((4, 4), dtype=np.float32)
    x[[0, 1], 2] = 1
    x[[0, 2], 0] = 1
    x[[1, 3], 1] = 1
    model = ItemKNN(k=1)
    model.fit(sp.csr_matrix(x))
    scores = model.score(torch.tensor([2, 3]))
    # user 2 history {0}: score(2) = sim(0, 2) = 0.5; user 3 history {1}: item 1 was not kept.
    assert scores[0, 2].item() == pytest.approx(0.5)
    assert scores[1, 2].item() == 0.0
    assert torch.isfinite(scores).all() and scores[:, 3].eq(0).all()


# --------------------------------------------------------------------- BPR / LightGCN


def train_manually(model: BPR | LightGCN, train: np.ndarray, steps: int, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model.fit(sp.csr_matrix(train))
    users, items = (torch.from_numpy(a.astype(np.int64)) for a in np.nonzero(train))
    opt = model.configure_optimizers()
    model.train()
    for step in range(steps):
        opt.zero_grad()
        loss = model.training_step({"user_idx": users, "item_idx": items}, step)
        loss.backward()
        opt.step()


def test_bpr_learns_block_structure() -> None:
    train, held = block_matrix()
    torch.manual_seed(0)
    # Held-out items are (filtered) negatives during training, so unregularised MF memorises
    # them away; weight decay keeps it to the low-rank block structure.
    model = BPR(20, 20, dim=8, lr=0.05, weight_decay=1e-2)
    before = ranks_block_correctly(model.score(torch.arange(20)).numpy(), train, held)
    train_manually(model, train, steps=150)
    model.eval()
    scores = model.score(torch.arange(20))
    assert scores.shape == (20, 20)
    after = ranks_block_correctly(scores.numpy(), train, held)
    assert after >= 0.9 > before


def test_lightgcn_learns_block_structure() -> None:
    train, held = block_matrix()
    torch.manual_seed(0)
    model = LightGCN(20, 20, dim=16, layers=2, lr=0.05, reg=1e-4)
    train_manually(model, train, steps=150)
    model.eval()
    scores = model.score(torch.tensor([3, 15, 0]))
    assert scores.shape == (3, 20)
    assert ranks_block_correctly(model.score(torch.arange(20)).numpy(), train, held) >= 0.9


def test_lightgcn_propagation_matches_dense_reference() -> None:
    x = random_binary(3, (6, 5), 0.4)
    x[:, 4] = 0  # an item nobody interacted with: degree 0, stays at its own embedding / 3
    model = LightGCN(6, 5, dim=4, layers=2)
    model.fit(sp.csr_matrix(x))
    a = np.zeros((11, 11))
    a[:6, 6:] = x
    a[6:, :6] = x.T
    deg = a.sum(1)
    d = np.array([1 / math.sqrt(v) if v > 0 else 0.0 for v in deg])
    a_hat = d[:, None] * a * d[None, :]
    e0 = model.embedding.weight.detach().numpy().astype(np.float64)
    final = (e0 + a_hat @ e0 + a_hat @ a_hat @ e0) / 3
    np.testing.assert_allclose(model.propagate().detach().numpy(), final, atol=1e-5)
    scores = model.score(torch.tensor([1, 5]))
    np.testing.assert_allclose(scores.numpy(), final[[1, 5]] @ final[6:].T, atol=1e-5)


def test_negatives_are_uniform_over_non_positives() -> None:
    x = np.zeros((3, 6), dtype=np.float32)
    x[0, [0, 2, 4]] = 1  # user 0 may only get 1, 3, 5
    x[1, [0, 1, 2, 3, 4]] = 1  # user 1 may only get 5
    x[2, :] = 1  # user 2 saw everything: falls back to uniform over all items
    model = BPR(3, 6)
    model.fit(sp.csr_matrix(x))
    torch.manual_seed(0)
    neg = model.sample_negatives(torch.tensor([0, 1, 2]), 3000)
    assert neg.shape == (3, 3000)
    counts0 = np.bincount(neg[0].numpy(), minlength=6)
    assert counts0[[0, 2, 4]].sum() == 0 and counts0[[1, 3, 5]].min() > 850  # ~1000 each
    assert set(neg[1].tolist()) == {5}
    assert np.bincount(neg[2].numpy(), minlength=6).min() > 400  # ~500 each


class _Pairs(Dataset):
    def __init__(self, train: np.ndarray) -> None:
        self.users, self.items = np.nonzero(train)

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, i: int) -> dict[str, int]:
        return {"user_idx": int(self.users[i]), "item_idx": int(self.items[i])}


@pytest.mark.parametrize("name", ["bpr", "lightgcn"])
def test_lightning_trainer_and_checkpoint_roundtrip(name: str, tmp_path) -> None:
    train, _ = block_matrix()
    model = build_baseline(name, 20, 20, dim=8)
    assert model.needs_training and isinstance(model, pl.LightningModule)
    model.fit(sp.csr_matrix(train))
    before = model.score(torch.arange(20)).clone()
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(_Pairs(train), batch_size=32, shuffle=True))
    after = model.score(torch.arange(20))
    assert not torch.allclose(before, after)  # the optimiser moved the embeddings
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = type(model).load_from_checkpoint(tmp_path / "m.ckpt")
    torch.testing.assert_close(loaded.score(torch.arange(20)), after)
    neg = loaded.sample_negatives(torch.arange(20), 5)  # fit-time buffers came back too
    assert train[np.arange(20)[:, None], neg.numpy()].sum() == 0


# -------------------------------------------------------------- state dicts, factory


@pytest.mark.parametrize("name", ["pop", "itemknn", "ease", "bpr", "lightgcn", "buy_again"])
def test_state_dict_restores_fitted_model(name: str) -> None:
    x = sp.csr_matrix(random_binary(4, (12, 8), 0.4))
    model = build_baseline(name, 12, 8)
    model.fit(x)
    fresh = build_baseline(name, 12, 8)
    fresh.load_state_dict(model.state_dict())
    users = torch.tensor([0, 5, 11])
    out = fresh.score(users)
    assert out.shape == (3, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out, model.score(users))


def test_build_baseline_errors() -> None:
    with pytest.raises(ConfigError, match="allowed: pop, itemknn, ease, bpr, lightgcn, buy_again"):
        build_baseline("knn", 3, 4)
    with pytest.raises(ConfigError, match="unknown option.*lamda.*allowed: l2"):
        build_baseline("ease", 3, 4, lamda=1.0)
    with pytest.raises(ConfigError, match="allowed: k, shrink"):
        build_baseline("itemknn", 3, 4, topk=5)
    with pytest.raises(ConfigError, match="allowed: dim, lr, weight_decay, n_negatives"):
        build_baseline("bpr", 3, 4, epochs=2)
    with pytest.raises(ConfigError, match="k must be"):
        build_baseline("itemknn", 3, 4, k=0)
    with pytest.raises(ConfigError, match="l2 must be"):
        build_baseline("ease", 3, 4, l2=-1.0)
    with pytest.raises(ConfigError, match="n_users and n_items"):
        build_baseline("pop", 0, 4)
    assert isinstance(build_baseline("Pop", 3, 4), Pop)


def test_fit_rejects_bad_matrices() -> None:
    model = build_baseline("ease", 3, 4)
    with pytest.raises(DataError, match="does not match"):
        model.fit(sp.csr_matrix(np.ones((3, 5), dtype=np.float32)))
    with pytest.raises(DataError, match="scipy.sparse"):
        model.fit(np.ones((3, 4), dtype=np.float32))
    with pytest.raises(DataError, match="no interactions"):
        model.fit(sp.csr_matrix((3, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="call fit"):
        model.score(torch.tensor([0]))
