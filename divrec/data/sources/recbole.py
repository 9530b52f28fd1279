"""RecBole atomic files (``<dataset>.inter``, ``.item``, ``.user``) -> RecDataset.

Atomic files are tab-separated with a ``name:type`` header, e.g.
``user_id:token  item_id:token  rating:float  timestamp:float``. Types: ``token``,
``token_seq`` (a space-separated list), ``float``, ``float_seq``.

Defaults: ``user_id``, ``item_id``, ``rating`` (1.0 when absent), ``timestamp`` (row order
when absent), title from the first of ``movie_title``/``title``/``item_name``/``name``
(else the item id), categories from the first of ``genre``/``categories``/``class``
(token_seq split into a list; the split is on commas when the column contains any, as in
some converted datasets, else on whitespace). Other item/user fields become text columns.
``field_map`` overrides any of these, e.g. ``{"categories": "tags", "user_id": "uid"}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from divrec.data.dataset import RecDataset
from divrec.data.sources.csv import (
    apply_unknown_items,
    check_unknown_items_mode,
    drop_duplicate_ids,
    empty_lists,
    read_delimited,
    read_header,
    require_dir,
    require_file,
)
from divrec.errors import ConfigError, DataError

FIELD_KEYS = ("user_id", "item_id", "rating", "timestamp", "title", "categories")
TITLE_FIELDS = ("movie_title", "title", "item_name", "name")
CATEGORY_FIELDS = ("genre", "categories", "class")
_OPTS = {"sep": "\t", "quoted": False}


def _fields(path: Path) -> dict[str, str]:
    """Header ``name:type`` entries -> {name: full header entry}."""
    out = {}
    for entry in read_header(path, "\t", quoted=False):
        name, _, ftype = entry.partition(":")
        if not name or not ftype:
            raise DataError(f"{path}: header field {entry!r} is not 'name:type'")
        out[name] = entry
    return out


def _pick(fields: dict[str, str], mapped: str | None, candidates: tuple[str, ...]) -> str | None:
    if mapped is not None:
        return mapped if mapped in fields else None
    return next((c for c in candidates if c in fields), None)


def _split_seq(values: pd.Series) -> pd.Series:
    """token_seq strings -> lists; comma-separated when any value has a comma."""
    comma = values.str.contains(",", regex=False).any()
    parts = values.str.split(",") if comma else values.str.split()
    return parts.map(lambda ps: [p.strip() for p in ps if p.strip()])


def _find(folder: Path, dataset: str, ext: str) -> Path:
    for cand in (folder / f"{dataset}.{ext}", folder / dataset / f"{dataset}.{ext}"):
        if cand.exists():
            return cand
    return folder / f"{dataset}.{ext}"


def load_recbole(
    path: str,
    dataset: str,
    field_map: dict | None = None,
    unknown_items: str = "drop",
) -> RecDataset:
    """Load RecBole atomic files from ``path`` (or ``path/<dataset>``).

    ``.inter`` is required; ``.item`` is optional (without it the catalogue is the items
    seen, title = id, no categories); ``.user`` is optional.
    """
    check_unknown_items_mode(unknown_items)
    fmap = dict(field_map or {})
    bad = [k for k in fmap if k not in FIELD_KEYS]
    if bad:
        raise ConfigError(f"data.field_map.{bad[0]}: unknown key; allowed: {', '.join(FIELD_KEYS)}")
    name_of = {k: str(fmap.get(k, k)) for k in ("user_id", "item_id", "rating", "timestamp")}
    folder = require_dir(path)

    inter_path = require_file(_find(folder, dataset, "inter"))
    fields = _fields(inter_path)
    for key in ("user_id", "item_id"):
        if name_of[key] not in fields:
            raise DataError(f"{inter_path}: missing field {name_of[key]!r}; have {list(fields)}")
    want = {fields[name_of["user_id"]]: "id", fields[name_of["item_id"]]: "id"}
    has_rating, has_time = name_of["rating"] in fields, name_of["timestamp"] in fields
    if has_rating:
        want[fields[name_of["rating"]]] = "float"
    if has_time:
        want[fields[name_of["timestamp"]]] = "time"
    raw = read_delimited(inter_path, want, **_OPTS)
    inter = pd.DataFrame(
        {
            "user_id": raw[fields[name_of["user_id"]]],
            "item_id": raw[fields[name_of["item_id"]]],
            "rating": raw[fields[name_of["rating"]]] if has_rating else 1.0,
            "timestamp": raw[fields[name_of["timestamp"]]] if has_time else np.arange(len(raw)),
        }
    )

    item_path = _find(folder, dataset, "item")
    if item_path.exists():
        items = _read_items(require_file(item_path), name_of["item_id"], fmap)
        inter = apply_unknown_items(inter, items["item_id"], unknown_items, str(inter_path))
    else:
        ids = pd.Index(inter["item_id"].unique())
        items = pd.DataFrame({"item_id": ids, "title": ids, "categories": empty_lists(len(ids))})

    users = None
    user_path = _find(folder, dataset, "user")
    if user_path.exists():
        users = _read_table(require_file(user_path), name_of["user_id"], "user_id")
    extra = {"source": "recbole", "folder": str(folder)}
    return RecDataset(name=dataset, interactions=inter, items=items, users=users, extra=extra)


def _read_table(path: Path, id_field: str, id_name: str) -> pd.DataFrame:
    """All fields as text (the id non-empty), renamed to bare names, duplicates dropped."""
    fields = _fields(path)
    if id_field not in fields:
        raise DataError(f"{path}: missing field {id_field!r}; have {list(fields)}")
    kinds = {entry: "text" for entry in fields.values()}
    kinds[fields[id_field]] = "id"
    df = read_delimited(path, kinds, **_OPTS)
    df.columns = list(fields)
    df = df.rename(columns={id_field: id_name})
    return drop_duplicate_ids(df, id_name, str(path))


def _read_items(path: Path, id_field: str, fmap: dict) -> pd.DataFrame:
    items = _read_table(path, id_field, "item_id")
    cols = {c: c for c in items.columns}
    title = _pick(cols, fmap.get("title"), TITLE_FIELDS)
    cats = _pick(cols, fmap.get("categories"), CATEGORY_FIELDS)
    for key, found in (("title", title), ("categories", cats)):
        if key in fmap and found is None:
            raise DataError(f"{path}: field_map.{key}={fmap[key]!r} not in {list(cols)}")
    out = items.drop(columns=[c for c in (title, cats) if c is not None])
    out = out.drop(columns=[c for c in ("title", "categories") if c in out.columns])
    out.insert(1, "title", items[title] if title else items["item_id"])
    out.insert(2, "categories", _split_seq(items[cats]) if cats else empty_lists(len(items)))
    return out
