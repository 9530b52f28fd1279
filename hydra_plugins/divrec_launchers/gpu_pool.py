"""``hydra/launcher=gpu_pool``: parallel sweep jobs on one machine, one GPU per job.

Jobs run in a joblib (loky) process pool of ``n_jobs`` workers. Inside its worker each job
claims a free GPU with :func:`divrec.launch.gpu_claim.claim_gpu` (a per-GPU lock file held for the
job's lifetime, so long and short jobs never share a GPU, and several sweeps on one machine
share the GPUs when they use the same ``lock_dir``), then runs with the overrides
``trainer.accelerator=gpu trainer.devices=[i]`` appended to its own (they show in the job's
``.hydra/overrides.yaml``). Explicit device ids are used instead of ``CUDA_VISIBLE_DEVICES``,
which cannot be changed in a reused loky worker once CUDA is initialised.

Without a GPU the jobs run in parallel on the CPU with ``trainer.accelerator=cpu``. Every
worker sets ``torch.set_num_threads(cores // n_jobs)`` (or ``threads_per_job``) so parallel
jobs do not oversubscribe the cores.

Limits: one GPU per job (multi-GPU jobs: ``hydra/launcher=slurm``); ``backend=multiprocessing``
uses daemonic workers that cannot start DataLoader workers (keep ``data.num_workers=0``
there); with ``loky`` DataLoader workers work: each worker restores the launching process's
multiprocessing start method (loky's own, spawn-like default cannot pickle the data module).
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

BACKENDS = ("loky", "multiprocessing")
CPU_JOBS_CAP = 2  # default parallel CPU jobs: more only adds memory pressure on small machines


@dataclass
class GpuPoolLauncherConf:
    """Config of ``hydra/launcher=gpu_pool`` (``hydra.launcher.<key>=...`` on the command line)."""

    _target_: str = "hydra_plugins.divrec_launchers.gpu_pool.GpuPoolLauncher"
    # parallel jobs; null: one per GPU, or min(2, CPU cores) without a GPU
    n_jobs: int | None = None
    # folder of the gpu{i}.lock files; null: <tmp>/divrec-gpu-locks-<uid> (shared by sweeps)
    lock_dir: str | None = None
    # joblib backend: loky (default) or multiprocessing
    backend: str = "loky"
    # seconds a job waits for a free GPU before failing; null: forever
    claim_timeout_s: float | None = None
    # seconds between two attempts to claim a GPU
    poll_s: float = 0.5
    # torch threads per job; null: CPU cores // n_jobs
    threads_per_job: int | None = None


# Stored as the schema `gpu_pool_base`; conf/hydra/launcher/gpu_pool.yaml extends it (a YAML
# file and a stored config with one name would trigger Hydra's deprecated schema matching).
ConfigStore.instance().store(
    group="hydra/launcher", name="gpu_pool_base", node=GpuPoolLauncherConf, provider="divrec"
)


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_n_jobs(n_gpus: int) -> int:
    """One job per GPU; without a GPU, ``min(2, cores)``."""
    return n_gpus if n_gpus > 0 else max(1, min(CPU_JOBS_CAP, cpu_cores()))


def device_overrides(gpu: int | None) -> list[str]:
    """Overrides appended to a job's own: its claimed GPU, or the CPU."""
    if gpu is None:
        return ["trainer.accelerator=cpu"]
    return ["trainer.accelerator=gpu", f"trainer.devices=[{gpu}]"]


@dataclass(frozen=True)
class _Pool:
    """What a worker needs to place its job (picklable)."""

    n_gpus: int
    lock_dir: str
    claim_timeout_s: float | None
    poll_s: float
    threads: int
    start_method: str  # the launching process's multiprocessing default (DataLoader workers)


