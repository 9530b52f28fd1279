"""Delimited-file reading with line-accurate errors, and the generic CSV source.

``read_delimited`` is shared by the MovieLens, RecBole and CSV loaders: a fast pandas read,
and only when that read or its checks fail, a plain-Python pass over the file that finds the
first bad line so the user gets ``<file> line N: <problem>`` instead of a parser traceback.

``load_csv`` reads a folder with ``interactions.csv``, ``items.csv`` and optionally
``users.csv``. Column names are configurable (``columns={"user_id": "uid", ...}``).
Without a rating column every rating is 1.0 (implicit feedback); without a timestamp column
the timestamp is the row order (0, 1, 2, ...), so "latest" splits follow the file order.
Timestamps may be numbers (seconds) or date strings (parsed as UTC).
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from divrec.data.dataset import RecDataset
from divrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

KINDS = ("id", "text", "float", "int", "time")
UNKNOWN_ITEMS_MODES = ("drop", "error")
CSV_KEYS = ("user_id", "item_id", "rating", "timestamp", "title", "categories")
_SUB_SEP = "\x1f"  # stands in for multi-character separators such as MovieLens' "::"


# --------------------------------------------------------------------------- shared helpers


def require_dir(path: str | Path, what: str = "data folder") -> Path:
    """Return ``path`` as a Path, or raise DataError when it is not an existing folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found")
    return path


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise DataError when it is missing, a folder or empty."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: expected a file, found a folder")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    return path


def check_unknown_items_mode(mode: str) -> None:
    """Raise ConfigError unless ``mode`` is one of ``UNKNOWN_ITEMS_MODES``."""
    if mode not in UNKNOWN_ITEMS_MODES:
        raise ConfigError(f"data.unknown_items: must be 'drop' or 'error', got {mode!r}")


def apply_unknown_items(
    inter: pd.DataFrame, item_ids: pd.Series, mode: str, where: str
) -> pd.DataFrame:
    """Drop (logging the count) or reject interactions whose item is not in the catalogue."""
    check_unknown_items_mode(mode)
    unknown = ~inter["item_id"].isin(set(item_ids))
    if not unknown.any():
        return inter
    n, ids = int(unknown.sum()), inter.loc[unknown, "item_id"].unique()
    msg = f"{where}: {n} interaction(s) reference {len(ids)} item id(s) not in the catalogue"
    if mode == "error":
        raise DataError(f"{msg}, e.g. {list(ids[:3])}")
    log.warning("%s; dropped (unknown_items='drop')", msg)
    return inter.loc[~unknown].reset_index(drop=True)


def drop_duplicate_ids(df: pd.DataFrame, col: str, where: str) -> pd.DataFrame:
    """Keep the first row of each id in ``col``, logging how many later rows were dropped."""
    dup = df[col].duplicated()
    if dup.any():
        log.warning("%s: %d duplicate %s row(s) dropped (kept first)", where, int(dup.sum()), col)
        df = df.loc[~dup].reset_index(drop=True)
    return df


def to_seconds(values: pd.Series) -> pd.Series:
    """Numbers stay (floored), date strings become UTC epoch seconds; unparsable -> NaN."""
    num = pd.to_numeric(values, errors="coerce").astype("float64")
    rest = num.isna() & values.notna()
    if rest.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dt = pd.to_datetime(values[rest], errors="coerce", utc=True, format="mixed")
        num[rest] = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(1, "s")
    return np.floor(num)


def _is_time(value: str) -> bool:
    """Whether ``to_seconds`` accepts ``value`` (cheap checks first: this runs per line)."""
    try:
        float(value)
        return True
    except ValueError:
        pass
    try:
        datetime.fromisoformat(value.strip())
        return True
    except ValueError:
        return not np.isnan(to_seconds(pd.Series([value], dtype=object)).iloc[0])


def _line_problem(value: str, col: str, kind: str, rng: tuple[float, float] | None) -> str | None:
    """Why one field breaks its column kind, or None."""
    if kind in ("id", "float", "int", "time") and value.strip() == "":
        return f"missing {col}"
    if kind == "float":
        try:
            x = float(value)
        except ValueError:
            return f"{col} {value!r} is not a number"
        if math.isnan(x):
            return f"{col} is NaN"
        if math.isinf(x):
            return f"{col} is infinite"
        if rng is not None and not rng[0] <= x <= rng[1]:
            return f"{col} {x:g} outside [{rng[0]:g}, {rng[1]:g}]"
    elif kind == "int":
        try:
            int(value)
        except ValueError:
            return f"{col} {value!r} is not an integer"
    elif kind == "time" and not _is_time(value):
        return f"{col} {value!r} is neither a number nor a date"
    return None


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def _iter_rows(path: Path, sep: str, encoding: str, quoted: bool) -> Iterator[tuple[int, list]]:
    """Yield (line number, fields) for every non-blank line, as pandas would see them."""
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rt", encoding=encoding, newline="") as f:
        if quoted and len(sep) == 1:
            reader = csv.reader(f, delimiter=sep)
            for fields in reader:
                if fields:
                    yield reader.line_num, fields
        else:
            for i, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if line:
                    yield i, line.split(sep)


