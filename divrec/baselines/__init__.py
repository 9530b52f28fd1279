"""Classic recommendation baselines behind one interface (see ``base.Baseline``).

``build_baseline(name, n_users, n_items, **kwargs)`` is the harness's entry point.
"""

from __future__ import annotations

import inspect
from typing import Any

from divrec.baselines.base import Baseline, is_int
from divrec.baselines.bpr import BPR, PairwiseBaseline
from divrec.baselines.buy_again import BuyAgain
from divrec.baselines.ease import EASE
from divrec.baselines.fusion import Fusion
from divrec.baselines.itemknn import ItemKNN
from divrec.baselines.lightgcn import LightGCN
from divrec.baselines.pop import Pop
from divrec.errors import ConfigError

BASELINES: dict[str, type[Baseline]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "ease": EASE,
    "bpr": BPR,
    "lightgcn": LightGCN,
    "buy_again": BuyAgain,
    "fusion": Fusion,
}

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
