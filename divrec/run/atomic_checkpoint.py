"""Lightning's checkpoint writer and callback with atomic writes (see
:mod:`divrec.run.checkpoints`, which names them for ``conf/callbacks/default.yaml``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from divrec.run.checkpoints import inside
from divrec.utils.io import disk_error

log = logging.getLogger("divrec.run.checkpoints")


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to ``.<name>.<pid>.partial`` beside the target, fsync, then os.replace."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise disk_error(path, e) from None
        finally:
            tmp.unlink(missing_ok=True)


class AtomicCheckpoint(ModelCheckpoint):
    """ModelCheckpoint with atomic writes; keeps only "best" paths inside its own folder."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # the default one
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.best_model_path and not inside(self.best_model_path, self.dirpath):
            log.warning(
                "resumed checkpoint names a best checkpoint outside this run (%s): ignored",
                self.best_model_path,
            )
            self.best_model_path = ""
            self.best_model_score = None