def _locate(
    path: Path,
    columns: Mapping[str, str],
    sep: str,
    encoding: str,
    names: Sequence[str] | None,
    quoted: bool,
    ranges: Mapping[str, tuple[float, float]],
    fallback: str,
) -> DataError:
    """Scan the file in plain Python and describe its first bad line."""
    try:
        rows = _iter_rows(path, sep, encoding, quoted)
        header = list(names) if names is not None else next(rows)[1]
        idx = {c: header.index(c) for c in columns}
        for line_no, fields in rows:
            if len(fields) != len(header):
                return DataError(
                    f"{path} line {line_no}: expected {len(header)} fields, found {len(fields)}"
                )
            for col, kind in columns.items():
                problem = _line_problem(fields[idx[col]], col, kind, ranges.get(col))
                if problem:
                    return DataError(f"{path} line {line_no}: {problem}")
    except UnicodeDecodeError as exc:
        return DataError(f"{path}: not valid {encoding} text ({exc.reason} at byte {exc.start})")
    except (csv.Error, OSError, EOFError) as exc:
        return DataError(f"{path}: {exc}")
    first = (fallback.strip().splitlines() or ["unreadable"])[0]
    return DataError(f"{path}: {first}")


def read_header(path: Path, sep: str = ",", encoding: str = "utf-8", quoted: bool = True) -> list:
    """Field names of the first non-blank line; a name given twice is a DataError (pandas
    would rename the second one and a column would silently go missing)."""
    try:
        header = next(_iter_rows(path, sep, encoding, quoted))[1]
    except StopIteration:
        raise DataError(f"{path}: empty file (no header)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc.reason})") from None
    except (OSError, EOFError) as exc:  # e.g. a truncated or corrupt .gz
        raise DataError(f"{path}: unreadable ({exc})") from None
    names = [h.strip() for h in header]
    dups = sorted({h for h in names if names.count(h) > 1})
    if dups:
        raise DataError(f"{path}: column name(s) {dups} appear more than once in the header")
    return header


