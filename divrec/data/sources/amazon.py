"""Amazon Reviews per-category files (2018 and 2023 releases) -> RecDataset.

- 2018 (McAuley lab, UCSD): reviews ``reviewerID, asin, overall, unixReviewTime`` (seconds);
  metadata ``asin, title, description (list|str), category (list), main_cat, brand``.
- 2023 (McAuley lab): reviews ``user_id, parent_asin, rating, timestamp`` (milliseconds);
  metadata ``parent_asin, title, description (list), categories (list), main_category,
  store``. Items are parent ASINs.

Files: one JSON object per line (``.json``/``.jsonl``), optionally gzipped (detected by the
gzip magic bytes). Lines that are not strict JSON are read as Python literals (the loose
single-quoted style of some older dumps). Text is cleaned (``amazon_text``): entities
unescaped, HTML tags stripped, junk titles replaced by a fallback; counted in ``text/*`` stats.
Folder layout: ``$DIVREC_DATA_DIR/amazon/<version>/<category>/`` (see ``load_amazon``).
A category list ``["Electronics", "Audio", "Headphones"]`` becomes the single hierarchical
category ``"Electronics > Audio > Headphones"`` (2023 falls back to ``main_category``).
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from divrec.data.dataset import CATEGORY_SEP, RecDataset
from divrec.data.sources.amazon_text import TitleCleaner, clean_text
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
    """Plain text: entities unescaped, HTML tags removed, whitespace normalised."""
    return clean_text(value)[0]


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


def _read_meta(path: Path, layout: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Items of a metadata file (first row per id) and the text-cleaning counts."""
    id_f, title_f, desc_f, cat_f, main_f, brand_f = META_FIELDS[layout]
    rows, seen, dups = [], set(), 0
    cleaner = TitleCleaner()
    for line_no, obj in iter_json_lines(path):
        item = obj.get(id_f)
        if item in (None, ""):
            raise DataError(f"{path} line {line_no}: missing field {id_f!r}")
        item = str(item)
        if item in seen:
            dups += 1
            continue
        seen.add(item)
        f = cleaner.fields(
            item, obj.get(title_f), obj.get(desc_f), obj.get(brand_f), obj.get(main_f)
        )
        categories = _category(obj.get(cat_f), f["main"])
        leaf = categories[0].split(CATEGORY_SEP)[-1] if categories else ""
        title = cleaner.title(item, f["title"], f["description"], f["brand"], leaf)
        rows.append(
            {
                "item_id": item,
                "title": title,
                "categories": categories,
                "description": f["description"],
                "main_category": f["main"],
                "brand": f["brand"],
            }
        )
    if not rows:
        raise DataError(f"{path}: no metadata rows")
    if dups:
        log.warning("%s: %d duplicate metadata row(s) dropped (kept first)", path, dups)
    stats = cleaner.stats()
    if stats["text/cleaned_titles"] or stats["text/titles_from_fallback"]:
        log.warning(
            "%s: %d title(s) cleaned of markup or junk, %d taken from description/brand/"
            "category, %d left as the item id; %d item(s) had HTML stripped",
            path, stats["text/cleaned_titles"], stats["text/titles_from_fallback"],
            stats["text/titles_from_id"], stats["text/html_stripped"],
        )  # fmt: skip
    return pd.DataFrame(rows), stats


# ------------------------------------------------------------------ files under data.root
VERSIONS = ("2018", "2023")
# version -> file names in <root>/<version>/<category>/ ({c}: the category folder name).
FILE_NAMES = {"2018": ("{c}.json.gz", "{c}.json"), "2023": ("{c}.jsonl.gz", "{c}.jsonl")}


def default_root() -> Path | None:
    """``$DIVREC_DATA_DIR/amazon`` (the folder holding ``<version>/<category>/``), else None."""
    base = os.environ.get("DIVREC_DATA_DIR")
    return Path(base).expanduser() / "amazon" if base else None


def _version(value: str | int | None, key: str) -> str | None:
    """``2018``/``"2018"``/``2023``/``"2023"`` as a string (None stays None)."""
    if value is None:
        return None
    if str(value) not in VERSIONS:
        raise ConfigError(f"data.{key}: must be 2018 or 2023, got {value!r}")
    return str(value)


def category_folder(root: Path | None, category: str, version: str | None) -> tuple[Path, str]:
    """``(<root>/<version>/<category>, version)``; the version is inferred when unique."""
    if root is None:
        raise ConfigError(
            f"data.category={category}: set DIVREC_DATA_DIR (or data.root) to the folder "
            "holding amazon/<version>/<category>/"
        )
    tried = [root / v / category for v in ([version] if version else VERSIONS)]
    found = [t for t in tried if t.is_dir()]
    if len(found) > 1:
        raise ConfigError(
            f"data.category={category}: found under both {found[0]} and {found[1]}; "
            "set data.version=2018 or data.version=2023"
        )
    if not found:
        have = sorted(
            f"{d.parent.name}/{d.name}" for t in tried if t.parent.is_dir() for d in
            t.parent.iterdir() if d.is_dir()
        )  # fmt: skip
        hint = f"; available: {', '.join(have)}" if have else ""
        raise DataError(f"data.category={category}: no folder {' or '.join(map(str, tried))}{hint}")
    return found[0], found[0].parent.name


