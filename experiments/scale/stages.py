"""One shop size, stage by stage, through divrec's own functions; one JSON file of results.

Stages, in the order ``python train.py`` runs them (``divrec.run.train.train``), each timed
(wall and process CPU seconds) with its own peak resident set:

``load``        ``load_source`` (``load_shop_sim``: catalogue, users, interactions)
``preprocess``  ``divrec.data.preprocess.preprocess`` (``data.preprocess``)
``split``       the data module's ``_split`` (``make_split``, per-user random 8:1:1)
``texts``       the data module's ``_texts`` (item and user texts rendered)
``tokenise``    ``tokenise_cached`` for item and user texts (empty cache: real work)
``index``       ``RecDataModule.setup`` on the prepared parts (catalogue, ids, history)
``embed``       ``build_module``: the frozen-embedding cache fill (every item text and every
                user text through the encoder, once) and the model's attach
``train_epoch`` one ``trainer.fit`` epoch on the cached vectors, no validation
``evaluate``    one ``trainer.test`` pass: every test user against the whole catalogue
``minilm``      (not part of the pipeline) MiniLM's cost per item and user text on a sample,
                for the cache fill of the real encoder

Peak RSS per stage: the kernel's high-water mark (``VmHWM``) reset at the stage start by
writing ``5`` to ``/proc/self/clear_refs``, with the benchmark sampler
(:class:`experiments.benchmarks.bench_eval.PeakMemory`, every 20 ms) where that is refused;
freed heap pages go back to the OS before each stage.

Usage (one process per size, as ``experiments.scale.run`` starts it):
``python -m experiments.scale.stages --size 300k --out results/300k.json --encoder DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

T_START = time.perf_counter()
for _key, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
    ("WANDB_MODE", "disabled"),
):
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402

from experiments.benchmarks.bench_eval import PeakMemory, compose_config  # noqa: E402
from experiments.scale.sizes import Size, parse_size  # noqa: E402

STAGES = (
    "load",
    "preprocess",
    "split",
    "texts",
    "tokenise",
    "index",
    "embed",
    "train_epoch",
    "evaluate",
)
MB = 2**20


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` field in kB (``VmRSS``, ``VmHWM``), None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where it is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Stages:
    """Runs stages and records ``{name: {wall_s, cpu_s, peak_rss_mb, start_rss_mb}}``."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.results: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        with PeakMemory("cpu", self.interval) as mem:  # trims freed heap pages first
            start = (_status_kb("VmRSS") or 0) / 1024
            exact = _reset_hwm()
            w0, c0 = time.perf_counter(), time.process_time()
            yield
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            hwm = (_status_kb("VmHWM") or 0) / 1024 if exact else 0.0
        peak = max(mem.peak_mb, hwm)
        self.results[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "peak_rss_mb": peak,
            "start_rss_mb": start,
            "peak_from": "VmHWM" if exact and hwm >= mem.peak_mb else "sampler",
        }
        print(f"[scale] {name}: {cpu:.1f} CPU-s ({wall:.1f} s), peak {peak:,.0f} MB", flush=True)


def overrides(size: Size, encoder: str, cache_dir: str, out_dir: str) -> list[str]:
    """``conf/train.yaml`` overrides of the measured run: the default model and data
    settings, this shop's sizes, one epoch on the CPU, no logger, checkpoints or bars."""
    return [
        "data=shop_sim",
        f"data.n_items={size.n_items}",
        f"data.n_users={size.n_users}",
        f"data.n_interactions={size.n_interactions}",
        f"model.encoder.pretrained={encoder}",
        f"paths.cache_dir={cache_dir}",
        f"paths.output_dir={out_dir}",
        "logger=none",
        "callbacks=none",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "model.cache.bf16=false",
    ]


def minilm_cost(dm, n_sample: int, pretrained: str = "minilm") -> dict[str, float]:
    """MiniLM's (``pretrained``'s; frozen, mean pooling) seconds per item text and per user
    text, from ``n_sample`` texts of each (the cache fill's ``encode_in_batches``, batch 128)."""
    from divrec.models.embed_cache import encode_in_batches
    from divrec.models.encoder import TextEncoder
    from divrec.models.pretrained import resolve_pretrained

    enc = TextEncoder(resolve_pretrained(pretrained), pooling="mean", finetune="frozen")
    out: dict[str, float] = {"sample": n_sample}
    for name, tokens in (("item", dm.item_tokens), ("user", dm.user_tokens)):
        rows = torch.linspace(0, len(tokens.input_ids) - 1, n_sample).long()
        ids, mask = tokens.input_ids[rows], tokens.attention_mask[rows]
        encode_in_batches(enc, ids[:8], mask[:8], 8, "cpu", pooled_only=True)  # warm-up
        w0, c0 = time.perf_counter(), time.process_time()
        encode_in_batches(enc, ids, mask, 128, "cpu", pooled_only=True)
        out[f"{name}_wall_s_per_text"] = (time.perf_counter() - w0) / n_sample
        out[f"{name}_cpu_s_per_text"] = (time.process_time() - c0) / n_sample
        out[f"{name}_mean_tokens"] = float(mask.sum(1).float().mean())
    return out


