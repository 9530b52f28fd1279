"""Per-step cost of the two-tower's dense ID tables (``model.id_embeddings=true``).

``TwoTower`` holds ``nn.Embedding(n_items, d)`` and ``nn.Embedding(n_users, d)`` with dense
gradients, and ``RecModule.configure_optimizers`` steps them with fused AdamW: every training
step reads and writes all ``(N + U) x d`` weights and their two moments, whichever rows the
batch touched. This times exactly that (one thread: zero_grad, an embedding lookup of a
512-row batch, backward, ``AdamW(fused=True).step()``) at the shapes of the measured shops and
of the ml-25m-sized one, at the tiny encoder's width and MiniLM's (384).

Usage: ``python -m experiments.scale.id_tables [--out experiments/scale/id_tables.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from experiments.scale.sizes import PRESETS

OUT = Path(__file__).resolve().parent / "id_tables.json"


def step_seconds(n_rows: int, dim: int, reps: int = 8, batch: int = 512) -> float:
    """CPU seconds of one optimiser step over an ``[n_rows, dim]`` dense embedding table."""
    emb = torch.nn.Embedding(n_rows, dim)
    opt = torch.optim.AdamW(emb.parameters(), lr=1e-3, fused=True)
    idx = torch.randint(0, n_rows, (batch,), generator=torch.Generator().manual_seed(0))

    def step() -> None:
        opt.zero_grad()
        emb(idx).sum().backward()
        opt.step()

    for _ in range(2):
        step()
    c0 = time.process_time()
    for _ in range(reps):
        step()
    return (time.process_time() - c0) / reps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--sizes", nargs="+", default=["300k", "25m", "items-1m"])
    p.add_argument("--dims", nargs="+", type=int, default=[32, 384])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.sizes:
        s = PRESETS[name]
        for d in args.dims:
            sec = step_seconds(s.n_items + s.n_users, d)
            rows.append({"size": name, "rows": s.n_items + s.n_users, "dim": d, "step_s": sec})
            print(f"{name}: ({s.n_items:,} + {s.n_users:,}) x {d}: {sec * 1e3:.1f} ms/step")
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
