"""Memory estimates of the dense baselines: by hand, against the measured peak RSS, the
one-line refusal, and ItemKNN's blocked top-k against a single dense block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import divrec.baselines.itemknn as itemknn_mod
import divrec.utils.budget as budget
from divrec.baselines import EASE, ItemKNN
from divrec.baselines.base import check_train
from divrec.baselines.ease import memory_estimate as ease_estimate
from divrec.config.check import validate_config
from divrec.errors import ConfigError, DataError
from divrec.utils.budget import Estimate, check_budget

CPU = torch.device("cpu")


def random_binary(seed: int, shape: tuple[int, int], density: float) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < density).astype(np.float32)


def test_ease_estimate_by_hand() -> None:
    # 3 users x 4 items, item 3 empty: A = 3, nnz = 5, degrees 2, 2, 1 -> sum deg^2 = 9 = A^2.
    x = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]], np.float32)
    e = ease_estimate(check_train(sp.csr_matrix(x)), np.array([0, 1, 2]), CPU)
    assert e.peak("cpu") == (24 * 5 + 12 * 9 + 8 * 9, "sparse X and XᵀX, dense Gram float64 [A, A]")
    assert e.peak("cuda") == (0, "sparse X and XᵀX, dense Gram float64 [A, A]")
    # Large and sparse: the two float64 [A, A] of the Cholesky phases dominate.
    big = sp.random(50, 1000, density=0.002, format="csr", random_state=0, dtype=np.float32)
    big = check_train(big)
    a = len(np.flatnonzero(np.diff(big.tocsc().indptr)))
    assert ease_estimate(big, np.arange(a), CPU).peak()[0] == 16 * a * a
    # Text prior over N = 1000 columns: S + P.S float64 [A, N] (8 bytes each) + P.
    e = ease_estimate(big, np.arange(a), CPU, prior_cols=1000, prior_dim=8, prior_neighbours=5)
    assert e.peak() == (8 * a * a + 16 * a * 1000, "S + P·S float64 [A, N]")


def _hwm_reset() -> int | None:
    """Reset the peak RSS (Linux clear_refs 5) and return the current RSS, or None."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmRSS")
    except OSError:
        return None


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _measured_peak(fit) -> int:
    """Peak RSS growth during ``fit()`` on one torch thread (no per-thread scratch)."""
    start = _hwm_reset()
    if start is None:
        pytest.skip("peak RSS cannot be reset here (/proc/self/clear_refs)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit()
    finally:
        torch.set_num_threads(threads)
    return _status("VmHWM") - start


@pytest.mark.parametrize("prior", [False, True])
def test_ease_estimate_matches_measured_peak(prior: bool) -> None:
    """Every large array is > 32 MB, so glibc maps it fresh and the peak RSS sees it."""
    n_items, n_users = (2500, 1500) if not prior else (7000, 1500)
    x = random_binary(0, (n_users, n_items), 0.01)
    if prior:
        x[:, 1000:] = 0  # A = 1000 active items, N = 7000 columns: [A, N] dominates
    csr = sp.csr_matrix(x)
    vecs = torch.randn(n_items, 16) if prior else None
    model = EASE(l2=10.0, text_prior=0.5 if prior else 0.0, prior_neighbours=10)
    active = np.flatnonzero(x.sum(0))
    est = ease_estimate(check_train(csr), active, CPU, n_items if prior else 0, 16, 10)
    measured = _measured_peak(lambda: model.fit(csr, vecs) if prior else model.fit(csr))
    need = est.peak()[0]
    assert 0.6 * need < measured < 1.5 * need, (measured / 2**20, need / 2**20)


def test_itemknn_estimate_bounds_measured_peak() -> None:
    x = sp.csr_matrix(random_binary(1, (1500, 4000), 0.02))
    model = ItemKNN(k=1000)
    est = itemknn_mod.memory_estimate(check_train(x), 4000, 1000, CPU).peak()[0]
    measured = _measured_peak(lambda: model.fit(x))
    assert 0.3 * est < measured < 1.2 * est, (measured / 2**20, est / 2**20)


@pytest.mark.parametrize("cls", [EASE, ItemKNN])
def test_refusal_is_one_line_naming_size_estimate_and_options(cls, monkeypatch) -> None:
    x = sp.csr_matrix(random_binary(2, (40, 12), 0.3))
    with pytest.raises(DataError) as err:
        cls(max_memory_gb=1e-9).fit(x)
    msg = str(err.value)
    assert "\n" not in msg and "12 items" in msg and "GiB" in msg
    assert "max_memory_gb=1e-09" in msg and "model.options.max_memory_gb" in msg
    monkeypatch.setattr(budget, "available_bytes", lambda *a, **k: 100)
    with pytest.raises(DataError, match=r"0\.00 GiB available"):
        cls().fit(x)  # "auto": what the OS reports
    monkeypatch.setattr(budget, "available_bytes", lambda *a, **k: None)
    cls().fit(x)  # unknown memory: no refusal
    cls(max_memory_gb=1).fit(x)  # a budget that fits


@pytest.mark.parametrize("bad", ["lots", 0, -1.0, True])
def test_bad_budget_is_a_config_error(bad) -> None:
    with pytest.raises(ConfigError, match="max_memory_gb must be 'auto' or a number"):
        EASE(max_memory_gb=bad)


def test_budget_applies_per_device() -> None:
    e = Estimate()
    e.add("host part", 3 * 2**30)
    e.add("device part", 5 * 2**30, "cuda")
    check_budget(e, 5, "X: y", "z")
    with pytest.raises(DataError, match=r"X: y needs about 5\.00 GiB of GPU memory .*; z$"):
        check_budget(e, 4, "X: y", "z")


def test_available_bytes_reads_meminfo() -> None:
    avail = budget.available_bytes()
    if not Path("/proc/meminfo").is_file():
        pytest.skip("no /proc/meminfo")
    total = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in ln)
    assert 0 < avail <= int(total.split()[1]) * 1024


