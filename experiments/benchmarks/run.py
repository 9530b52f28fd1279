"""``make bench``: every divrec benchmark in one process, one table, and the README.

Rows (see ``NOTES`` in :mod:`experiments.benchmarks.readme` for what each measures):

1. batched MMR / DPP re-rankers vs a per-user pyversity loop (``bench_rerank``);
2. training throughput: Lightning ``RecModule`` vs a plain PyTorch loop on the same module and
   pairs (frozen cache = heads only; full MiniLM fine-tuning), and vs sentence-transformers;
3. full-catalogue evaluation throughput and peak memory (``trainer.validate``);
4. one epoch with the frozen-embedding cache vs running the frozen backbone every step;
5. on a GPU: the same rows on the GPU plus model FLOP utilisation of full fine-tuning;
6. latency budgets: default shop_sim generation and one ``recommend()`` call (``bench_latency``).

Data: ml-latest-small when ``DIVREC_DATA_DIR`` is set, else the built-in ``shop_sim``. Sizes are
modest (tens of encoder steps) so the whole run fits in 10 minutes on 2 shared CPU cores; the
first run also fills the token/embedding caches under ``.cache/bench`` (not timed).

Usage: ``python -m experiments.benchmarks.run [--threads N] [--readme PATH | --no-readme]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _key, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
    ("WANDB_MODE", "disabled"),
    ("DIVREC_CACHE_DIR", str(ROOT / ".cache" / "bench")),
):
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402

from experiments.benchmarks import bench_eval, bench_training  # noqa: E402
from experiments.benchmarks.bench_eval import (  # noqa: E402
    Setup,
    Sizes,
    encoder_setup,
    frozen_setup,
)
from experiments.benchmarks.readme import format_table, write_readme  # noqa: E402

README = Path(__file__).resolve().parent / "README.md"


@dataclass
class Row:
    """One line of the table. ``ratio``: divrec's speed over the reference's (higher is
    better for divrec); ``target``: the minimum ratio aimed for (None: informational)."""

    name: str
    divrec: str
    reference: str = "-"
    ratio: float | None = None
    target: float | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.ratio is None or self.target is None:
            return None
        return self.ratio >= self.target


def _best(rates: list[bench_training.Rate], device: str) -> bench_training.Rate:
    """The fastest of the interleaved rounds (least disturbed by other processes)."""
    return max(rates, key=lambda r: r.on(device))


def _clock_note(device: str, *rates: bench_training.Rate) -> str:
    """On a CPU the table shows rates per CPU-second; the note adds the wall-clock ones."""
    if device != "cpu":
        return ""
    walls = " / ".join(f"{r.wall:,.0f}" if r.wall >= 100 else f"{r.wall:.1f}" for r in rates)
    return f"; per CPU-second (wall-clock {walls} pairs/s)"


def _bf16(setup: Setup) -> bool:
    return str(setup.precision).startswith("bf16")


def _optim(setup: Setup) -> dict:
    return dict(setup.cfg.optim)


# ----------------------------------------------------------------------------- rows
def rerank_rows(device: str = "cpu") -> list[Row]:
    """Row 1: MMR and DPP at diversity 0.5, ours vs the per-user pyversity loop."""
    from experiments.benchmarks import bench_rerank as br

    rows = []
    for r in br.run(device, diversity=0.5):
        if r["pyversity_s"] is None:
            continue
        rows.append(
            Row(
                f"re-rank {r['method'].upper()} (λ=0.5)",
                f"{r['ours_s']:.3f} s",
                f"{r['pyversity_s']:.3f} s pyversity loop",
                r["speedup"],
                2.0 if device == "cpu" else 100.0,  # the diversity issue's targets
                f"{br.N_USERS} users, N={br.N_ITEMS:,}, M={br.CANDIDATES}, k={br.K}, "
                f"{r['threads']} thread(s); agree {r['agreement']:.1%}; wall-clock, median "
                f"of 3 (CPU-time speed-up {r['cpu_speedup']:.2f}x)",
            )
        )
    return rows


def frozen_training_rows(sizes: Sizes, device: str, setup: Setup | None = None) -> list[Row]:
    """Row 2a: heads-only steps on cached vectors, Lightning vs a plain PyTorch loop."""
    s = setup or frozen_setup(sizes, device)
    loader = bench_training.pair_loader(
        s.dm, sizes.frozen_batch, sizes.frozen_warmup + sizes.frozen_steps
    )
    ours, plain = [], []
    for _ in range(sizes.rounds):
        _race_round(s, loader, sizes.frozen_warmup, device, ours, plain)
    o, p = _best(ours, device), _best(plain, device)
    return [
        Row(
            "train, frozen cache (heads only)",
            f"{o.on(device):,.0f} pairs/s",
            f"{p.on(device):,.0f} pairs/s plain loop",
            o.on(device) / p.on(device),
            0.9,
            f"batch {sizes.frozen_batch}, {sizes.frozen_steps} steps after "
            f"{sizes.frozen_warmup} warm-up, best of {sizes.rounds}" + _clock_note(device, o, p),
        )
    ]


def _race_round(s: Setup, loader, warmup: int, device: str, ours: list, plain: list) -> None:
    """One interleaved round: the same pairs through Lightning, then through the plain loop."""
    ours.append(
        bench_training.lightning_pairs_per_s(s.module, loader, s.cfg, s.precision, warmup, device)
    )
    clip = s.cfg.trainer.get("gradient_clip_val")
    plain.append(
        bench_training.plain_pairs_per_s(
            s.module, loader, _optim(s), warmup, device, _bf16(s), clip
        )
    )


def encoder_training_rows(sizes: Sizes, device: str) -> list[Row]:
    """Rows 2b, 2c: full fine-tuning, Lightning vs plain loop vs sentence-transformers."""
    from divrec.models.pretrained import resolve_pretrained

    s = encoder_setup(sizes, device, sizes.enc_batch, sizes.enc_seq)
    loader = bench_training.pair_loader(s.dm, sizes.enc_batch, sizes.enc_warmup + sizes.enc_steps)
    anchors, positives = bench_training.pair_texts(s.dm, loader)
    ours, plain, st = [], [], []
    for _ in range(sizes.enc_rounds):
        _race_round(s, loader, sizes.enc_warmup, device, ours, plain)
        st.append(
            bench_training.st_pairs_per_s(
                resolve_pretrained(sizes.pretrained),
                anchors,
                positives,
                sizes.enc_batch,
                sizes.enc_seq,
                sizes.enc_warmup,
                device,
                Path(sizes.out_dir) / "st",
                bf16=_bf16(s),
            )
        )
    what = f"batch {sizes.enc_batch}, ≤{sizes.enc_seq} tokens, {sizes.enc_steps} steps after "
    what += f"{sizes.enc_warmup} warm-up, best of {sizes.enc_rounds}"
    o, p, t = _best(ours, device), _best(plain, device), _best(st, device)
    return [
        Row(
            "train, full fine-tuning",
            f"{o.on(device):,.1f} pairs/s",
            f"{p.on(device):,.1f} pairs/s plain loop",
            o.on(device) / p.on(device),
            0.9,
            what + _clock_note(device, o, p),
        ),
        Row(
            "train, full FT vs sentence-transformers",
            f"{o.on(device):,.1f} pairs/s",
            f"{t.on(device):,.1f} pairs/s ST trainer + MNRL",
            o.on(device) / t.on(device),
            1.0,
            what + _clock_note(device, o, t),
        ),
    ]


def eval_rows(sizes: Sizes, device: str, setup: Setup | None = None) -> list[Row]:
    """Row 3: full-catalogue validation of the default model: users/s and peak memory."""
    s = setup or frozen_setup(sizes, device)
    r = bench_eval.eval_throughput(s, device)
    kind = "CUDA allocated" if device.startswith("cuda") else "RSS"
    rate = r["users_per_cpu_s"] if device == "cpu" else r["users_per_s"]
    clock = f"; per CPU-second (wall-clock {r['users_per_s']:,.0f})" if device == "cpu" else ""
    return [
        Row(
            "eval, full catalogue (validate)",
            f"{rate:,.0f} users/s",
            note=f"{r['users']} users x {r['items']:,} items in {r['seconds']:.2f} s, "
            f"{r['n_metrics']} metrics; peak {kind} +{r['peak_delta_mb']:.0f} MB "
            f"(to {r['peak_mb']:.0f} MB){clock}",
        )
    ]


def cache_rows(sizes: Sizes, device: str, setup: Setup | None = None) -> list[Row]:
    """Row 4: epoch time with cached frozen vectors vs the frozen backbone in every step."""
    s = setup or frozen_setup(sizes, device)
    bs = sizes.frozen_batch
    loader = bench_training.pair_loader(s.dm, bs, sizes.frozen_warmup + sizes.frozen_steps)
    short = bench_training.pair_loader(s.dm, bs, 1 + sizes.uncached_steps)
    r = bench_training.cached_vs_uncached(
        s.module, loader, short, _optim(s), sizes.frozen_warmup, device, _bf16(s)
    )
    steps = max(1, len(s.dm.train_users) // sizes.frozen_batch)
    pairs = steps * sizes.frozen_batch
    cached, uncached = pairs / r["cached"].on(device), pairs / r["uncached"].on(device)
    fill = s.dm.stats.get("cache/embeddings_seconds")
    hit = s.dm.stats.get("cache/embeddings_hit")
    fill_note = "cache reused" if hit else f"one-time cache fill {fill:.0f} s"
    return [
        Row(
            "epoch, frozen cache vs backbone per step",
            f"{cached:,.1f} s/epoch",
            f"{uncached:,.0f} s/epoch uncached",
            uncached / cached,
            None,
            f"{steps} steps x {sizes.frozen_batch} pairs, from {sizes.frozen_steps} cached / "
            f"{sizes.uncached_steps} uncached timed steps; {fill_note}"
            + _clock_note(device, r["cached"], r["uncached"]),
        )
    ]


def mfu_rows(sizes: Sizes, device: str) -> list[Row]:
    """Row 5b: model FLOP utilisation of full MiniLM fine-tuning vs the measured matmul rate."""
    s = encoder_setup(sizes, device, sizes.mfu_batch, sizes.mfu_seq)
    loader = bench_training.pair_loader(s.dm, sizes.mfu_batch, sizes.mfu_warmup + sizes.mfu_steps)
    r = bench_training.training_mfu(s.module, loader, s.cfg, s.precision, sizes.mfu_warmup, device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    peak = bench_training.matmul_flops_per_s(device, dtype, sizes.matmul_n)
    return [
        Row(
            "MFU, full fine-tuning",
            f"{r['flops_per_s'] / 1e12:.2f} TFLOP/s",
            f"{peak / 1e12:.2f} TFLOP/s {str(dtype).split('.')[-1]} matmul",
            r["flops_per_s"] / peak,
            None,
            f"{s.precision}, batch {sizes.mfu_batch}, ≤{sizes.mfu_seq} tokens "
            f"({r['tokens_per_step']:,.0f} tokens/step), {r['pairs_per_s']:,.0f} pairs/s",
        )
    ]


def latency_rows(sizes: Sizes, device: str = "cpu") -> list[Row]:
    """Row 6: latency budgets (default shop_sim generation, one ``recommend()`` call)."""
    from experiments.benchmarks import bench_latency as bl

    gen = bl.shop_sim_seconds(**sizes.shop_sim_sizes)
    what = "default sizes" if not sizes.shop_sim_sizes else str(sizes.shop_sim_sizes)
    ckpt = bl.history_run(bench_eval._overrides(sizes, device), Path(sizes.out_dir) / "latency")
    rec = bl.recommend_seconds(ckpt)
    return [
        Row(
            "data, shop_sim generation",
            f"{gen:.2f} s",
            f"{bl.SHOP_SIM_BUDGET_S:.1f} s budget",
            bl.SHOP_SIM_BUDGET_S / gen,
            1.0,
            f"load_shop_sim() at {what}, median of 3, wall-clock",
        ),
        Row(
            "serve, recommend() 50-item history",
            f"{rec * 1e3:.0f} ms",
            f"{bl.RECOMMEND_BUDGET_S:.1f} s budget",
            bl.RECOMMEND_BUDGET_S / rec,
            1.0,
            "history tower, warm model, k=10, median of 5, wall-clock",
        ),
    ]


def gpu_rows(sizes: Sizes) -> list[Row]:
    """Row 5: the table again on the GPU plus MFU, or one row saying there is none."""
    if not torch.cuda.is_available():
        return [Row("GPU rows", "-", note="no GPU here (torch.cuda.is_available() is False)")]
    rows = all_rows(sizes, "cuda") + _safe("GPU MFU", lambda: mfu_rows(sizes, "cuda"))
    return [replace(r, name=f"GPU: {r.name}") for r in rows]


def _safe(name: str, job: Callable[[], list[Row]]) -> list[Row]:
    """Run one row job; a failure becomes a row with the error (the table still prints)."""
    t0 = time.perf_counter()
    try:
        rows = job()
    except Exception as e:  # noqa: BLE001 - one broken row must not hide the others
        traceback.print_exc()
        rows = [Row(name, "failed", note=f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")]
    print(f"[bench] {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def all_rows(sizes: Sizes, device: str = "cpu") -> list[Row]:
    """Every row on ``device`` (rows 1-4), then the GPU rows (row 5)."""
    rows: list[Row] = []
    if sizes.rerank:
        rows += _safe("re-rank", lambda: rerank_rows(device))
    box: dict[str, Setup] = {}

    def with_setup(fn):
        def job():
            if "frozen" not in box:
                box["frozen"] = frozen_setup(sizes, device)
            return fn(sizes, device, box["frozen"])

        return job

    rows += _safe("train, frozen", with_setup(frozen_training_rows))
    rows += _safe("train, full FT", lambda: encoder_training_rows(sizes, device))
    rows += _safe("eval", with_setup(eval_rows))
    rows += _safe("epoch cache", with_setup(cache_rows))
    if device == "cpu":
        rows += _safe("latency", lambda: latency_rows(sizes, device))
        rows += gpu_rows(sizes)
    return rows


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (``make bench``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=str(README), help="where to write the README")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
    _quiet_logs()
    if args.threads > 0:  # see the notes: shared cores + OpenMP spinning distort multi-thread runs
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("high")
    sizes = Sizes()
    t0, load0 = time.perf_counter(), os.getloadavg()
    rows = all_rows(sizes, "cpu")
    info = {"wall_s": time.perf_counter() - t0, "load": (load0, os.getloadavg())}
    print(format_table(rows))
    if not args.no_readme:
        write_readme(Path(args.readme), rows, sizes, info)
        print(f"wrote {args.readme}", file=sys.stderr)


def _quiet_logs() -> None:
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "divrec", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass


if __name__ == "__main__":
    main()
