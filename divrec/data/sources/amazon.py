"""Amazon Reviews per-category files (2018 and 2023 releases) -> RecDataset.

- 2018 (McAuley lab, UCSD): reviews ``reviewerID, asin, overall, unixReviewTime`` (seconds);
  metadata ``asin, title, description (list|str), category (list), main_cat, brand``.
- 2023 (McAuley lab): reviews ``user_id, parent_asin, rating, timestamp`` (milliseconds);
  metadata ``parent_asin, title, description (list), categories (list), main_category,
  store``. Items are parent ASINs.

Files: one JSON object per line (``.json``/``.jsonl``), optionally gzipped (detected by the
gzip magic bytes). Lines that are not strict JSON are read as Python literals (the loose
single-quoted style of some older dumps). Text is HTML-unescaped (``&amp;`` -> ``&``).
A category list ``["Electronics", "Audio", "Headphones"]`` becomes the single hierarchical
category ``"Electronics > Audio > Headphones"`` (2023 falls back to ``main_category``).
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from divrec.data.dataset import CATEGORY_SEP, RecDataset
from divrec.data.sources.csv import check_unknown_items_mode, empty_lists, require_file
from divrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# layout -> review field names (user, item, rating, time), time unit divisor to seconds.
REVIEW_FIELDS = {
    "2018": (("reviewerID", "asin", "overall", "unixReviewTime"), 1),
    "2023": (("user_id", "parent_asin", "rating", "timestamp"), 1000),
}
# layout -> metadata field names (item, title, description, categories, main category, brand).
META_FIELDS = {
    "2018": ("asin", "title", "description", "category", "main_cat", "brand"),
    "2023": ("parent_asin", "title", "description", "categories", "main_category", "store"),
}


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a (gzipped) JSON-lines file."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    try:
                        obj = ast.literal_eval(line)
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        raise DataError(f"{path} line {line_no}: not a JSON object") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path} line {line_no}: not a JSON object")
                yield line_no, obj
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def _text(value: Any) -> str:
    """HTML-unescaped, whitespace-normalised text; lists are joined with spaces."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(_text(v) for v in value)
    return " ".join(html.unescape(str(value)).split())


def _category(path_list: Any, fallback: Any) -> list[str]:
    """One hierarchical category string from a category path list (or the fallback)."""
    if isinstance(path_list, str):
        path_list = [path_list]
    levels = [_text(c) for c in (path_list or [])]
    levels = [c for c in levels if c]
    if levels:
        return [CATEGORY_SEP.join(levels)]
    fallback = _text(fallback)
    return [fallback] if fallback else []


def _detect_layout(keys: set[str], path: Path) -> str:
    for layout, (fields, _) in REVIEW_FIELDS.items():
        if set(fields) <= keys:
            return layout
    raise DataError(
        f"{path}: cannot tell the Amazon layout from fields {sorted(keys)}; expected 2018 "
        f"{list(REVIEW_FIELDS['2018'][0])} or 2023 {list(REVIEW_FIELDS['2023'][0])}"
    )


def _read_reviews(path: Path, layout: str) -> tuple[pd.DataFrame, str]:
    rows: list[tuple[str, str, float, int]] = []
    fields: tuple[str, ...] = ()
    divisor = 1
    for line_no, obj in iter_json_lines(path):
        if not fields:
            if layout == "auto":
                layout = _detect_layout(set(obj), path)
            fields, divisor = REVIEW_FIELDS[layout]
        missing = [f for f in fields if obj.get(f) in (None, "")]
        if missing:
            raise DataError(f"{path} line {line_no}: missing field(s) {missing}")
        user, item, rating, ts = (obj[f] for f in fields)
        try:
            rating, ts = float(rating), int(float(ts)) // divisor
        except (TypeError, ValueError):
            raise DataError(f"{path} line {line_no}: non-numeric rating or timestamp") from None
        if not np.isfinite(rating):
            raise DataError(f"{path} line {line_no}: rating is NaN or infinite")
        rows.append((str(user), str(item), rating, ts))
    if not rows:
        raise DataError(f"{path}: no reviews")
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]), layout


