"""The simulated shops ``make bench-scale`` measures: named sizes on one path to ml-25m.

Sizes lie on a log-linear path from the 300k shop measured before (20,000 items, 10,000 users,
300,000 interactions) to the ml-25m shape (62,000 items, 162,000 users, 25M interactions):
``items = 20,000 * (n / 300k) ** a_items``, ``users = 10,000 * (n / 300k) ** a_users`` with
the exponents that hit ml-25m exactly (0.256 and 0.630). Along this path the catalogue grows
slower than the interaction count, as in real logs, so a fit against interactions predicts
the ml-25m case. ``items-1m`` is off the path: a 1M-item catalogue with few interactions.
A custom size is ``INTERACTIONS/ITEMS/USERS`` (e.g. ``3000/300/150``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from divrec.errors import ConfigError

BASE = (300_000, 20_000, 10_000)  # interactions, items, users of the first measured shop
ML25M = (25_000_000, 62_000, 162_000)
A_ITEMS = math.log(ML25M[1] / BASE[1]) / math.log(ML25M[0] / BASE[0])
A_USERS = math.log(ML25M[2] / BASE[2]) / math.log(ML25M[0] / BASE[0])


@dataclass(frozen=True)
class Size:
    """One shop: ``load_shop_sim(n_items, n_users, n_interactions)``; ``on_path``: part of the
    fit against interactions (False: the 1M-item catalogue and custom sizes)."""

    name: str
    n_interactions: int
    n_items: int
    n_users: int
    on_path: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def on_path(name: str, n_interactions: int) -> Size:
    """The path's shop with ``n_interactions`` rows (see the module docstring)."""
    r = n_interactions / BASE[0]
    items = round(BASE[1] * r**A_ITEMS)
    users = round(BASE[2] * r**A_USERS)
    return Size(name, n_interactions, items, users)


PRESETS: dict[str, Size] = {
    "100k": on_path("100k", 100_000),
    "300k": on_path("300k", 300_000),
    "1.5m": on_path("1.5m", 1_500_000),
    "5m": on_path("5m", 5_000_000),
    "25m": Size("25m", *ML25M),  # the ml-25m-sized shop (the path's end)
    "items-1m": Size("items-1m", 40_000, 1_000_000, 2_000, on_path=False),
}
DEFAULT_SIZES = ("100k", "300k", "1.5m", "5m", "25m", "items-1m")


def parse_size(text: str) -> Size:
    """A preset name or ``INTERACTIONS/ITEMS/USERS``; ConfigError with the choices otherwise."""
    key = text.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    parts = key.split("/")
    try:
        n, items, users = (int(float(p)) for p in parts)
    except ValueError:
        raise ConfigError(
            f"size {text!r}: use one of {sorted(PRESETS)} or INTERACTIONS/ITEMS/USERS"
        ) from None
    return Size(f"{n}-{items}-{users}", n, items, users, on_path=False)
