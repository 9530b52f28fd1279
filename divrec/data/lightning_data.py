"""``RecDataModule``: :class:`~divrec.data.datamodule.RecData` as a ``LightningDataModule``,
what a Lightning ``Trainer`` takes (``trainer.fit(module, datamodule=dm)``). No code of its own."""

from __future__ import annotations

import lightning.pytorch as pl

from divrec.data.datamodule import RecData


class RecDataModule(RecData, pl.LightningDataModule):
    """The data of a run trained or evaluated through Lightning (see ``RecData``)."""
