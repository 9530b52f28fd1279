"""Data layer: sources -> RecDataset -> preprocess -> split -> text -> DataModule."""

from divrec.data.dataset import RecDataset

__all__ = ["RecDataset"]
