"""Freed heap memory goes back to the OS: measured on the process's resident set (glibc)."""

from __future__ import annotations

import pytest
import torch

from divrec.evaluation.module import RankingModule
from divrec.utils import memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(memory._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_release_returns_heap_holes_to_the_os() -> None:
    # A freed 16 MB block raises glibc's mmap threshold (up to its 32 MB cap), so the 4 MB
    # tensors below come from the heap; a small tensor kept after each pins the heap above the
    # holes they leave.
    block = torch.ones(4 << 20)  # 16 MB float32
    del block
    big, pins = [], []
    for _ in range(64):
        big.append(torch.ones(1 << 20))  # 4 MB, touched
        pins.append(torch.ones(4096))  # 16 KB, stays
    del big
    held = _rss_bytes()  # glibc keeps the 256 MB of holes resident
    assert memory.release_freed_memory()
    assert held - _rss_bytes() > 128 << 20  # most of them went back
    assert len(pins) == 64


def test_training_and_eval_hooks_release_memory(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr("divrec.evaluation.module.release_freed_memory", lambda: calls.append(1))
    module = RankingModule({"metrics": ["ndcg"], "ks": [10]})
    for step in range(2 * memory.TRIM_EVERY_STEPS + 1):
        module.on_train_batch_end(None, None, step)
    assert len(calls) == 3  # steps 0, TRIM_EVERY_STEPS and 2 * TRIM_EVERY_STEPS
