"""Claim one GPU for one job with a per-GPU lock file, so parallel sweep jobs never share a GPU.

``claim_gpu`` takes an exclusive, non-blocking ``fcntl.flock`` on ``lock_dir/gpu{i}.lock`` for
the first free ``i`` and polls while every GPU is taken. The lock belongs to the open file, so
it is released by ``GpuClaim.release()`` / leaving the ``with`` block, and by the kernel when the
process dies (a crashed job never leaves a GPU claimed). Jobs of any length share the pool fairly:
a GPU is free again the moment its job ends, unlike a fixed ``job_num % n_gpus`` assignment.

Locks are advisory and local to one machine (``flock`` on NFS is not reliable): keep
``lock_dir`` on a local disk. Two sweeps on one machine that use the same ``lock_dir`` share
the GPUs correctly.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from pathlib import Path
from types import TracebackType

from divrec.errors import ConfigError

FAKE_GPUS_ENV = "DIVREC_FAKE_GPUS"


def gpu_count() -> int:
    """Number of usable GPUs: ``$DIVREC_FAKE_GPUS`` when set (tests), else
    ``torch.cuda.device_count()``."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        try:
            n = int(fake)
        except ValueError:
            raise ConfigError(f"{FAKE_GPUS_ENV}={fake!r}: expected an integer >= 0") from None
        if n < 0:
            raise ConfigError(f"{FAKE_GPUS_ENV}={fake!r}: expected an integer >= 0")
        return n
    import torch

    return torch.cuda.device_count()


def default_lock_dir() -> str:
    """A per-user folder on the local temp disk, shared by every sweep of this user."""
    return str(Path(tempfile.gettempdir()) / f"divrec-gpu-locks-{os.getuid()}")


class GpuClaim:
    """An exclusive claim on GPU ``index``; a context manager that releases on exit."""

    def __init__(self, index: int, path: Path, fd: int) -> None:
        self.index = index
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock and close; idempotent. ``LOCK_UN`` also frees the lock for forked children
        (e.g. DataLoader workers) that inherited the descriptor."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> GpuClaim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:  # a dropped claim must not keep its GPU
        try:
            self.release()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"GpuClaim(index={self.index}, path='{self.path}', held={self.held})"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another holder has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    # who holds it, for people looking at the folder (the lock itself is the flock)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid={os.getpid()} since={time.time():.3f}\n".encode())
    return fd


def claim_gpu(
    n_devices: int,
    lock_dir: str,
    timeout: float | None = None,
    poll: float = 0.5,
) -> GpuClaim:
    """Claim the first free GPU among ``0 .. n_devices-1``; wait (polling every ``poll`` s)
    while all are claimed. ``timeout``: seconds before giving up with ``TimeoutError``
    (None: wait forever). Use as ``with claim_gpu(...) as claim: ... claim.index``."""
    if n_devices < 1:
        raise ConfigError(f"claim_gpu: n_devices={n_devices}; need at least one GPU to claim")
    folder = Path(lock_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"hydra.launcher.lock_dir: cannot create '{folder}': {e}") from None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for i in range(n_devices):
            path = folder / f"gpu{i}.lock"
            fd = _try_lock(path)
            if fd is not None:
                return GpuClaim(i, path, fd)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"no free GPU among {n_devices} after {timeout} s (locks in '{folder}')"
            )
        time.sleep(poll)