def run_size(
    size: Size, encoder: str, work: Path, minilm_sample: int = 256, threads: int = 1
) -> dict[str, Any]:
    """Every stage of one shop size in this process; returns the JSON-ready record."""
    import lightning.pytorch as pl
    from hydra.utils import instantiate

    from divrec.data.preprocess import preprocess
    from divrec.data.sources import load_source
    from divrec.data.text import tokenise_cached
    from divrec.run.build import build_module, precision
    from divrec.run.quiet import quiet_output
    from experiments.benchmarks.bench_training import lightning_trainer, quiet

    if threads > 0:
        torch.set_num_threads(threads)
    quiet_output()
    cache = work / "cache"  # fresh per size: tokenise and embed do their real work
    cfg = compose_config(overrides(size, encoder, str(cache), str(work / "run")))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    dm = instantiate(cfg.data, _convert_="all")  # what build_datamodule instantiates
    st = Stages()
    startup = time.perf_counter() - T_START
    base_rss = (_status_kb("VmRSS") or 0) / 1024
    load0 = os.getloadavg()
    with quiet():
        with st.stage("load"):
            ds = load_source(dm.source, **dm.source_args)
        with st.stage("preprocess"):
            ds, pre_stats = preprocess(ds, **dm.preprocess_args)
        with st.stage("split"):
            split, split_stats = dm._split(ds)
        stats = {**ds.stats(), **{f"preprocess/{k}": v for k, v in pre_stats.items()}}
        stats.update(split_stats)
        with st.stage("texts"):
            texts = dm._texts(ds, split)
        with st.stage("tokenise"):
            tok = dm._tokenizer()
            item_tokens = tokenise_cached(
                texts[0], tok, dm.text_cfg.max_item_len, dm.cache_dir, "items"
            )
            user_tokens = tokenise_cached(
                texts[2], tok, dm.text_cfg.max_user_len, dm.cache_dir, "users"
            )
        with st.stage("index"):  # setup takes prepare_data's parts: these
            dm._prepared = (ds, split, stats, texts, item_tokens, user_tokens)
            dm.setup()
        del ds, split, texts, item_tokens, user_tokens
        with st.stage("embed"):
            module = build_module(cfg, dm)
        fill_s = float(dm.stats.get("cache/embeddings_seconds", 0.0))
        trainer = lightning_trainer(
            cfg, precision(cfg), [], max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0
        )
        with st.stage("train_epoch"):
            module.train()
            trainer.fit(module, datamodule=dm)
        tester = lightning_trainer(cfg, precision(cfg), [])
        with st.stage("evaluate"):
            metrics = tester.test(module, datamodule=dm, verbose=False)[0]
        minilm = minilm_cost(dm, minilm_sample) if minilm_sample > 0 else {}
    n_test = len(dm.test_dataloader().dataset)
    return {
        "size": size.as_dict(),
        "stages": st.results,
        "startup_s": startup,
        "base_rss_mb": base_rss,
        "embed_fill_s": fill_s,
        "counts": {
            "interactions": int(dm.stats.get("interactions", size.n_interactions)),
            "items": len(dm.catalogue),
            "users": len(dm.user_ids),
            "user_texts": len(dm.user_texts),
            "train_pairs": len(dm.train_users),
            "train_steps": int(trainer.global_step),
            "test_users": n_test,
            "eval_batch_size": int(dm.eval_batch_size),
        },
        "metrics": {k: float(v) for k, v in metrics.items() if k.endswith("@10")},
        "minilm": minilm,
        "encoder": encoder,
        "threads": torch.get_num_threads(),
        "load": [load0, os.getloadavg()],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in st.results.values()),
    }


def main(argv: list[str] | None = None) -> None:
    """CLI: one size, results as JSON (``experiments.scale.run`` starts one per size)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", required=True, help="preset name or INTERACTIONS/ITEMS/USERS")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--encoder", required=True, help="encoder folder (the tiny BERT by default)")
    p.add_argument("--work", required=True, help="scratch folder (caches, run folder)")
    p.add_argument("--minilm-sample", type=int, default=256, help="texts timed with MiniLM")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    args = p.parse_args(argv)
    record = run_size(
        parse_size(args.size), args.encoder, Path(args.work), args.minilm_sample, args.threads
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