def _execute_job(
    idx: int,
    overrides: Sequence[str],
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
    pool: _Pool,
) -> JobReturn:
    """Runs in a pool worker: claim a GPU (or stay on CPU), then run the job like Hydra's own
    launchers do. The claim is released when the job ends, even if it fails."""
    import torch

    from divrec.launch.gpu_claim import claim_gpu

    setup_globals()
    Singleton.set_state(singleton_state)
    torch.set_num_threads(pool.threads)
    # loky workers default to the 'loky' start method (spawn-like), under which DataLoader
    # workers fail to pickle the data module; restore the launching process's default.
    if multiprocessing.get_start_method(allow_none=True) != pool.start_method:
        multiprocessing.set_start_method(pool.start_method, force=True)
    claim: Any = contextlib.nullcontext(None)
    if pool.n_gpus > 0:
        claim = claim_gpu(pool.n_gpus, pool.lock_dir, pool.claim_timeout_s, pool.poll_s)
    with claim as held:
        gpu = None if held is None else held.index
        if gpu is not None and torch.cuda.is_available() and gpu < torch.cuda.device_count():
            torch.cuda.set_device(gpu)  # bare "cuda" tensors (embedding cache) land on it too
        sweep_config = hydra_context.config_loader.load_sweep_config(
            config, [*overrides, *device_overrides(gpu)]
        )
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
            sweep_config.hydra.job.num = idx
        HydraConfig.instance().set_config(sweep_config)
        return run_job(
            hydra_context=hydra_context,
            config=sweep_config,
            task_function=task_function,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )


class GpuPoolLauncher(Launcher):
    """Hydra launcher: a process pool whose jobs each claim one GPU (see module docstring)."""

    def __init__(
        self,
        n_jobs: int | None = None,
        lock_dir: str | None = None,
        backend: str = "loky",
        claim_timeout_s: float | None = None,
        poll_s: float = 0.5,
        threads_per_job: int | None = None,
    ) -> None:
        from divrec.errors import ConfigError

        if backend not in BACKENDS:
            raise ConfigError(
                f"hydra.launcher.backend: '{backend}' unsupported; use one of {list(BACKENDS)}"
            )
        for key, value in (("n_jobs", n_jobs), ("threads_per_job", threads_per_job)):
            if value is not None and value < 1:
                raise ConfigError(f"hydra.launcher.{key}: {value}; use an integer >= 1 or null")
        self.n_jobs = n_jobs
        self.lock_dir = lock_dir
        self.backend = backend
        self.claim_timeout_s = claim_timeout_s
        self.poll_s = poll_s
        self.threads_per_job = threads_per_job
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def pool(self) -> tuple[int, _Pool]:
        """(number of workers, placement settings) for this machine."""
        from divrec.launch.gpu_claim import default_lock_dir, gpu_count

        n_gpus = gpu_count()
        n_jobs = self.n_jobs or default_n_jobs(n_gpus)
        threads = self.threads_per_job or max(1, cpu_cores() // n_jobs)
        lock_dir = str(self.lock_dir) if self.lock_dir else default_lock_dir()
        start = multiprocessing.get_start_method()
        return n_jobs, _Pool(n_gpus, lock_dir, self.claim_timeout_s, self.poll_s, threads, start)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed

        assert self.config is not None and self.task_function is not None
        assert self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        n_jobs, pool = self.pool()
        where = f"{pool.n_gpus} GPU(s), locks in {pool.lock_dir}" if pool.n_gpus else "CPU"
        log.info(
            "gpu_pool: %d jobs, %d in parallel (%s backend) on %s, %d torch threads each",
            len(job_overrides),
            n_jobs,
            self.backend,
            where,
            pool.threads,
        )
        log.info("sweep output dir: %s", sweep_dir)
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        singleton_state = Singleton.get_state()
        runs = Parallel(
            n_jobs=max(1, min(n_jobs, len(job_overrides))),
            backend=self.backend,
            batch_size=1,  # one job per dispatch: a worker never holds queued jobs
        )(
            delayed(_execute_job)(
                initial_job_idx + idx,
                list(overrides),
                self.hydra_context,
                self.config,
                self.task_function,
                singleton_state,
                pool,
            )
            for idx, overrides in enumerate(job_overrides)
        )
        assert all(isinstance(r, JobReturn) for r in runs)
        return list(runs)
