"""Refuse Hydra multiruns that would re-run the whole sweep in every DDP child process.

Lightning's ``ddp`` strategy (and ``fsdp``, ``deepspeed``, and ``strategy=auto`` with more than
one device) starts its extra processes by re-executing ``sys.argv``. Inside ``python train.py
-m a=1,2`` that command line contains ``-m`` and the sweep, so every child starts the sweep
again (Lightning #11300, #15689, #18175). ``ddp_spawn`` / ``ddp_fork`` start children without
re-executing the script, so the guard lets them through (but they test in copies of the module:
the parent gets no ``recommendations``); processes created by SLURM (one task per device) or
torchrun are safe too, because Lightning then starts no processes itself.

A child re-launched by Lightning has the environment variable ``LOCAL_RANK`` set (1, 2, ...);
rank 0 is the original process, where ``LOCAL_RANK`` is unset (or "0" under torchrun/SLURM).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from divrec.errors import ConfigError

# Strategies whose extra processes are started without re-running sys.argv.
SAFE_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")
# Strategies (and prefixes of their registered variants) that re-run sys.argv.
RELAUNCHING_PREFIXES = ("ddp", "fsdp", "deepspeed")


def local_rank() -> int | None:
    """``LOCAL_RANK`` from the environment, or None when this process was not launched as a
    distributed rank."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value not in (None, "") else None


def is_ddp_child() -> bool:
    """True in a process re-launched by Lightning's DDP launcher (or any rank > 0 on a node):
    such a process must not repeat one-off work (printing, sweeps, writing shared files)."""
    rank = local_rank()
    return rank is not None and rank > 0


def processes_created_externally() -> bool:
    """True when SLURM (one task per device, not an interactive shell) or torchrun started
    this process: Lightning then starts no processes of its own."""
    slurm = "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
        "bash",
        "interactive",
    )
    torchrun = all(
        k in os.environ for k in ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    )
    return slurm or torchrun


def _n_devices(devices: Any, accelerator: str) -> int:
    """Processes per node Lightning would start for ``trainer.devices``."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    gpu = accelerator in ("gpu", "cuda") or accelerator == "auto" and _cuda_count() > 0
    if devices in ("auto", -1, "-1"):
        if gpu:
            return _cuda_count()
        return 1 if devices == "auto" else os.cpu_count() or 1
    try:
        return int(devices)
    except (TypeError, ValueError):
        return 1


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def _strategy_name(strategy: Any) -> str:
    """Lower-case strategy name; for an instantiated config (``_target_``), its class name,
    with ``start_method`` deciding between spawn/fork and a re-launch."""
    if isinstance(strategy, Mapping):
        target = str(strategy.get("_target_", "")).rsplit(".", 1)[-1].lower()
        method = str(strategy.get("start_method", "popen")).lower()
        if target.startswith("ddp") and method in ("spawn", "fork", "forkserver"):
            return "ddp_spawn" if method == "spawn" else "ddp_fork"
        return target.replace("strategy", "") or "custom"
    return str(strategy or "auto").lower()


def relaunches_script(trainer_cfg: Mapping[str, Any]) -> bool:
    """True when Lightning would start extra processes by re-running ``sys.argv``."""
    strategy = _strategy_name(trainer_cfg.get("strategy", "auto"))
    if strategy in SAFE_STRATEGIES or strategy.startswith("ddp_spawn"):
        return False
    accelerator = str(trainer_cfg.get("accelerator", "auto")).lower()
    # children per node = devices - 1; more nodes alone start no children on a node
    n_proc = _n_devices(trainer_cfg.get("devices", 1), accelerator)
    if n_proc <= 1:  # a one-process "ddp" starts no children
        return False
    if strategy == "auto":
        return True  # Lightning picks ddp for >1 device outside notebooks
    return strategy.startswith(RELAUNCHING_PREFIXES)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # Hydra not initialised (plain Python use, tests' compose)
        return False


def check_ddp_multirun(cfg: DictConfig, multirun: bool | None = None) -> None:
    """Raise ``ConfigError`` for a Hydra multirun whose jobs would use in-process DDP.

    ``multirun``: override the detection from ``HydraConfig`` (tests). Call before building the
    Trainer, in the parent process (nothing is launched yet)."""
    multirun = _is_multirun() if multirun is None else multirun
    if not multirun or processes_created_externally():
        return
    trainer = cfg.get("trainer") or {}
    trainer = (
        OmegaConf.to_container(trainer, resolve=True) if OmegaConf.is_config(trainer) else trainer
    )
    if not relaunches_script(trainer):
        return
    raise ConfigError(
        f"trainer.strategy={_strategy_name(trainer.get('strategy', 'auto'))} with "
        f"trainer.devices={trainer.get('devices')} inside a multirun (-m) would re-run the whole "
        "sweep in every DDP process; run one device per job with hydra/launcher=gpu_pool, or "
        "multi-device jobs with hydra/launcher=slurm"
    )
