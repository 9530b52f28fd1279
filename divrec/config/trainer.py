"""Start-up checks of the ``trainer`` group against Lightning's ``Trainer``, before any data loads.

Without them a bad ``trainer.precision``, a negative ``trainer.max_epochs`` or
``trainer.accelerator=gpu`` on a machine without a GPU fail only after the data pipeline ran,
as a Hydra instantiate traceback. Keys are checked against ``Trainer.__init__``'s signature;
values against the rules Lightning itself applies. The signature is read from Lightning's
source, not by importing it (seconds): a closed-form baseline's run never loads Lightning.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path
from typing import Any, get_args

from omegaconf import DictConfig, ListConfig, OmegaConf

# Minimum values of integer knobs (Lightning rejects anything lower, after the data loaded).
_INT_MIN = {
    "max_epochs": -1,
    "min_epochs": 0,
    "max_steps": -1,
    "min_steps": 0,
    "num_nodes": 1,
    "accumulate_grad_batches": 1,
    "check_val_every_n_epoch": 1,
    "log_every_n_steps": 1,
    "num_sanity_val_steps": -1,
}
_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "val_check_interval")
_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "xla", "hpu")


def _precisions() -> list[str]:
    """The precision names Lightning accepts (its own lists; ints 16/32/64 are aliases)."""
    from lightning.fabric import connector as c

    return [
        str(p) for p in (*get_args(c._PRECISION_INPUT_STR), *get_args(c._PRECISION_INPUT_STR_ALIAS))
    ]


@functools.cache
def trainer_arguments() -> tuple[str, ...]:
    """Argument names of Lightning's ``Trainer.__init__`` (from its source file; by importing
    Lightning when that file cannot be read)."""
    spec = importlib.util.find_spec("lightning")
    source = Path(spec.origin).parent / "pytorch" / "trainer" / "trainer.py" if spec else None
    try:
        tree = ast.parse(source.read_text())  # type: ignore[union-attr]
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
        init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        args = [*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs]
        return tuple(a.arg for a in args if a.arg != "self")
    except (AttributeError, OSError, StopIteration, SyntaxError):
        import inspect

        import lightning.pytorch as pl

        return tuple(k for k in inspect.signature(pl.Trainer.__init__).parameters if k != "self")


def check_trainer(node: DictConfig, errors: list[str], did_you_mean) -> None:
    """Append one message per problem of ``trainer`` (``node``) to ``errors``."""
    allowed = list(trainer_arguments())
    values: dict[str, Any] = {}
    for key in node:
        if key == "_target_":
            continue
        if key not in allowed:
            errors.append(f"trainer.{key}: not a Trainer argument{did_you_mean(key, allowed)}")
            continue
        try:
            value = node[key]
        except Exception as e:  # noqa: BLE001 - a broken interpolation
            errors.append(f"trainer.{key}: cannot be read ({type(e).__name__}: {e})")
            continue
        values[key] = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    _check_values(values, errors)


def _check_values(v: dict[str, Any], errors: list[str]) -> None:
    for key, low in _INT_MIN.items():
        x = v.get(key)
        if x is None:
            continue
        if isinstance(x, bool) or not isinstance(x, int) or x < low:
            errors.append(f"trainer.{key}: expected an integer >= {low}, got {x!r}")
    for key in _LIMITS:
        x = v.get(key)
        if x is None:
            continue
        ok = not isinstance(x, bool) and (
            (isinstance(x, int) and x >= 0) or (isinstance(x, float) and 0.0 <= x <= 1.0)
        )
        if not ok:
            errors.append(f"trainer.{key}: expected a share in [0, 1] or a count >= 0, got {x!r}")
    clip = v.get("gradient_clip_val")
    if clip is not None and (
        isinstance(clip, bool) or not isinstance(clip, int | float) or clip < 0
    ):
        errors.append(f"trainer.gradient_clip_val: expected a number >= 0, got {clip!r}")
    prec = v.get("precision")
    if prec is not None and str(prec) not in _precisions():
        choices = ", ".join(_precisions())
        errors.append(f"trainer.precision: {prec!r} unknown; choose one of {choices} (null: auto)")
    acc = v.get("accelerator")
    if acc is not None and not isinstance(acc, str):
        errors.append(f"trainer.accelerator: expected a name, got {acc!r}")
    elif acc is not None and acc not in _ACCELERATORS:
        errors.append(f"trainer.accelerator: {acc!r} unknown; choose one of {list(_ACCELERATORS)}")
    elif acc in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            errors.append(
                f"trainer.accelerator={acc}: no CUDA GPU is visible here "
                "(torch.cuda.is_available() is False); use trainer=cpu or accelerator=auto"
            )
    devices = v.get("devices")
    if devices is not None and not (
        devices == "auto"
        or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= -1)
        or (isinstance(devices, list) and all(isinstance(d, int) for d in devices))
        or (isinstance(devices, str) and devices.replace(",", "").strip().isdigit())
    ):
        errors.append(
            f"trainer.devices: expected a count, a list of ids or 'auto', got {devices!r}"
        )
