"""Classic recommendation baselines behind one interface (see ``base.Baseline``).

``build_baseline(name, n_users, n_items, **kwargs)`` is the harness's entry point. Each class
is imported when first asked for (``BASELINES[name]``, ``from divrec.baselines import BPR``):
the pairwise ones are LightningModules, and a closed-form run never imports Lightning.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from divrec.baselines.base import Baseline, is_int
from divrec.errors import ConfigError

# name -> (module under divrec.baselines, class)
_WHERE = {
    "pop": ("pop", "Pop"),
    "itemknn": ("itemknn", "ItemKNN"),
    "ease": ("ease", "EASE"),
    "bpr": ("bpr", "BPR"),
    "lightgcn": ("lightgcn", "LightGCN"),
    "buy_again": ("buy_again", "BuyAgain"),
    "fusion": ("fusion", "Fusion"),
}
_CLASSES = {cls: mod for mod, cls in _WHERE.values()} | {"PairwiseBaseline": "bpr"}


class _Registry(Mapping):
    """``{name: Baseline class}``; a class's module is imported on first lookup."""

    def __getitem__(self, name: str) -> type[Baseline]:
        mod, cls = _WHERE[name]
        return getattr(importlib.import_module(f"divrec.baselines.{mod}"), cls)

    def __contains__(self, name: object) -> bool:
        return name in _WHERE

    def __iter__(self) -> Iterator[str]:
        return iter(_WHERE)

    def __len__(self) -> int:
        return len(_WHERE)


BASELINES: Mapping[str, type[Baseline]] = _Registry()


def __getattr__(name: str) -> Any:
    """``BPR``, ``EASE``, ... imported on first use (PEP 562)."""
    if name in _CLASSES:
        return getattr(importlib.import_module(f"divrec.baselines.{_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SIZE_ARGS = ("n_users", "n_items")


def baseline_options(name: str) -> list[str]:
    """Keyword options a baseline accepts besides n_users/n_items (its constructor's)."""
    params = inspect.signature(BASELINES[name].__init__).parameters
    return [p for p in params if p != "self" and p not in _SIZE_ARGS]


def build_baseline(name: str, n_users: int, n_items: int, **kwargs: Any) -> Baseline:
    """Construct baseline ``name`` for a [n_users, n_items] training matrix.

    Raises ConfigError for an unknown name or option (the message lists the allowed ones) or a
    bad value. ``fit`` then checks that the training matrix has shape (n_users, n_items).
    """
    key = str(name).lower()
    if key not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; allowed: {', '.join(BASELINES)}")
    allowed = baseline_options(key)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"baseline {key!r}: unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or '(none)'}"
        )
    if not (is_int(n_users) and is_int(n_items) and min(n_users, n_items) >= 1):
        raise ConfigError(
            f"baseline {key!r}: n_users and n_items must be integers >= 1, "
            f"got {n_users!r}, {n_items!r}"
        )
    cls = BASELINES[key]
    if all(a in inspect.signature(cls.__init__).parameters for a in _SIZE_ARGS):
        model = cls(int(n_users), int(n_items), **kwargs)
    else:
        model = cls(**kwargs)
    model.expected_shape = (int(n_users), int(n_items))
    return model


__all__ = [
    "BASELINES",
    "BPR",
    "EASE",
    "Baseline",
    "BuyAgain",
    "Fusion",
    "ItemKNN",
    "LightGCN",
    "PairwiseBaseline",
    "Pop",
    "baseline_options",
    "build_baseline",
]
