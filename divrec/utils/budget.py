"""Memory budget of a dense fit: estimate the peak before allocating, refuse in one line.

A closed-form baseline (EASE's [A, A] inverse, ItemKNN's neighbour lists) states the large
arrays its fit allocates as an :class:`Estimate` (named phases, each the bytes alive at once),
and :func:`check_budget` compares the peak phase with the budget ``max_memory_gb``: ``"auto"``
(what the OS reports available: ``MemAvailable`` on the CPU, free device memory on a GPU) or
a number of GiB. Past the budget it raises one :class:`~divrec.errors.DataError` line naming
the size, the estimate and the options, before anything large is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from divrec.errors import ConfigError, DataError

GIB = 2**30


@dataclass
class Estimate:
    """Bytes alive at once in each phase of a fit, per device kind ("cpu" / "cuda")."""

    phases: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> {device: bytes}

    def add(self, phase: str, nbytes: float, where: str = "cpu") -> None:
        """Count ``nbytes`` as alive during ``phase`` on ``where``."""
        per = self.phases.setdefault(phase, {})
        per[where] = per.get(where, 0) + int(nbytes)

    def peak(self, where: str = "cpu") -> tuple[int, str]:
        """(bytes, phase) of the largest phase on ``where``; (0, "") if none."""
        best = max(self.phases.items(), key=lambda kv: kv[1].get(where, 0), default=None)
        return (best[1].get(where, 0), best[0]) if best else (0, "")


def parse_budget(max_memory_gb: float | str, owner: str) -> float | None:
    """Checked ``max_memory_gb``: None for "auto", else a positive number of GiB."""
    if isinstance(max_memory_gb, str) and max_memory_gb == "auto":
        return None
    ok = isinstance(max_memory_gb, int | float) and not isinstance(max_memory_gb, bool)
    if not ok or not max_memory_gb > 0:
        raise ConfigError(
            f"{owner}: max_memory_gb must be 'auto' or a number of GiB > 0, got {max_memory_gb!r}"
        )
    return float(max_memory_gb)


def available_bytes(where: str = "cpu", device: torch.device | None = None) -> int | None:
    """Memory a fit may still allocate on ``where``: MemAvailable (RAM the kernel can hand
    out without swapping, page cache included) or free CUDA memory; None when unknown."""
    if where == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError, ValueError):
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:  # not Linux and no psutil: no estimate, no refusal
        return None
    return int(psutil.virtual_memory().available)


def check_budget(
    est: Estimate,
    max_memory_gb: float | str,
    what: str,
    options: str,
    device: torch.device | None = None,
) -> None:
    """DataError (one line) when the peak of ``est`` on a device exceeds the budget.

    ``what``: the fit and its size ("EASE: the closed form over 120,000 items"); ``options``:
    what to do instead. A number budget applies to every device; "auto" to each device's own
    available memory (an unknown amount refuses nothing).
    """
    owner = what.split(":")[0]
    budget = parse_budget(max_memory_gb, owner)
    for where in ("cpu", "cuda"):
        need, phase = est.peak(where)
        if need == 0:
            continue
        avail = int(budget * GIB) if budget is not None else available_bytes(where, device)
        if avail is None or need <= avail:
            continue
        source = f"max_memory_gb={budget:g}" if budget is not None else "available"
        name = "RAM" if where == "cpu" else "GPU memory"
        raise DataError(
            f"{what} needs about {need / GIB:.2f} GiB of {name} at its peak ({phase}), "
            f"{avail / GIB:.2f} GiB {source}; {options}"
        )
