"""Training-step throughput of divrec against hand-written and third-party loops.

Every function here times the *steady state*: the first ``warmup`` steps (allocator warm-up,
optimizer state creation, Lightning's loop set-up) are run but not counted, and the clock
covers whole iterations including data loading, from the end of step ``warmup`` to the end
of the last step. All loops consume the same fixed list of (user, item) training pairs
(:func:`pair_loader`), in the same order, at the same batch size.

Lightning (:func:`lightning_pairs_per_s`), a plain PyTorch loop on the same module
(:func:`plain_pairs_per_s`), sentence-transformers (:func:`st_pairs_per_s`), the frozen cache
vs the frozen backbone per step (:func:`cached_vs_uncached`) and MFU (:func:`training_mfu`).
Rates are :class:`Rate`: per second of wall-clock time and of process CPU time. Each run
starts from ``module.train()``: Lightning keeps every submodule's own train/eval mode, and a
backbone loaded with ``from_pretrained`` starts in eval mode (dropout off).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from divrec.errors import ConfigError


def sync(device: str) -> None:
    """Wait for queued CUDA work so that wall-clock readings cover it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _FixedRows(Dataset):
    """Training-pair row numbers in a fixed order (collated by the data module)."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> int:
        return int(self.rows[i])


def pair_rows(n_pairs: int, batch_size: int, n_batches: int, seed: int = 0) -> torch.Tensor:
    """``batch_size * n_batches`` training-pair rows [P], a seeded shuffle (repeated if short)."""
    gen = torch.Generator().manual_seed(seed)
    need = batch_size * n_batches
    reps = math.ceil(need / max(1, n_pairs))
    return torch.cat([torch.randperm(n_pairs, generator=gen) for _ in range(reps)])[:need]


def pair_loader(dm, batch_size: int, n_batches: int, seed: int = 0) -> DataLoader:
    """A loader of exactly ``n_batches`` train batches of ``dm``, same pairs every iteration."""
    rows = pair_rows(len(dm.train_users), batch_size, n_batches, seed)
    return DataLoader(
        _FixedRows(rows),
        batch_size=batch_size,
        shuffle=False,
        drop_last=True,
        collate_fn=dm.collate_train,
    )


def pair_texts(dm, loader: DataLoader) -> tuple[list[str], list[str]]:
    """The (user text, item text) of every pair of ``loader``, in loader order."""
    rows = loader.dataset.rows
    users, items = dm.train_users[rows].tolist(), dm.train_items[rows].tolist()
    return [dm.user_texts[u] for u in users], [dm.catalogue.texts[i] for i in items]


class Rate(NamedTuple):
    """Items per second of wall-clock time and of this process's CPU time.

    On a CPU with one torch thread, CPU time is the work the step needed and does not grow
    when other processes share the cores (wall time does); on a GPU only ``wall`` is meaningful.
    """

    wall: float
    cpu: float

    def on(self, device: str) -> float:
        """The rate reported for ``device``: CPU time on a CPU, wall time on a GPU."""
        return self.cpu if device == "cpu" else self.wall


def now() -> tuple[float, float]:
    """(wall seconds, process CPU seconds)."""
    return time.perf_counter(), time.process_time()


def _rate(stamps: list[tuple[float, float]], warmup: int, batch_size: int) -> Rate:
    """Pairs/s from step-end stamps (:func:`now`), excluding the first ``warmup`` steps."""
    if warmup < 1 or len(stamps) <= warmup:
        raise ConfigError(f"benchmark: need more than warmup={warmup} steps, got {len(stamps)}")
    n = batch_size * (len(stamps) - warmup)
    (w0, c0), (w1, c1) = stamps[warmup - 1], stamps[-1]
    return Rate(n / max(w1 - w0, 1e-9), n / max(c1 - c0, 1e-9))


class StepClock(pl.Callback):
    """Timestamps at the end of every training step (after the optimizer step)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.times: list[tuple[float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(self.device)
        self.times.append(now())


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the framework warnings a benchmark triggers on purpose (few workers, etc.)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*self.log.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def lightning_trainer(cfg: DictConfig, precision: Any, callbacks: list, **kwargs: Any):
    """The run's configured ``Trainer`` with logger, checkpoints, bars and summary off."""
    return instantiate(
        cfg.trainer,
        logger=False,
        callbacks=callbacks,
        precision=precision,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def lightning_pairs_per_s(
    module, loader: DataLoader, cfg: DictConfig, precision: Any, warmup: int, device: str
) -> Rate:
    """Pairs/s of ``trainer.fit`` over ``loader`` (one pass, no validation)."""
    clock = StepClock(device)
    trainer = lightning_trainer(
        cfg,
        precision,
        [clock],
        max_epochs=1,
        max_steps=len(loader),
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    module.train()  # Lightning keeps each submodule's own mode (see the module docstring)
    with quiet():
        trainer.fit(module, train_dataloaders=loader)
    return _rate(clock.times, warmup, loader.batch_size)


def step_loss(module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss of ``RecModule.training_step`` from the same towers and loss functions, without
    Lightning's logging (text or non-target-aware history user tower)."""
    net = module.net
    if net.user_tower == "history" and net.pool.target_aware:
        raise ConfigError("benchmark: target-aware history pooling is not timed by the plain loop")
    u = net.user_vectors(batch)  # [B, d]
    v = net.item_vectors(batch["item_idx"])  # [B, d]
    log_q = module.log_q if module.use_logq else None
    rel, logits = module.relevance(u, v, batch["item_idx"], net.temperature, log_q)
    div = module.diversity(logits, v, module.categories[batch["item_idx"]])
    return rel + module.diversity_weight * div


def plain_pairs_per_s(
    module,
    loader: DataLoader,
    optim: dict,
    warmup: int,
    device: str,
    bf16: bool = False,
    clip: float | None = 1.0,
) -> Rate:
    """Pairs/s of a bare PyTorch loop: forward, backward, clip, AdamW and scheduler step."""
    module.to(device).train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=optim.get("lr", 1e-3), weight_decay=optim.get("weight_decay", 0.01)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    times: list[tuple[float, float]] = []
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = step_loss(module, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()
        sync(device)
        times.append(now())
    return _rate(times, warmup, loader.batch_size)


def cached_vs_uncached(
    module,
    loader: DataLoader,
    short: DataLoader,
    optim: dict,
    warmup: int,
    device: str,
    bf16: bool = False,
) -> dict[str, Rate]:
    """Pairs/s of the frozen model's plain-loop step with cached backbone vectors (over
    ``loader``, ``warmup`` untimed steps) vs the same step encoding the batch's item and user
    texts through the frozen backbone under ``no_grad`` in the trainer's precision (over the
    shorter ``short``, one untimed step)."""
    if not module.net.frozen:
        raise ConfigError("benchmark: cached_vs_uncached needs model.encoder.finetune=frozen")
    cached = plain_pairs_per_s(module, loader, optim, warmup, device, bf16)
    module.net.frozen = False  # the trainable-encoder code path; the backbone stays no_grad
    try:
        uncached = plain_pairs_per_s(module, short, optim, 1, device, bf16)
    finally:
        module.net.frozen = True
    return {"cached": cached, "uncached": uncached}


def st_pairs_per_s(
    model_path: str,
    anchors: list[str],
    positives: list[str],
    batch_size: int,
    max_seq_length: int,
    warmup: int,
    device: str,
    out_dir: Path,
    lr: float = 2e-5,
    bf16: bool = False,
) -> Rate:
    """Pairs/s of ``SentenceTransformerTrainer`` + MultipleNegativesRankingLoss, full
    fine-tuning, batches taken in order (model loading and trainer set-up not timed)."""
    from datasets import Dataset as HFDataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    times: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            times.append(now())

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict) -> None:
            """No model-card bookkeeping (it encodes widget examples at set-up)."""

    def in_order(dataset, batch_size, drop_last, **_):
        return torch.utils.data.BatchSampler(
            torch.utils.data.SequentialSampler(range(len(dataset))), batch_size, drop_last
        )

    with quiet():
        model = SentenceTransformer(model_path, device=device)
        model.max_seq_length = max_seq_length
        args = SentenceTransformerTrainingArguments(
            output_dir=str(out_dir),
            per_device_train_batch_size=batch_size,
            max_steps=len(anchors) // batch_size,
            learning_rate=lr,
            weight_decay=0.01,
            warmup_steps=0,
            lr_scheduler_type="constant",
            max_grad_norm=1.0,
            bf16=bf16,
            use_cpu=device == "cpu",
            report_to="none",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_drop_last=True,
            batch_sampler=in_order,
            seed=0,
        )
        data = HFDataset.from_dict({"anchor": anchors, "positive": positives})
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[Clock()],
        )
        trainer.remove_callback(PrinterCallback)  # prints the final metrics to stdout
        trainer.train()
    return _rate(times, warmup, batch_size)


class TokenCounter:
    """Counts the (batch, length) of every call of a backbone (forward pre-hook)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, int]] = []
        self._handle = backbone.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append((int(ids.shape[0]), int(ids.shape[1])))

    def close(self) -> None:
        self._handle.remove()


def backbone_flops(backbone: torch.nn.Module, shapes: list[tuple[int, int]]) -> float:
    """Training FLOPs (forward + backward = 3x forward) of the backbone calls ``shapes``.

    Forward per call of B texts x L tokens: 2 * P * B * L for the dense weights (P = non-
    embedding parameters) plus 4 * layers * B * L^2 * H for attention scores and values.
    """
    cfg = backbone.config
    emb = sum(p.numel() for n, p in backbone.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in backbone.parameters()) - emb
    layers, hidden = int(cfg.num_hidden_layers), int(cfg.hidden_size)
    return sum(3 * (2 * dense * b * n + 4 * layers * b * n * n * hidden) for b, n in shapes)


def matmul_flops_per_s(device: str, dtype: torch.dtype, n: int, repeats: int = 20) -> float:
    """Measured dense matmul rate (FLOP/s) of an ``n x n`` product in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        torch.matmul(a, b)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    sync(device)
    return 2.0 * n**3 * repeats / (time.perf_counter() - t0)


def training_mfu(
    module, loader: DataLoader, cfg: DictConfig, precision: Any, warmup: int, device: str
) -> dict[str, float]:
    """Achieved backbone training FLOP/s of ``trainer.fit`` (counted from the real token
    shapes of the timed steps) and pairs/s; ``module`` must have a trainable encoder."""
    backbone = module.net.item_encoder.backbone
    counter = TokenCounter(backbone)
    clock = StepClock(device)
    calls: list[int] = []

    class CallMarks(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            calls.append(len(counter.shapes))

    trainer = lightning_trainer(
        cfg,
        precision,
        [clock, CallMarks()],
        max_epochs=1,
        max_steps=len(loader),
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    module.train()
    try:
        with quiet():
            trainer.fit(module, train_dataloaders=loader)
    finally:
        counter.close()
    rate = _rate(clock.times, warmup, loader.batch_size)
    seconds = clock.times[-1][0] - clock.times[warmup - 1][0]
    if device == "cpu":
        seconds = clock.times[-1][1] - clock.times[warmup - 1][1]
    timed = counter.shapes[calls[warmup - 1] : calls[-1]]
    tokens = sum(b * n for b, n in timed)
    return {
        "flops_per_s": backbone_flops(backbone, timed) / seconds,
        "pairs_per_s": rate.on(device),
        "tokens_per_step": tokens / (len(clock.times) - warmup),
    }
