"""Start-up: what ``python train.py`` imports before its first log line stays light.

Hydra loads ``divrec.run.folder`` (its start-up callback) and ``train.py`` imports
``divrec.run.train`` before any log line; torch and Lightning take seconds to import, so
they are imported inside ``train()``, after the run's first line.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "lightning", "torchmetrics", "transformers", "pandas", "scipy", "datasets")


def test_entry_modules_import_nothing_heavy() -> None:
    code = (
        "import sys, divrec.run.folder, divrec.run.train, divrec.run.checkpoints\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_checkpoint_classes_still_load_by_their_config_name() -> None:
    from divrec.run import atomic_checkpoint, checkpoints

    assert checkpoints.AtomicCheckpoint is atomic_checkpoint.AtomicCheckpoint
    assert checkpoints.AtomicCheckpointIO is atomic_checkpoint.AtomicCheckpointIO
