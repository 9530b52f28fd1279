"""Invoice-line transaction logs (e.g. UCI Online Retail) as a purchase dataset.

Input: one CSV file, optionally gzipped (detected by its magic bytes), one row per invoice
line. ``columns`` maps the contract names to the file's headers (default: the names
themselves): ``user``, ``item``, ``time``, ``quantity`` are required; ``invoice``, ``price``
and ``description`` are used when the column exists (a mapping given explicitly must exist).
The UCI Online Retail layout is ``MAPPING_UCI`` with ``time_format="%m/%d/%Y %H:%M"``.

``time`` holds epoch seconds or dates: ISO strings and other pandas-readable dates when
``time_format`` is null, else dates in that ``strftime`` format (parsed as UTC).

Lines are dropped in this order, each counted once, under the first rule it breaks, as
``tx/dropped_*`` in the data stats:

1. ``missing_user``: empty user (e.g. guest checkouts);
2. ``cancelled``: invoice id starting with ``cancel_prefix`` (UCI: ``C536379``);
3. ``nonpositive_quantity``: quantity <= 0 (returns and stock corrections);
4. ``non_product``: item code fully matching ``non_product_regex`` (postage, fees, ...).

The kept lines become one interaction per group of lines: per (user, item) with
``aggregate="pair"`` (the default), per (user, item, invoice) with ``"invoice"`` (repeat
purchases stay separate events; without an invoice column, per (user, item, time)). ``rating``
is the group's number of lines (``rating="count"``) or summed quantity (``"quantity"``),
``timestamp`` the time of its first (``timestamp="first"``) or last (``"last"``) line;
``tx/repeat_interactions`` counts the interactions whose (user, item) had an earlier one (0 for
``pair``; ``data.preprocess.dedup=none`` keeps them through preprocessing). The catalogue is the items with a kept
line; an item's title is its most frequent non-empty description (ties: alphabetically first;
none: the item code), categories are empty (no taxonomy), and with a price column the item
gets a ``price`` text column (median unit price, two decimals).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from divrec.data.dataset import RecDataset
from divrec.data.sources.csv import (
    empty_lists,
    read_delimited,
    read_header,
    require_file,
    to_seconds,
)
from divrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REQUIRED = ("user", "item", "time", "quantity")
OPTIONAL = ("invoice", "price", "description")
RATING_MODES = ("count", "quantity")
TIMESTAMP_MODES = ("first", "last")
AGGREGATE_MODES = ("pair", "invoice")
# Service codes of the UCI Online Retail files: postage (POST, DOT, C2), manual entries (M, m),
# discounts (D), samples (S), bad-debt adjustments (B, ADJUST*), fees (BANK CHARGES, AMAZONFEE,
# CRUK commission) and test lines (TEST*). Gift vouchers and PADS are left in: they are sold.
NON_PRODUCT_REGEX = r"POST|DOT|C2|M|m|D|S|B|CRUK|BANK CHARGES|AMAZONFEE|ADJUST\d*|TEST\d*"
MAPPING_UCI = {
    "user": "CustomerID",
    "item": "StockCode",
    "time": "InvoiceDate",
    "quantity": "Quantity",
    "invoice": "InvoiceNo",
    "price": "UnitPrice",
    "description": "Description",
}
_FLOAT_ID = re.compile(r"^(\d+)\.0+$")  # 17850.0 -> 17850 (ids written as floats by exports)


def _column_map(columns: dict | None, header: list[str], path: Path) -> dict[str, str]:
    """Contract name -> file column for the required and the present optional columns."""
    given = dict(columns or {})
    for key in given:
        if key not in REQUIRED + OPTIONAL:
            allowed = ", ".join(REQUIRED + OPTIONAL)
            raise ConfigError(f"data.columns.{key}: unknown key; allowed: {allowed}")
    cols = {k: str(given.get(k, k)) for k in REQUIRED + OPTIONAL}
    for key, col in cols.items():
        if col not in header and (key in REQUIRED or key in given):
            raise DataError(f"{path}: missing column {col!r} (data.columns.{key}); have {header}")
    return {k: c for k, c in cols.items() if c in header}


def _seconds(values: pd.Series, fmt: str | None, col: str, path: Path) -> np.ndarray:
    """Epoch seconds of the time column; the first unparsable value is a DataError."""
    if fmt is None:
        secs = to_seconds(values)
    else:
        dt = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
        secs = np.floor((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(1, "s"))
    bad = secs.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        want = f"a date in format {fmt!r}" if fmt else "a number or a date"
        raise DataError(
            f"{path} line {i + 2}: {col} {values.iloc[i]!r} is not {want} "
            f"({int(bad.sum())} bad value(s))"
        )
    return secs.to_numpy().astype("int64")


def _titles(lines: pd.DataFrame) -> pd.Series:
    """item_id -> most frequent non-empty description (ties: alphabetically first)."""
    desc = lines.loc[lines["description"] != "", ["item_id", "description"]]
    counts = desc.groupby(["item_id", "description"]).size().reset_index(name="n")
    counts = counts.sort_values(["item_id", "n", "description"], ascending=[True, False, True])
    return counts.drop_duplicates("item_id").set_index("item_id")["description"]


def _drop_masks(
    df: pd.DataFrame, cancel_prefix: str | None, non_product: re.Pattern | None
) -> dict[str, np.ndarray]:
    """Rule name -> rows it drops, each row under the first rule it breaks."""
    rules = {
        "missing_user": (df["user_id"] == "").to_numpy(),
        "cancelled": df["invoice"].str.startswith(cancel_prefix).to_numpy()
        if cancel_prefix
        else np.zeros(len(df), bool),
        "nonpositive_quantity": (df["quantity"] <= 0).to_numpy(),
        "non_product": df["item_id"].str.fullmatch(non_product).to_numpy()
        if non_product is not None
        else np.zeros(len(df), bool),
    }
    taken = np.zeros(len(df), bool)
    out = {}
    for name, mask in rules.items():
        out[name] = mask & ~taken
        taken |= mask
    return out


def _interactions(lines: pd.DataFrame, keys: list[str], rating: str, timestamp: str):
    """One row per group of ``lines`` by ``keys`` (user, item first): user_id, item_id, rating,
    timestamp, ordered by (timestamp, user_id, item_id)."""
    groups = lines.groupby(keys, sort=True).agg(
        count=("ts", "size"), quantity=("quantity", "sum"), first=("ts", "min"), last=("ts", "max")
    )
    inter = pd.DataFrame(
        {
            "user_id": groups.index.get_level_values(0),
            "item_id": groups.index.get_level_values(1),
            "rating": groups[rating].to_numpy(dtype="float64"),
            "timestamp": groups[timestamp].to_numpy(),
        }
    )
    return inter.sort_values(["timestamp", "user_id", "item_id"], kind="stable")


def load_transactions(
    path: str,
    columns: dict | None = None,
    time_format: str | None = None,
    rating: str = "count",
    timestamp: str = "first",
    aggregate: str = "pair",
    cancel_prefix: str | None = "C",
    non_product_regex: str | None = NON_PRODUCT_REGEX,
    sep: str = ",",
    encoding: str = "utf-8-sig",
) -> RecDataset:
    """Load an invoice-line CSV into purchase interactions (one per group, see ``aggregate``)."""
    if rating not in RATING_MODES:
        raise ConfigError(f"data.rating: must be one of {list(RATING_MODES)}, got {rating!r}")
    if timestamp not in TIMESTAMP_MODES:
        raise ConfigError(
            f"data.timestamp: must be one of {list(TIMESTAMP_MODES)}, got {timestamp!r}"
        )
    if aggregate not in AGGREGATE_MODES:
        raise ConfigError(
            f"data.aggregate: must be one of {list(AGGREGATE_MODES)}, got {aggregate!r}"
        )
    try:
        non_product = re.compile(non_product_regex) if non_product_regex else None
    except re.error as exc:
        raise ConfigError(f"data.non_product_regex: invalid regex ({exc})") from None
    file = require_file(path)
    header = read_header(file, sep, encoding)
    cols = _column_map(columns, header, file)
    kinds = {c: "text" for c in cols.values()}
    kinds[cols["item"]] = "id"
    kinds[cols["quantity"]] = "float"
    raw = read_delimited(file, kinds, sep=sep, encoding=encoding)

    def text(key: str) -> pd.Series:
        return raw[cols[key]].str.strip() if key in cols else pd.Series("", index=raw.index)

    df = pd.DataFrame(
        {
            "user_id": text("user").str.replace(_FLOAT_ID, r"\1", regex=True),
            "item_id": text("item"),
            "quantity": raw[cols["quantity"]],
            "invoice": text("invoice"),
            "description": text("description"),
            "price": pd.to_numeric(text("price"), errors="coerce"),
        }
    )
    df["ts"] = _seconds(raw[cols["time"]], time_format, cols["time"], file)
    masks = _drop_masks(df, cancel_prefix, non_product)
    keep = ~np.logical_or.reduce(list(masks.values()))
    stats = {"tx/lines": len(df), **{f"tx/dropped_{k}": int(m.sum()) for k, m in masks.items()}}
    stats["tx/kept_lines"] = int(keep.sum())
    log.info("%s: %s", file, stats)
    lines = df.loc[keep].reset_index(drop=True)
    if len(lines) == 0:
        raise DataError(f"{file}: no purchase lines left after the drops {stats}")

    keys = ["user_id", "item_id"]
    if aggregate == "invoice":
        keys.append("invoice" if "invoice" in cols else "ts")
    inter = _interactions(lines, keys, rating, timestamp)
    stats["tx/repeat_interactions"] = int(inter.duplicated(["user_id", "item_id"]).sum())

    item_ids = np.sort(lines["item_id"].unique())
    titles = _titles(lines)
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [titles.get(i, i) for i in item_ids],
            "categories": empty_lists(len(item_ids)),
        }
    )
    if "price" in cols:
        median = lines.groupby("item_id")["price"].median()
        items["price"] = [
            "" if np.isnan(median.get(i, np.nan)) else f"{median[i]:.2f}" for i in item_ids
        ]
    name = file.name.removesuffix(".gz").removesuffix(".csv")
    return RecDataset(name=name, interactions=inter, items=items, extra={"stats": stats})


__all__ = ["MAPPING_UCI", "NON_PRODUCT_REGEX", "load_transactions"]
