"""Atomic file writes and content fingerprints shared by data caches and run artefacts.

Every file divrec writes goes to a temporary name in the same folder and is renamed into
place, so a run killed mid-write leaves either the old file or none.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from divrec.errors import DataError


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise disk_error(path, e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as e:
            raise disk_error(path, e) from None
        # mkstemp creates 0600: give the result the mode a plain open() would (0666 & ~umask)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; move it onto ``path`` only on success.

    Readers check ``path.exists()``: a half-built folder never carries the final name. Safe
    between processes: when ``path`` already holds a folder (another writer's complete entry)
    that one wins and this one is dropped, so concurrent writers all succeed. ``replace=True``
    replaces the folder that was at ``path`` when the block started (an entry being rebuilt),
    but still not one another writer put there meanwhile. Damaged cache entries are removed
    first with :func:`discard_dir`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        before = _inode(path) if replace else None
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise disk_error(path, e) from None
    try:
        try:
            yield tmp
        except OSError as e:
            raise disk_error(path, e) from None
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; mkdir would give this
        _commit_dir(tmp, path, before)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def discard_dir(path: str | os.PathLike, inode: int | None = None) -> None:
    """Remove the folder ``path`` atomically (rename aside, then delete); with ``inode``, only
    while ``path`` is still that folder (not a fresh entry another process just wrote)."""
    path = Path(path)
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    try:
        if inode is not None and _inode(path) != inode:
            return
        os.rename(path, trash / "entry")
        if inode is not None and _inode(trash / "entry") != inode:  # lost a race: put it back
            with contextlib.suppress(OSError):
                os.rename(trash / "entry", path)
    except FileNotFoundError:
        pass  # already gone (another process discarded it)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _commit_dir(tmp: Path, path: Path, before: int | None) -> None:
    """Rename ``tmp`` onto ``path``; replace only the folder ``before`` (an inode) if given."""
    for _ in range(100):
        try:
            os.rename(tmp, path)  # atomic; fails on a non-empty folder at ``path``
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise disk_error(path, e) from None
        now = _inode(path)
        if now is None:
            continue  # removed meanwhile: try again
        if now != before:
            return  # another writer's complete entry is there: reuse it
        discard_dir(path, before)
        before = None  # from now on any entry at ``path`` is a concurrent writer's
    raise OSError(f"{path}: could not move the new folder into place")


DISK_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def disk_error(path: str | os.PathLike, exc: OSError) -> OSError | DataError:
    """A one-line DataError for a permission / read-only / full-disk error, else ``exc``."""
    if exc.errno not in DISK_ERRNOS:
        return exc
    what = {
        errno.ENOSPC: "no space left on the device: free space or",
        errno.EDQUOT: "disk quota exceeded: free space or",
    }.get(exc.errno, "the folder is not writable: fix its permissions or")
    return DataError(
        f"{path}: cannot write ({exc.strerror}); {what} point paths.cache_dir / "
        "paths.output_dir (or the file's folder) at a writable place with room"
    )


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: str | os.PathLike, df: Any) -> None:
    """Write a pandas DataFrame to parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def fingerprint(*parts: Any) -> str:
    """Stable short hex digest of JSON-serialisable parts (order matters)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
