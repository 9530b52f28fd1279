"""``make bench-scale``: how divrec's cost grows with the shop, stage by stage; writes the README.

Each size (:mod:`experiments.scale.sizes`) runs in a fresh subprocess
(``python -m experiments.scale.stages``) with an empty cache folder, so every peak belongs to
one size and tokenisation and the embedding fill do their real work. Results go to
``experiments/scale/results/<size>.json``; the README section, the log-log plot and the fitted
exponents are rebuilt from every results file of the requested sizes
(:mod:`experiments.scale.report`). The encoder is the tiny BERT (``divrec.models.tiny``) by
default, so the embedding fill is fast; MiniLM's cost per text is timed on a sample of each size
and the full fill extrapolated from it.

Usage: ``python -m experiments.scale.run [--sizes 300k 1.5m ...] [--report-only]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments.scale.sizes import DEFAULT_SIZES, parse_size

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
README = HERE / "README.md"
WORK = ROOT / ".cache" / "scale"


def tiny_encoder(folder: Path) -> str:
    """The tiny BERT used as the encoder (built once into ``folder``)."""
    from divrec.models.tiny import build_tiny_bert

    if (folder / "config.json").exists():
        return str(folder)
    return build_tiny_bert(folder, seed=0)


def run_one(
    name: str,
    encoder: str,
    results: Path,
    work: Path,
    minilm_sample: int,
    threads: int,
    timeout: float | None,
) -> dict:
    """One size in its own process; its JSON record plus the child's wall time and max RSS
    (``wait4``: the whole process, imports included)."""
    size = parse_size(name)
    out = results / f"{size.name}.json"
    scratch = work / f"work-{size.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "experiments.scale.stages",
        f"--size={name}",
        f"--out={out}",
        f"--encoder={encoder}",
        f"--work={scratch}",
        f"--minilm-sample={minilm_sample}",
        f"--threads={threads}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(threads, 1)), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = None if timeout is None else t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: size {name} failed (exit {proc.returncode}); see above")
    record = json.loads(out.read_text())
    record["process"] = {
        "wall_s": time.perf_counter() - t0,
        "max_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
    }
    out.write_text(json.dumps(record, indent=1))
    return record


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (``make bench-scale``)."""
    from experiments.scale.report import load_results, write_readme

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="sizes to run")
    p.add_argument("--report", nargs="*", default=None, help="sizes in the README (default: all)")
    p.add_argument("--report-only", action="store_true", help="rebuild the README from results")
    p.add_argument("--results", default=str(RESULTS), help="folder of the JSON results")
    p.add_argument("--readme", default=str(README), help="README to write ('' : none)")
    p.add_argument("--encoder", default=None, help="encoder folder (default: the tiny BERT)")
    p.add_argument("--minilm-sample", type=int, default=256, help="texts timed with MiniLM")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    p.add_argument("--work", default=str(WORK), help="scratch folder (removed per size)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per size")
    args = p.parse_args(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for name in args.sizes:
        parse_size(name)  # a typo fails before the first size runs
    if not args.report_only:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        encoder = args.encoder or tiny_encoder(work / "tiny-bert")
        for name in args.sizes:
            print(f"[bench-scale] size {name}", file=sys.stderr, flush=True)
            run_one(name, encoder, results, work, args.minilm_sample, args.threads, args.timeout)
    names = args.report if args.report is not None else None
    records = load_results(results, [parse_size(n).name for n in names] if names else None)
    if args.readme:
        write_readme(Path(args.readme), records, results)
        print(f"wrote {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
