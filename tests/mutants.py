"""``make mutants``: apply known bugs to a temporary COPY of the repository and check that the
fast tests notice each one.

Every mutant is a regex patch on one library file plus the few fast test files that must fail
with it. The working tree is never touched: the repository is copied once into a temporary
folder, each mutant patches the copy, runs ``pytest -m "not slow" -x`` on its test files there
and restores the file. A mutant whose pattern no longer matches is reported as ``STALE``
(and fails the script): fix the pattern after the library changed, never delete the check.

Usage: ``python -m tests.mutants [--list] [--only NAME ...] [--no-baseline] [--keep]``.
Exit status 0 only when every mutant was applied and killed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "outputs", "multirun", ".cache", "__pycache__", ".pytest_cache",
    ".ruff_cache", "*.egg-info", "wandb", "lightning_logs",
)  # fmt: skip

LEARN = "tests/test_learning.py::test_training_beats_the_untrained_model"
LEARN_DIV = "tests/test_learning.py::test_diversity_regulariser_lowers_its_term"
PIPE = "tests/evaluation/test_pipeline.py"
DM = "tests/data/test_datamodule.py"
TRAIN_NDCG = "tests/test_train.py::test_recommendations_reproduce_logged_ndcg"


@dataclass(frozen=True)
class Mutant:
    """``pattern`` (regex, must match ``count`` times in ``path``) -> ``repl``; ``tests``: the
    fast test files (or node ids) that must fail on it."""

    name: str
    path: str
    pattern: str
    repl: str
    tests: tuple[str, ...]
    count: int = 1

    def apply(self, text: str) -> str:
        """The mutated text; ValueError when the pattern does not match ``count`` times."""
        new, n = re.subn(self.pattern, self.repl, text, flags=re.MULTILINE)
        if n != self.count:
            raise ValueError(f"pattern not found {self.count}x (found {n}x): {self.pattern!r}")
        return new


MUTANTS: tuple[Mutant, ...] = (
    # --- the six the issue names ----------------------------------------------------------
    Mutant(
        "EASE text prior: diagonal multipliers dropped",
        "divrec/baselines/ease.py",
        r"b\[:, act\] = block\.addcmul_\(p, mu\.unsqueeze\(0\), value=-1\.0\)",
        "b[:, act] = block",
        ("tests/baselines/test_ease_prior.py",),
    ),
    Mutant(
        "EASE text prior: each column keeps all similarities, not its top neighbours",
        "divrec/baselines/ease.py",
        r"if k < len\(rows\):",
        "if False:",
        ("tests/baselines/test_ease_prior.py",),
    ),
    Mutant(
        "relevance loss negated (softmax)",
        "divrec/losses/relevance.py",
        r"return F\.cross_entropy\(logits, target\), logits",
        "return -F.cross_entropy(logits, target), logits",
        ("tests/losses/test_relevance.py", LEARN),
    ),
    Mutant(
        "relevance term negated in the training step",
        "divrec/models/module.py",
        r"loss = rel \+ self\.diversity_weight \* div",
        "loss = -rel + self.diversity_weight * div",
        (LEARN,),
    ),
    Mutant(
        "diversity regulariser sign flipped in the training step",
        "divrec/models/module.py",
        r"loss = rel \+ self\.diversity_weight \* div",
        "loss = rel - self.diversity_weight * div",
        (LEARN_DIV,),
    ),
    Mutant(
        "ILS term sign flipped",
        "divrec/losses/diversity.py",
        r"(ils = ils / .*\n\s+)return ils\.mean\(\)",
        r"\1return -ils.mean()",
        ("tests/losses/test_diversity.py",),
    ),
    Mutant(
        "category entropy term sign flipped",
        "divrec/losses/diversity.py",
        r"return \(q \* q\.clamp_min\(EPS\)\.log\(\)\)\.sum\(dim=1\)\.mean\(\)",
        "return -(q * q.clamp_min(EPS).log()).sum(dim=1).mean()",
        ("tests/losses/test_diversity.py",),
    ),
    Mutant(
        "seen items not masked (eval collate)",
        "divrec/data/datamodule.py",
        r"seen\[b, self\.seen\[u\]\] = True",
        "pass",
        (DM, TRAIN_NDCG),
    ),
    Mutant(
        "seen items not masked (ranker)",
        "divrec/evaluation/pipeline.py",
        r"masked = scores if seen is None else scores\.masked_fill\(seen\.bool\(\), float\(\"-inf\"\)\)",
        "masked = scores",
        (PIPE, TRAIN_NDCG),
    ),
    Mutant(
        "valid items not masked at test",
        "divrec/data/datamodule.py",
        r"pd\.concat\(\[self\.split\.train, self\.split\.valid\]\)",
        "self.split.train",
        (DM, TRAIN_NDCG),
    ),
    Mutant(
        "ideal DCG not capped at k",
        "divrec/metrics/accuracy.py",
        r"n_ideal = torch\.minimum\(n_truth\.round\(\)\.long\(\)\[:, None\], k_t\[None, :\]\)",
        "n_ideal = n_truth.round().long()[:, None].clamp_max(hits.shape[1]).expand(-1, len(ks))",
        ("tests/metrics/test_accuracy.py",),
    ),
    Mutant(
        "ideal DCG of one hit",
        "divrec/metrics/accuracy.py",
        r"idcg = ideal_table\[n_ideal\]",
        "idcg = ideal_table[n_ideal.clamp_max(1)]",
        ("tests/metrics/test_accuracy.py",),
    ),
    Mutant(
        "positive item leaks into the history (collate_train)",
        "divrec/data/datamodule.py",
        r"self\.history\.batch\(users, exclude=items\)",
        "self.history.batch(users)",
        (DM,),
    ),
    Mutant(
        "positive item leaks into the user text (training pairs read the full-history text)",
        "divrec/data/datamodule.py",
        r"text_rows = self\.train_text_rows\[idx\]",
        "text_rows = users",
        ("tests/data/test_user_text_leak.py",),
    ),
    Mutant(
        "positive item leaks into the history (History.batch)",
        "divrec/data/history.py",
        r"mask = mask & \(idx != exclude\[:, None\]\)",
        "mask = mask",
        (DM,),
    ),
    # --- more of the same kind --------------------------------------------------------------
    Mutant(
        "recall divided by k instead of |truth|",
        "divrec/metrics/accuracy.py",
        r"return n_hits\(hits, ks\) / n_truth\[:, None\]",
        "return n_hits(hits, ks) / torch.tensor(ks, dtype=hits.dtype, device=hits.device)",
        ("tests/metrics/test_accuracy.py",),
    ),
    Mutant(
        "logQ correction with the wrong sign",
        "divrec/losses/relevance.py",
        r"logits = logits - log_q\[item_idx\]",
        "logits = logits + log_q[item_idx]",
        ("tests/losses/test_relevance.py",),
    ),
    Mutant(
        "duplicate positives not masked",
        "divrec/losses/relevance.py",
        r"return logits\.masked_fill\(duplicate_mask\(item_idx\), float\(\"-inf\"\)\)",
        "return logits",
        ("tests/losses/test_relevance.py",),
    ),
    Mutant(
        "MMR rewards similarity",
        "divrec/rerank/mmr.py",
        r"torch\.add\(relevance, max_sim, alpha=-lam\)",
        "torch.add(relevance, max_sim, alpha=lam)",
        ("tests/rerank/", "tests/test_recommend.py"),
    ),
    Mutant(
        "top-k taken from the lowest scores",
        "divrec/rerank/candidates.py",
        r"vals, perm = torch\.sort\(vals, dim=1, descending=True, stable=True\)",
        "vals, perm = torch.sort(vals, dim=1, descending=False, stable=True)",
        ("tests/rerank/", PIPE),
    ),
    # --- repeat purchases (#19) --------------------------------------------------------------
    Mutant(
        "eval.mask_seen=false ignored (seen items still masked)",
        "divrec/evaluation/ranking.py",
        r"masked = seen if self\.mask_seen else None",
        "masked = seen",
        ("tests/baselines/test_buy_again.py::test_repeat_purchase_run_end_to_end",),
    ),
    Mutant(
        "repeat truth taken from the unseen items",
        "divrec/metrics/repeat.py",
        r"kept = truth & seen if",
        "kept = truth & ~seen if",
        ("tests/metrics/test_repeat.py",),
    ),
    Mutant(
        "buy_again fitted on a binarised matrix",
        "divrec/baselines/core.py",
        r"    if not counts:\n",
        "    if True:\n",
        ("tests/baselines/test_buy_again.py",),
    ),
    # --- score fusion, stochastic lists, exposure, sampled negatives --------------------------
    Mutant(
        "fusion ignores the part weights",
        "divrec/baselines/fusion.py",
        r"fused\[rows\] \+= \(part\[\"weight\"\] \* z\)\.float\(\)",
        "fused[rows] += z.float()",
        ("tests/baselines/test_fusion.py",),
    ),
    Mutant(
        "Plackett-Luce temperature ignored",
        "divrec/rerank/plackett_luce.py",
        r"keys = \(vals\.double\(\) / temperature \+ gumbel\)",
        "keys = (vals.double() + gumbel)",
        ("tests/rerank/test_plackett_luce.py",),
    ),
    Mutant(
        "expected exposure without the rank discount",
        "divrec/metrics/exposure.py",
        r"return patience \*\* torch\.arange\(k, dtype=torch\.float64, device=device\)",
        "return torch.ones(k, dtype=torch.float64, device=device)",
        ("tests/metrics/test_exposure.py",),
    ),
    Mutant(
        "sampled negatives' logQ correction added instead of subtracted",
        "divrec/losses/negatives.py",
        r"logits = logits - log_count\[cols\]",
        "logits = logits + log_count[cols]",
        ("tests/losses/test_negatives.py",),
    ),
)


def _copy_repo(dest: Path) -> Path:
    repo = dest / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORE, symlinks=True)
    return repo


def _env(repo: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(repo), "WANDB_MODE": "disabled"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def _pytest(repo: Path, tests: list[str], timeout: int) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(
            [*cmd, *tests], cwd=repo, env=_env(repo), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return proc.returncode, (lines[-1] if lines else proc.stderr.strip()[-200:])


def _imports_from(repo: Path) -> None:
    """Fail unless ``import divrec`` in the copy resolves to the copy (not an installed tree)."""
    out = subprocess.run(
        [sys.executable, "-c", "import divrec; print(divrec.__file__)"],
        cwd=repo, env=_env(repo), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not Path(out).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"mutants: the copy imports divrec from {out}, not from {repo}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--only", nargs="*", default=None, help="names (substrings) to run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or any(s in m.name for s in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.path} -> {' '.join(m.tests)}")
        return 0
    # SIGTERM unwinds like Ctrl-C: the running pytest is killed and the copy removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="divrec-mutants-"))
    try:
        repo = _copy_repo(tmp)
        _imports_from(repo)
        # Every pattern and test path is checked before anything runs: stale ones fail loudly.
        stale = [
            f"{m.name}: no test file {t}"
            for m in chosen
            for t in m.tests
            if not (repo / t.split("::")[0]).exists()
        ]
        for m in chosen:
            try:
                m.apply((repo / m.path).read_text())
            except ValueError as e:
                stale.append(f"{m.name} ({m.path}): {e}")
        if not args.no_baseline:
            tests = sorted({t for m in chosen for t in m.tests})
            rc, tail = _pytest(repo, tests, args.timeout * 2)
            if rc != 0:
                print(f"baseline: the unmutated tests fail ({tail}); fix them first")
                return 2
            print(f"baseline ok: {tail}")
        survivors, rows = [], []
        for m in chosen:
            missing = [t for t in m.tests if not (repo / t.split("::")[0]).exists()]
            if missing:
                rows.append(("STALE", m.name, f"no test file {missing}"))
                continue
            file = repo / m.path
            original = file.read_text()
            try:
                file.write_text(m.apply(original))
            except ValueError as e:
                rows.append(("STALE", m.name, str(e)))
                continue
            t0 = time.time()
            try:
                rc, tail = _pytest(repo, list(m.tests), args.timeout)
            finally:
                file.write_text(original)
            # 1: a test failed, 2: collection failed; anything else (no tests, timeout) is an
            # error of the script's set-up, not a kill.
            status = {0: "survived", 1: "killed", 2: "killed"}.get(rc, "ERROR")
            if status != "killed":
                survivors.append(m.name)
            rows.append((status, m.name, f"{tail} [{time.time() - t0:.0f} s]"))
            print(f"{status:9s} {m.name}: {tail} [{time.time() - t0:.0f} s]", flush=True)
        print("\nmutant report")
        for status, name, info in rows:
            print(f"  {status:9s} {name}  ({info})")
        print(
            f"{len(chosen)} mutants, {len(survivors)} survived or errored, "
            f"{len(stale)} stale (pattern not found or missing test file)"
        )
        for s in stale:
            print(f"  stale: {s}")
        return 1 if survivors or stale else 0
    finally:
        if args.keep:
            print(f"copy kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