def _find(folder: Path, version: str, prefix: str) -> Path | None:
    """The first existing ``<prefix><category>.json(l)(.gz)`` of ``folder``, else None."""
    for pattern in FILE_NAMES[version]:
        path = folder / (prefix + pattern.format(c=folder.name))
        if path.is_file():
            return path
    return None


def resolve_file(path: str, key: str, folders: list[Path]) -> Path:
    """An absolute ``path`` as is; a relative one in the first of ``folders`` (then the
    current folder) that has it; DataError naming every absolute path tried otherwise."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return require_file(p)
    tried = list(dict.fromkeys((f / p).resolve() for f in [*folders, Path.cwd()]))
    for candidate in tried:
        if candidate.exists():
            return require_file(candidate)
    raise DataError(
        f"data.{key}={path}: file not found; tried {', '.join(map(str, tried))} (a relative "
        "path is looked up under data.root, default $DIVREC_DATA_DIR/amazon, then here)"
    )


def _locate(
    reviews: str | None,
    meta: str | None,
    category: str | None,
    version: str | None,
    root: Path | None,
) -> tuple[Path, Path | None, str]:
    """(reviews file, metadata file or None, dataset name) from the config keys."""
    if category is None:
        if reviews is None:
            raise ConfigError(
                "data.reviews: required (a file), or data.category=<Category> for "
                "$DIVREC_DATA_DIR/amazon/<version>/<Category>/"
            )
        folders = [root] if root else []
        rev = resolve_file(reviews, "reviews", folders)
        met = resolve_file(meta, "meta", folders) if meta is not None else None
        return rev, met, rev.name.split(".")[0]
    folder, version = category_folder(root, category, version)
    folders = [folder, *([root] if root else [])]
    if reviews is not None:
        rev = resolve_file(reviews, "reviews", folders)
    else:
        found = _find(folder, version, "")
        if found is None:
            names = [n.format(c=category) for n in FILE_NAMES[version]]
            have = sorted(p.name for p in folder.iterdir())
            raise DataError(
                f"{folder}: no reviews file {' or '.join(names)} (has: {', '.join(have) or '-'});"
                " name it so or set data.reviews"
            )
        rev = found
    if meta is not None:
        met = resolve_file(meta, "meta", folders)
    else:
        met = _find(folder, version, "meta_")
        if met is None:
            log.warning("%s: no meta_%s file; item titles are the item ids", folder, category)
    return rev, met, category


def load_amazon(
    reviews: str | None = None,
    meta: str | None = None,
    category: str | None = None,
    version: str | int | None = None,
    root: str | None = None,
    layout: str | int = "auto",
    drop_missing_meta: bool = True,
    unknown_items: str = "drop",
) -> RecDataset:
    """Load one Amazon Reviews category: a ``reviews`` file and optional ``meta`` file.

    Files: ``category`` (e.g. ``All_Beauty``) finds ``<root>/<version>/<category>/`` with
    ``<category>.json(.gz)`` + ``meta_<category>.json(.gz)`` (2018) or the ``.jsonl``
    names (2023); ``version`` (2018 | 2023) may be left out when only one folder exists.
    ``root`` defaults to ``$DIVREC_DATA_DIR/amazon``. Explicit ``reviews``/``meta`` paths
    may be absolute or relative (to the category folder, ``root``, then the current folder).

    ``layout``: "auto" (from the first review's fields), "2018" or "2023" (ints accepted:
    Hydra gives ``data.layout=2018`` as one). Reviewed items without metadata are counted in
    a warning and dropped (``drop_missing_meta``) or kept with title = item id and no
    category; ``unknown_items="error"`` raises instead. Without metadata the catalogue is
    the reviewed items (title = item id, no categories).
    """
    layout = str(layout)
    if layout not in ("auto", *REVIEW_FIELDS):
        raise ConfigError(f"data.layout: must be 'auto', '2018' or '2023', got {layout!r}")
    check_unknown_items_mode(unknown_items)
    base = Path(root).expanduser() if root else default_root()
    reviews_path, meta_path, name = _locate(
        reviews, meta, category, _version(version, "version"), base
    )
    inter, layout = _read_reviews(reviews_path, layout)
    extra: dict[str, Any] = {"source": "amazon", "layout": layout}
    reviewed = pd.Index(inter["item_id"].unique())
    if meta_path is None:
        items = pd.DataFrame(
            {"item_id": reviewed, "title": reviewed, "categories": empty_lists(len(reviewed))}
        )
        return RecDataset(name=name, interactions=inter, items=items, extra=extra)

    items, extra["stats"] = _read_meta(meta_path, layout)
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
    return RecDataset(name=name, interactions=inter, items=items, extra=extra)