def _read_meta(path: Path, layout: str) -> pd.DataFrame:
    id_f, title_f, desc_f, cat_f, main_f, brand_f = META_FIELDS[layout]
    rows, seen, dups = [], set(), 0
    for line_no, obj in iter_json_lines(path):
        item = obj.get(id_f)
        if item in (None, ""):
            raise DataError(f"{path} line {line_no}: missing field {id_f!r}")
        item = str(item)
        if item in seen:
            dups += 1
            continue
        seen.add(item)
        rows.append(
            {
                "item_id": item,
                "title": _text(obj.get(title_f)) or item,
                "categories": _category(obj.get(cat_f), obj.get(main_f)),
                "description": _text(obj.get(desc_f)),
                "main_category": _text(obj.get(main_f)),
                "brand": _text(obj.get(brand_f)),
            }
        )
    if not rows:
        raise DataError(f"{path}: no metadata rows")
    if dups:
        log.warning("%s: %d duplicate metadata row(s) dropped (kept first)", path, dups)
    return pd.DataFrame(rows)


def load_amazon(
    reviews: str,
    meta: str | None = None,
    layout: str | int = "auto",
    drop_missing_meta: bool = True,
    unknown_items: str = "drop",
) -> RecDataset:
    """Load one Amazon Reviews category: ``reviews`` file and optional ``meta`` file.

    ``layout``: "auto" (from the first review's fields), "2018" or "2023" (YAML and the
    command line give ``data.layout=2018`` as an int: accepted). Reviewed items
    without metadata are counted in a warning and dropped (``drop_missing_meta``) or kept
    with title = item id and no category; ``unknown_items="error"`` raises instead.
    Without ``meta`` the catalogue is the reviewed items (title = item id, no categories).
    """
    layout = str(layout)
    if layout not in ("auto", *REVIEW_FIELDS):
        raise ConfigError(f"data.layout: must be 'auto', '2018' or '2023', got {layout!r}")
    check_unknown_items_mode(unknown_items)
    reviews_path = require_file(reviews)
    inter, layout = _read_reviews(reviews_path, layout)
    extra: dict[str, Any] = {"source": "amazon", "layout": layout}
    reviewed = pd.Index(inter["item_id"].unique())
    if meta is None:
        items = pd.DataFrame(
            {"item_id": reviewed, "title": reviewed, "categories": empty_lists(len(reviewed))}
        )
        return RecDataset(
            name=reviews_path.name.split(".")[0], interactions=inter, items=items, extra=extra
        )

    meta_path = require_file(meta)
    items = _read_meta(meta_path, layout)
    lacking = reviewed.difference(pd.Index(items["item_id"]))
    if len(lacking):
        n_rev = int(inter["item_id"].isin(set(lacking)).sum())
        msg = (f"{meta_path}: {len(lacking)} reviewed item(s) ({n_rev} review(s)) have no "
               f"metadata, e.g. {list(lacking[:3])}")  # fmt: skip
        if unknown_items == "error":
            raise DataError(msg)
        if drop_missing_meta:
            log.warning("%s; dropped (drop_missing_meta=True)", msg)
            inter = inter[~inter["item_id"].isin(set(lacking))].reset_index(drop=True)
        else:
            log.warning("%s; kept with title = item id (drop_missing_meta=False)", msg)
            filler = pd.DataFrame(
                {"item_id": lacking, "title": lacking, "categories": empty_lists(len(lacking))}
            )
            items = pd.concat([items, filler], ignore_index=True).fillna("")
        extra["items_without_meta"] = len(lacking)
    name = reviews_path.name.split(".")[0]
    return RecDataset(name=name, interactions=inter, items=items, extra=extra)
