"""Freed heap memory goes back to the OS: measured on the process's resident set (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from divrec.evaluation.module import RankingModule
from divrec.utils import memory

SCENARIO = """
import torch
from divrec.utils import memory

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

block = torch.ones(4 << 20)  # a freed 16 MB block raises glibc's mmap threshold,
del block  # so the 4 MB tensors below come from the heap
big, pins = [], []
for _ in range(64):
    big.append(torch.ones(1 << 20))  # 4 MB, touched
    pins.append(torch.ones(4096))  # 16 KB, stays: pins the heap above the 4 MB holes
before = rss()
del big
kept = rss()
released = memory.release_freed_memory()
print(before, kept, rss(), released)
"""


@pytest.mark.skipif(memory._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_release_returns_heap_holes_to_the_os() -> None:
    # A fresh process: the allocator state of this one depends on the tests before.
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, check=True, timeout=120
    )
    before, kept, after, released = out.stdout.split()
    mb = 1 << 20
    assert int(before) - int(kept) < 64 * mb  # glibc keeps the 256 MB of holes resident
    assert released == "True" and int(kept) - int(after) > 192 * mb  # trimmed: most go back


def test_training_and_eval_hooks_release_memory(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr("divrec.evaluation.module.release_freed_memory", lambda: calls.append(1))
    module = RankingModule({"metrics": ["ndcg"], "ks": [10]})
    for step in range(2 * memory.TRIM_EVERY_STEPS + 1):
        module.on_train_batch_end(None, None, step)
    assert len(calls) == 3  # steps 0, TRIM_EVERY_STEPS and 2 * TRIM_EVERY_STEPS
