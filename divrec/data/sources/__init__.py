"""Registry of data sources: each name maps to a loader returning a ``RecDataset``.

Loaders are imported lazily by ``"module:function"`` path, so a source whose module (or
optional dependency) is missing only fails when it is used. ``load_source`` checks the
config keys against the loader's signature first, so a typo in ``data.*`` is reported as
``data.<key>: unknown key ...`` instead of a TypeError.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from divrec.data.dataset import RecDataset
from divrec.errors import ConfigError

SOURCES: dict[str, str] = {
    "movielens": "divrec.data.sources.movielens:load_movielens",
    "amazon": "divrec.data.sources.amazon:load_amazon",
    "recbole": "divrec.data.sources.recbole:load_recbole",
    "csv": "divrec.data.sources.csv:load_csv",
    "transactions": "divrec.data.sources.transactions:load_transactions",
    "shop_sim": "divrec.data.sources.shop_sim:load_shop_sim",
}


def get_loader(name: str) -> Callable[..., RecDataset]:
    """Import and return the loader registered as ``name`` (ConfigError if unknown)."""
    if name not in SOURCES:
        raise ConfigError(f"data.source: unknown source {name!r}; known: {', '.join(SOURCES)}")
    module_name, _, attr = SOURCES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigError(
                f"data.source: source {name!r} is registered but {module_name} is not available"
            ) from None
        raise
    return getattr(module, attr)


def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain dict/list so loaders can treat them as such."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def load_source(name: str, **kwargs: Any) -> RecDataset:
    """Load the dataset of source ``name`` with the loader's keyword arguments ``kwargs``."""
    loader = get_loader(name)
    params = inspect.signature(loader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [
        k
        for k, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    if not takes_any:
        for key in kwargs:
            if key not in allowed:
                raise ConfigError(
                    f"data.{key}: unknown key for source '{name}'; allowed: {', '.join(allowed)}"
                )
    for key in allowed:
        if params[key].default is inspect.Parameter.empty and key not in kwargs:
            raise ConfigError(f"data.{key}: required for source '{name}'")
    return loader(**{k: _plain(v) for k, v in kwargs.items()})


__all__ = ["SOURCES", "get_loader", "load_source"]
