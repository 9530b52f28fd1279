"""``make bench-peers``: divrec against RecBole 1.2.1 on one fixed split, whole processes.

For Pop, ItemKNN, EASE (l2 = reg_weight = 250) and divrec's default two-tower vs RecBole's
BPR, each tool runs as a user would start it (``python train.py ...`` with the split given;
RecBole through the shared ``run_recbole.py``), alternating tools within each round after one
untimed warm-up round (caches filled, files in the page cache). Measured per process: wall
time and the peak resident set of its process tree (psutil, sampled every 50 ms); reported:
the median over the rounds, the ratios divrec / RecBole (targets: wall <= 0.8x, memory
<= 1.0x) and whether the test metrics @10 agree. The table goes into
``experiments/benchmarks/README.md`` between the ``peers`` markers.

RecBole's venv is built with the shared ``setup_venv.sh`` into ``--venv`` (gitignored) when it
is missing; when it cannot be built (no network, no python3.11) the run is skipped with one
line. The split comes from the shared ``make_split.py`` and is checked against its published
sha256 prefixes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # a dependency of wandb, so installed with divrec

from divrec.errors import DataError, DivrecError
from divrec.utils.io import atomic_path
from experiments.benchmarks.readme import PEERS_BEGIN, PEERS_END, with_section

ROOT = Path(__file__).resolve().parents[2]
README = Path(__file__).resolve().parent / "README.md"
SPLIT_SHA = {"train.csv": "669380dad577", "valid.csv": "54c0b907e919", "test.csv": "6b7742ef4a1b"}
METRICS = ("ndcg", "recall", "mrr", "hit", "precision")
WALL_TARGET, MEMORY_TARGET = 0.8, 1.0


@dataclass(frozen=True)
class Pair:
    """One comparison: RecBole model (+ ``--set`` overrides) vs divrec overrides."""

    name: str
    recbole: str
    recbole_set: tuple[str, ...]
    divrec: tuple[str, ...]
    agree_expected: bool
    note: str = ""


PAIRS = {
    "pop": Pair("Pop", "Pop", (), ("model=pop",), False, "RecBole's Pop undercounts items "
                "repeated within a batch (README of the split): metrics differ by design"),
    "itemknn": Pair("ItemKNN (k 100)", "ItemKNN", (), ("model=itemknn",), False,
                    "equal cosines are common on 0/1 data; RecBole keeps the k-th neighbours "
                    "in argpartition order (and adds 1e-6 to the cosine's denominator), divrec "
                    "the lower item index; divrec's own test NDCG@10 spans 0.1802-0.1814 over "
                    "five item orders of the same split, so the metrics agree only to that "
                    "tie-breaking"),
    "ease": Pair("EASE (l2 250)", "EASE", ("reg_weight=250",),
                 ("model=ease", "model.options.l2=250"), True),
    "bpr": Pair("divrec two-tower vs RecBole BPR", "BPR", (), (), False,
                "different models: speed and memory of each tool's default neural model"),
}  # fmt: skip


@dataclass
class Runs:
    """Measurements of one tool on one pair: wall seconds, peak bytes, test metrics @10."""

    wall: list[float] = field(default_factory=list)
    peak: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def measure(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run ``cmd`` to the end: (wall seconds, peak RSS of its process tree in bytes)."""
    peak = [0]
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        watcher = threading.Thread(target=_watch, args=(proc, peak), daemon=True)
        watcher.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        watcher.join()
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed (exit {rc}); log: {log}")
    return wall, peak[0]


def _watch(proc: subprocess.Popen, peak: list[int]) -> None:
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:  # exited between the listing and the read
                    pass
        except psutil.Error:
            pass
        peak[0] = max(peak[0], total)
        time.sleep(0.05)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_split(shared: Path, data_dir: Path, work: Path) -> Path:
    """The fixed split under ``work/split`` (built once, checked every time)."""
    split = work / "split"
    if not all((split / n).is_file() for n in SPLIT_SHA) or not (split / "ml").is_dir():
        cmd = [sys.executable, str(shared / "make_split.py"), "--data-dir", str(data_dir)]
        subprocess.run([*cmd, "--out-dir", str(split)], check=True, capture_output=True)
    for name, prefix in SPLIT_SHA.items():
        if not sha256(split / name).startswith(prefix):
            raise DataError(f"{split / name}: not the published split (sha256 {prefix}...)")
    return split


