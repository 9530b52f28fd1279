"""Concurrent writers of one cache entry (processes released together behind a barrier): all
succeed, the entry is one writer's complete folder, and no temporary folder is left behind."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from divrec.utils.io import atomic_dir, discard_dir

TRIALS = 50
PARTS = 4


def _complete(path: Path) -> bool:
    """One writer's whole entry (a reader racing a discard sees it vanish: not complete)."""
    try:
        parts = {(path / f"part{j}").read_text() for j in range(PARTS)}
        return len(parts) == 1 and len(list(path.iterdir())) == PARTS
    except FileNotFoundError:
        return False


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _writer(root: str, barrier, errors) -> None:
    """Each trial: heal a damaged entry ``root/e<i>`` if any, write it, read it back."""
    try:
        for i in range(TRIALS):
            path = Path(root) / f"e{i}"
            barrier.wait(timeout=10)
            inode = _inode(path)
            if inode is not None and not _complete(path):  # a cache's self-heal
                discard_dir(path, inode)
            if not path.exists():
                with atomic_dir(path) as tmp:
                    for j in range(PARTS):  # several files: a half-built entry would show
                        (tmp / f"part{j}").write_text(str(os.getpid()))
            if not _complete(path):
                errors.put(f"trial {i}: incomplete entry {sorted(os.listdir(path))}")
    except BaseException as e:  # noqa: BLE001 - report every failure to the parent
        errors.put(f"{type(e).__name__}: {e}")


@pytest.mark.parametrize("stale", [False, True], ids=["empty-cache", "damaged-entry"])
@pytest.mark.parametrize("n_proc", [2, 4])
def test_concurrent_writers_of_one_cache_entry_all_succeed(tmp_path, n_proc, stale):
    if stale:  # a damaged entry from an earlier job: healed once, by one of the writers
        for i in range(TRIALS):
            (tmp_path / f"e{i}").mkdir()
            (tmp_path / f"e{i}" / "part0").write_text("damaged")
    ctx = mp.get_context("fork")
    barrier, errors = ctx.Barrier(n_proc), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path), barrier, errors)) for _ in range(n_proc)
    ]
    t0 = time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, found[:5]
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    pids = {str(p.pid) for p in procs}
    for i in range(TRIALS):
        assert _complete(tmp_path / f"e{i}"), i
        assert (tmp_path / f"e{i}" / "part0").read_text() in pids
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "temp left"
    assert time.time() - t0 < 60


def test_replace_rebuilds_the_entry_that_was_there(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "old").write_text("x")
    with atomic_dir(tmp_path / "e", replace=True) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(os.listdir(tmp_path / "e")) == ["new"]
    with atomic_dir(tmp_path / "e") as tmp:  # no replace: the complete entry there wins
        (tmp / "other").write_text("z")
    assert sorted(os.listdir(tmp_path / "e")) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["e"]