def test_budget_key_passes_the_config_check() -> None:
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(str(conf), version_base=None):
        for value in ("auto", "2.5"):
            over = ["paths.output_dir=/tmp/x", "model=ease", f"model.options.max_memory_gb={value}"]
            validate_config(compose("train", over))


@pytest.mark.parametrize("rows_per_block", [1, 3, 7])
def test_itemknn_blocked_top_k_equals_one_dense_block(rows_per_block: int, monkeypatch) -> None:
    """Blocks of a few target items (ragged last block) give the neighbour lists of the
    whole [A, A] similarity at once, and scores equal a dense numpy reference."""
    x = random_binary(3, (60, 20), 0.25)
    x[:, [4, 11]] = 0
    csr = sp.csr_matrix(x)
    dense = ItemKNN(k=4, shrink=0.5)
    dense.fit(csr)
    n_active = 18
    monkeypatch.setattr(itemknn_mod, "_BLOCK_ELEMENTS", rows_per_block * n_active)
    assert itemknn_mod.block_rows(n_active) == rows_per_block
    blocked = ItemKNN(k=4, shrink=0.5)
    blocked.fit(csr)
    assert torch.equal(blocked.knn_idx, dense.knn_idx)
    assert torch.equal(blocked.knn_sim, dense.knn_sim)
    # Reference: full cosine matrix with numpy, top-4 per target column (ties: lower index).
    norms = np.sqrt(x.sum(0))
    sim = (x.T @ x) / (np.outer(norms, norms) + 0.5)
    np.fill_diagonal(sim, 0.0)
    w = np.zeros_like(sim)
    for j in range(20):
        keep = sorted(range(20), key=lambda i: (-sim[i, j], i))[:4]
        w[keep, j] = sim[keep, j]
    np.testing.assert_allclose(blocked.score(torch.arange(60)).numpy(), x @ w, rtol=1e-5, atol=1e-6)