def torch_spec() -> str:
    """A local CPU torch wheel of divrec's torch version (pip's find-links), else a pin."""
    import torch

    version = torch.__version__
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        hits = sorted(Path(folder).glob(f"torch-{version}-*.whl"))
        if hits:
            return str(hits[0])
    return f"torch=={version.split('+')[0]}"


def ensure_venv(venv: Path, shared: Path, log: Path) -> str | None:
    """Path of RecBole's python, building the venv when missing; None when it cannot be."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import recbole, torch"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    print(f"peers: building RecBole's venv in {venv} (minutes; log {log})", flush=True)
    with open(log, "w") as out:
        cmd = ["bash", str(shared / "setup_venv.sh"), str(venv), torch_spec()]
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        return None
    return str(python)


def divrec_cmd(pair: Pair, split: Path, run_dir: Path) -> list[str]:
    ml = split / "ml"
    return [
        sys.executable, "train.py", "data=movielens", "+protocol=recbole", "hydra.mode=RUN",
        "logger=csv", "data.split.method=given", f"data.split.train_file={ml}/ml.train.inter",
        f"data.split.valid_file={ml}/ml.valid.inter", f"data.split.test_file={ml}/ml.test.inter",
        *pair.divrec, f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def recbole_cmd(python: str, shared: Path, pair: Pair, split: Path, movies: Path, out: Path):
    sets = [a for s in pair.recbole_set for a in ("--set", s)]
    return [
        python, str(shared / "run_recbole.py"), "--model", pair.recbole, *sets,
        "--split-dir", str(split), "--movies", str(movies),
        "--out-dir", str(out / "json"), "--work-dir", str(out / "work"),
    ]  # fmt: skip


def divrec_metrics(run_dir: Path) -> dict[str, float]:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: float(m[f"test/{k}@10"]) for k in METRICS}


def recbole_metrics(out: Path, pair: Pair) -> dict[str, float]:
    m = json.loads((out / "json" / f"{pair.recbole}.json").read_text())["test"]
    return {k: float(m[f"{k}@10"]) for k in METRICS}


def agree(a: dict[str, float], b: dict[str, float]) -> bool:
    """Same test metrics @10 to RecBole's 6 printed decimals (float32 divrec values)."""
    return all(abs(a[k] - b[k]) <= 1e-6 for k in METRICS)


def bench(args: argparse.Namespace) -> str | None:
    """Run every pair; the README section text, or None when RecBole is unavailable."""
    data_dir = Path(os.environ.get("DIVREC_DATA_DIR", ROOT / "data")) / "movielens"
    shared = Path(args.recbole_dir or data_dir.parents[1] / "benchmarks" / "recbole-ml-small")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (shared / "run_recbole.py").is_file():
        print(f"peers: skipped: RecBole's runner not found in {shared} (--recbole-dir)")
        return None
    python = ensure_venv(Path(args.venv).resolve(), shared, work / "venv.log")
    if python is None:
        print(f"peers: skipped: RecBole's venv could not be built (see {work / 'venv.log'})")
        return None
    split = ensure_split(shared, data_dir / "ml-latest-small", work)
    movies = data_dir / "ml-latest-small" / "movies.csv"
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
    if args.threads > 0:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    floor = Runs()  # what a divrec run trained through Lightning pays before its data
    for _ in range(args.rounds):
        cmd = [sys.executable, "-c", "import lightning.pytorch"]
        wall, peak = measure(cmd, env, ROOT, work / "floor.log")
        floor.wall.append(wall)
        floor.peak.append(peak)
    results: dict[str, dict[str, Runs]] = {}
    for key in args.models:
        pair, res = PAIRS[key], {"divrec": Runs(), "recbole": Runs()}
        for r in range(args.rounds + (0 if args.no_warmup else 1)):
            timed = args.no_warmup or r > 0
            order = ("divrec", "recbole") if r % 2 == 0 else ("recbole", "divrec")
            for tool in order:
                run_dir = work / "runs" / f"{key}-{tool}-{r}"
                shutil.rmtree(run_dir, ignore_errors=True)
                cmd = (
                    divrec_cmd(pair, split, run_dir)
                    if tool == "divrec"
                    else recbole_cmd(python, shared, pair, split, movies, run_dir)
                )
                wall, peak = measure(cmd, env, ROOT, work / f"{key}-{tool}-{r}.log")
                res[tool].metrics = (
                    divrec_metrics(run_dir) if tool == "divrec" else recbole_metrics(run_dir, pair)
                )
                print(f"peers: {key} {tool} round {r}{'' if timed else ' (warm-up)'}: "
                      f"{wall:.1f} s, {peak / 2**30:.2f} GiB", flush=True)  # fmt: skip
                if timed:
                    res[tool].wall.append(wall)
                    res[tool].peak.append(peak)
        results[key] = res
    info = {"load": (load0, os.getloadavg()[0]), "wall": time.perf_counter() - t0}
    return section(results, args, info, floor)