def read_delimited(
    path: str | Path,
    columns: Mapping[str, str],
    *,
    sep: str = ",",
    encoding: str = "utf-8",
    names: Sequence[str] | None = None,
    quoted: bool = True,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Read the named ``columns`` (name -> kind) of a delimited file, checked.

    Kinds: ``id`` (non-empty str), ``text`` (str, "" when empty), ``float`` (finite, within
    ``ranges`` if given), ``int`` (int64), ``time`` (int64 epoch seconds from numbers or
    dates). ``names`` gives all field names of a headerless file. ``quoted`` enables
    RFC-4180 quoting; ``sep`` may be multi-character (e.g. ``"::"``, then unquoted).
    Returns a frame with exactly ``columns``, in that order.
    """
    path = require_file(path)
    ranges = dict(ranges or {})
    bad_kind = [k for k in columns.values() if k not in KINDS]
    if bad_kind:
        raise ValueError(f"unknown column kind(s) {bad_kind}; use {KINDS}")
    header = list(names) if names is not None else read_header(path, sep, encoding, quoted)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; have {header}")

    def locate(fallback: str) -> DataError:
        return _locate(path, columns, sep, encoding, names, quoted, ranges, fallback)

    pd_types = {"float": "float64", "int": "int64"}
    dtype = {c: pd_types.get(columns.get(c, "text"), str) for c in header}
    try:
        source: Path | StringIO = path
        pd_sep = sep
        if len(sep) > 1:
            source, pd_sep = StringIO(path.read_text(encoding).replace(sep, _SUB_SEP)), _SUB_SEP
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                source,
                sep=pd_sep,
                header=None if names is not None else 0,
                names=list(names) if names is not None else None,
                dtype=dtype,
                encoding=encoding,
                compression="gzip" if source is path and is_gzip(path) else None,
                quoting=csv.QUOTE_MINIMAL if quoted and len(sep) == 1 else csv.QUOTE_NONE,
                keep_default_na=False,
                na_values=[""],
                index_col=False,
                engine="c",
            )
    except (ValueError, OSError, EOFError, pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise locate(str(exc)) from None
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    df = df.loc[:, list(columns)]
    for col, kind in columns.items():
        s = df[col]
        if kind == "text":
            df[col] = s.fillna("").astype(str)
            continue
        if kind == "time":
            s = df[col] = to_seconds(s)
        bad = s.isna()
        if kind == "float":
            bad |= ~np.isfinite(s)
            if col in ranges:
                bad |= (s < ranges[col][0]) | (s > ranges[col][1])
        if bad.any():
            raise locate(f"{int(bad.sum())} bad value(s) in column {col!r}")
        if kind == "time":
            df[col] = s.astype("int64")
        elif kind == "id":
            df[col] = s.astype(str)
    return df


def empty_lists(n: int) -> np.ndarray:
    """``n`` empty category lists as an object array (a plain ``[[]] * n`` becomes 2-D)."""
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = []
    return out


def split_categories(values: pd.Series, sep: str) -> pd.Series:
    """``"A|B|"`` -> ``["A", "B"]`` (stripped, empty parts dropped)."""
    return values.map(lambda v: [p.strip() for p in str(v).split(sep) if p.strip()])


# --------------------------------------------------------------------------- CSV source


def load_csv(
    path: str,
    interactions: str = "interactions.csv",
    items: str = "items.csv",
    users: str | None = "users.csv",
    columns: dict | None = None,
    category_sep: str = "|",
    sep: str = ",",
    unknown_items: str = "drop",
    encoding: str = "utf-8-sig",
) -> RecDataset:
    """Load a folder of plain CSV files into a RecDataset.

    ``columns`` maps contract names (user_id, item_id, rating, timestamp, title, categories)
    to the file's column names. ``interactions`` needs user_id and item_id (rating -> 1.0
    and timestamp -> row order when the column is absent); ``items`` needs item_id and title;
    categories are split on ``category_sep`` (no such column: every item has none, and the
    category metrics are left out); other columns become text columns. ``users`` is optional
    (skipped when the file does not exist; all columns become text columns). ``sep`` and
    ``encoding`` apply to every file; ``unknown_items``: ``drop`` or ``error``.
    """
    check_unknown_items_mode(unknown_items)
    cols = {k: k for k in CSV_KEYS}
    for key, value in dict(columns or {}).items():
        if key not in CSV_KEYS:
            raise ConfigError(f"data.columns.{key}: unknown key; allowed: {', '.join(CSV_KEYS)}")
        cols[key] = str(value)
    folder = require_dir(path)
    opts = {"sep": sep, "encoding": encoding}

    inter_path = require_file(folder / interactions)
    header = read_header(inter_path, sep, encoding)
    want = {cols["user_id"]: "id", cols["item_id"]: "id"}
    if cols["rating"] in header:
        want[cols["rating"]] = "float"
    if cols["timestamp"] in header:
        want[cols["timestamp"]] = "time"
    raw = read_delimited(inter_path, want, **opts)
    inter = pd.DataFrame(
        {
            "user_id": raw[cols["user_id"]],
            "item_id": raw[cols["item_id"]],
            "rating": raw[cols["rating"]] if cols["rating"] in raw else 1.0,
            "timestamp": raw[cols["timestamp"]]
            if cols["timestamp"] in raw
            else np.arange(len(raw)),
        }
    )

    items_path = require_file(folder / items)
    item_header = read_header(items_path, sep, encoding)
    kinds = {c: "text" for c in item_header}
    kinds[cols["item_id"]] = "id"
    for key in ("item_id", "title"):
        if cols[key] not in item_header:
            raise DataError(f"{items_path}: missing column {cols[key]!r}; have {item_header}")
    item_df = read_delimited(items_path, kinds, **opts)
    item_df = item_df.rename(
        columns={cols["item_id"]: "item_id", cols["title"]: "title", cols["categories"]: "_cats"}
    )
    if "_cats" in item_df:
        item_df["categories"] = split_categories(item_df.pop("_cats"), category_sep)
    else:
        log.info("%s: no %r column; items have no categories", items_path, cols["categories"])
        item_df["categories"] = empty_lists(len(item_df))
    item_df = drop_duplicate_ids(item_df, "item_id", str(items_path))
    inter = apply_unknown_items(inter, item_df["item_id"], unknown_items, str(inter_path))

    user_df = None
    if users and (folder / users).exists():
        users_path = require_file(folder / users)
        user_header = read_header(users_path, sep, encoding)
        if cols["user_id"] not in user_header:
            raise DataError(f"{users_path}: missing column {cols['user_id']!r}; have {user_header}")
        kinds = {c: "text" for c in user_header}
        kinds[cols["user_id"]] = "id"
        user_df = read_delimited(users_path, kinds, **opts)
        user_df = user_df.rename(columns={cols["user_id"]: "user_id"})
        user_df = drop_duplicate_ids(user_df, "user_id", str(users_path))
    return RecDataset(name=folder.name, interactions=inter, items=item_df, users=user_df)
