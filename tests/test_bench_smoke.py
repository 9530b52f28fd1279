"""Smoke test of ``make bench`` (experiments/benchmarks/run.py): every row function runs at toy
sizes on the tiny BERT and returns well-formed rows. No timing assertions: speed is what the
benchmark itself reports."""

from __future__ import annotations

import math

import pytest

from experiments.benchmarks import run
from experiments.benchmarks.readme import COLUMNS, format_table, write_readme


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as ``make bench`` uses (shared cores make 2-thread steps crawl)."""
    before = run.torch.get_num_threads()
    run.torch.set_num_threads(1)
    yield
    run.torch.set_num_threads(before)


@pytest.fixture
def sizes(tiny_model_dir, shared_cache, tmp_path) -> run.Sizes:
    return run.Sizes.toy(tiny_model_dir, str(shared_cache), str(tmp_path / "out"))


def _check(rows: list[run.Row], n: int) -> None:
    assert len(rows) == n
    for r in rows:
        assert isinstance(r, run.Row)
        assert r.name and isinstance(r.name, str)
        assert r.divrec not in ("", "failed"), r
        assert isinstance(r.reference, str) and isinstance(r.note, str)
        if r.ratio is not None:
            assert math.isfinite(r.ratio) and r.ratio > 0, r
        if r.target is not None:
            assert r.target > 0 and r.met in (True, False)
        else:
            assert r.met is None


def test_training_eval_and_cache_rows(sizes):
    setup = run.frozen_setup(sizes, "cpu")
    assert setup.module.net.frozen  # the default model: frozen backbone + cached vectors
    frozen = run.frozen_training_rows(sizes, "cpu", setup)
    _check(frozen, 1)
    assert frozen[0].target == 0.9 and "pairs/s" in frozen[0].divrec

    evals = run.eval_rows(sizes, "cpu", setup)
    _check(evals, 1)
    assert "users/s" in evals[0].divrec and evals[0].ratio is None
    assert "80 users" in evals[0].note  # toy shop_sim: every user has validation items

    cache = run.cache_rows(sizes, "cpu", setup)
    _check(cache, 1)
    assert "s/epoch" in cache[0].divrec and cache[0].ratio is not None
    assert setup.module.net.frozen  # the uncached pass restores the flag


def test_fine_tuning_and_mfu_rows(sizes):
    rows = run.encoder_training_rows(sizes, "cpu")
    _check(rows, 2)
    assert [r.target for r in rows] == [0.9, 1.0]
    assert "sentence-transformers" in rows[1].name and "MNRL" in rows[1].reference
    mfu = run.mfu_rows(sizes, "cpu")
    _check(mfu, 1)
    assert 0 < mfu[0].ratio < 100  # achieved / measured matmul rate


def test_rerank_rows_at_toy_shape(monkeypatch):
    from experiments.benchmarks import bench_rerank as br

    for name, value in dict(N_ITEMS=300, DIM=16, N_USERS=8, CANDIDATES=40, N_SEEN=5).items():
        monkeypatch.setattr(br, name, value)
    rows = run.rerank_rows("cpu")
    _check(rows, 2)
    assert [r.name.split()[1] for r in rows] == ["MMR", "DPP"]
    assert all("agree" in r.note for r in rows)


def test_gpu_row_without_gpu(sizes, monkeypatch):
    monkeypatch.setattr(run.torch.cuda, "is_available", lambda: False)
    rows = run.gpu_rows(sizes)
    assert len(rows) == 1 and "no GPU here" in rows[0].note


def test_failed_job_becomes_a_row():
    def boom() -> list[run.Row]:
        raise RuntimeError("broken\nsecond line")

    (row,) = run._safe("x", boom)
    assert row.divrec == "failed" and row.note == "RuntimeError: broken"


def test_table_and_readme(sizes, tmp_path):
    rows = [
        run.Row("a", "10 pairs/s", "20 pairs/s", 0.5, 0.9, "n"),
        run.Row("b", "3 users/s"),
    ]
    table = format_table(rows).splitlines()
    assert len(table) == 4  # header, rule, two rows
    assert table[0].split() == list(COLUMNS)
    assert "0.50x" in table[2] and "UNDER" in table[2]  # 0.5 < 0.9
    assert table[3].split()[1:] == ["3", "users/s", "-", "-", "-"]
    path = tmp_path / "README.md"
    write_readme(path, rows, sizes, {"wall_s": 12.0, "load": ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0))})
    text = path.read_text()
    for heading in (
        "## Machine",
        "## Versions",
        "## Results",
        "## Under target",
        "## What each row measures",
    ):
        assert heading in text
    assert "| a | 10 pairs/s | 20 pairs/s | 0.50x | >= 0.9x UNDER | n |" in text
    assert "- **a**: 0.50x (target 0.9x)" in text
    assert "load average at start / end: 1.0 / 2.0" in text
    assert list(tmp_path.glob(".README.md.*")) == []  # atomic write left no temporary file


def test_latency_rows(sizes):
    """The budgets that used to be wall-clock asserts in tests are bench rows now."""
    rows = run.latency_rows(sizes, "cpu")
    _check(rows, 2)
    assert [r.target for r in rows] == [1.0, 1.0]
    assert rows[0].divrec.endswith(" s") and rows[1].divrec.endswith(" ms")