def section(
    results: dict[str, dict[str, Runs]], args: argparse.Namespace, info: dict, floor: Runs
) -> str:
    """The README section: conditions, the table and the notes of each pair."""
    import torch

    rows = [
        "| comparison | divrec wall | RecBole wall | wall ratio (<= 0.8x) | divrec peak | "
        "RecBole peak | memory ratio (<= 1.0x) | NDCG@10 divrec / RecBole | metrics @10 |",
        "|" + " --- |" * 9,
    ]
    notes = []
    for key, res in results.items():
        pair, d, r = PAIRS[key], res["divrec"], res["recbole"]
        wd, wr = statistics.median(d.wall), statistics.median(r.wall)
        pd_, pr = statistics.median(d.peak), statistics.median(r.peak)
        same = agree(d.metrics, r.metrics)
        verdict = "agree" if same else ("DIFFER" if pair.agree_expected else "differ (expected)")
        rows.append(
            f"| {pair.name} | {wd:.1f} s | {wr:.1f} s | {wd / wr:.2f}x "
            f"{'ok' if wd / wr <= WALL_TARGET else 'OVER'} | {pd_ / 2**30:.2f} GiB | "
            f"{pr / 2**30:.2f} GiB | {pd_ / pr:.2f}x {'ok' if pd_ / pr <= MEMORY_TARGET else 'OVER'}"
            f" | {d.metrics['ndcg']:.6f} / {r.metrics['ndcg']:.6f} | {verdict} |"
        )
        if pair.note:
            notes.append(f"- {pair.name}: {pair.note}.")
    threads = args.threads if args.threads > 0 else "each tool's default"
    return "\n".join(
        [
            "## divrec vs RecBole (`make bench-peers`)",
            "",
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"{args.rounds} timed round(s) per tool and model"
            f"{'' if args.no_warmup else ' after one warm-up round'}, median; "
            f"threads: {threads}; torch {torch.__version__}",
            f"- 1-minute load average at start / end: {info['load'][0]:.1f} / "
            f"{info['load'][1]:.1f}; whole bench {info['wall']:.0f} s",
            "- whole processes from start to exit (imports, data, fit, validation, test, "
            "artefacts); peak = resident set of the process tree, sampled every 50 ms",
            f'- divrec\'s floor: `python -c "import lightning.pytorch"` alone takes '
            f"{statistics.median(floor.wall):.1f} s and {statistics.median(floor.peak) / 2**30:.2f}"
            " GiB here (torch, torchmetrics, torch._dynamo); runs that train through Lightning"
            " pay it, the closed-form baselines (Pop, ItemKNN, EASE) never import Lightning",
            "",
            *rows,
            "",
            *notes,
        ]
    )


def write_section(readme: Path, text: str) -> None:
    """Put ``text`` between the peers markers of ``readme`` (markers added when missing)."""
    old = readme.read_text() if readme.exists() else ""
    new = with_section(old, f"{PEERS_BEGIN}\n{text.strip()}\n{PEERS_END}")
    with atomic_path(readme) as tmp:
        tmp.write_text(new)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="pop,itemknn,ease,bpr", help="subset of " + ",".join(PAIRS)
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per tool and model")
    parser.add_argument("--no-warmup", action="store_true", help="time the first round too")
    parser.add_argument("--threads", type=int, default=0, help="OMP/MKL threads (0: defaults)")
    parser.add_argument("--venv", default=str(ROOT / ".venv-recbole"), help="RecBole's venv")
    parser.add_argument("--work", default=str(ROOT / ".cache" / "peers"), help="split, runs, logs")
    parser.add_argument("--recbole-dir", default=None, help="folder of run_recbole.py and co.")
    parser.add_argument("--readme", default=str(README), help="README to write the table into")
    parser.add_argument("--no-readme", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(PAIRS))
    if unknown or args.rounds < 1:
        parser.error(f"--models: unknown {unknown}" if unknown else "--rounds must be >= 1")
    try:
        text = bench(args)
    except (DivrecError, RuntimeError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"peers: error: {e}") from None
    if text is None:
        return
    print(text)
    if not args.no_readme:
        write_section(Path(args.readme), text)
        print(f"wrote {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
