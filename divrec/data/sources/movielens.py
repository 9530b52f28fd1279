"""MovieLens releases in their official GroupLens formats -> RecDataset.

- CSV releases (ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m): ``ratings.csv``
  (userId,movieId,rating,timestamp; 0.5-5 stars), ``movies.csv`` (movieId,title,genres;
  genres pipe-separated, RFC-4180 quoting), optional ``tags.csv``.
- ml-1m: ``::``-separated ``ratings.dat``, ``movies.dat`` (latin-1) and ``users.dat``
  (gender, age code, occupation code, zip; codes mapped to the README's words).
- ml-100k: tab-separated ``u.data``, pipe-separated ``u.item`` (latin-1, 19 genre flags
  named by ``u.genre``) and ``u.user`` (age|gender|occupation|zip).

Items get ``categories`` = genres (``(no genres listed)`` and ml-100k's ``unknown`` are kept
as categories, as in the official files) and text columns ``title``, ``genres`` (comma-joined)
and ``year`` (from the title, "" when absent). ml-100k/ml-1m users get text columns ``age``,
``gender`` (male/female) and ``occupation``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from divrec.data.dataset import RecDataset
from divrec.data.sources.csv import (
    apply_unknown_items,
    check_unknown_items_mode,
    read_delimited,
    split_categories,
)
from divrec.data.sources.download import fetch_zip_folder
from divrec.errors import ConfigError, DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Release:
    """File format family, files that must exist, and the rating scale of one release."""

    fmt: str  # "csv" | "1m" | "100k"
    files: tuple[str, ...]
    rating_range: tuple[float, float]


_CSV = Release("csv", ("ratings.csv", "movies.csv"), (0.5, 5.0))
RELEASES: dict[str, Release] = {
    "ml-latest-small": _CSV,
    "ml-latest": _CSV,
    "ml-20m": _CSV,
    "ml-25m": _CSV,
    "ml-32m": _CSV,
    "ml-1m": Release("1m", ("ratings.dat", "movies.dat", "users.dat"), (1.0, 5.0)),
    "ml-100k": Release("100k", ("u.data", "u.item", "u.user"), (1.0, 5.0)),
}

# ml-1m README, section USERS FILE DESCRIPTION.
ML1M_AGES = {
    "1": "Under 18",
    "18": "18-24",
    "25": "25-34",
    "35": "35-44",
    "45": "45-49",
    "50": "50-55",
    "56": "56+",
}
ML1M_OCCUPATIONS = {
    "0": "other",
    "1": "academic/educator",
    "2": "artist",
    "3": "clerical/admin",
    "4": "college/grad student",
    "5": "customer service",
    "6": "doctor/health care",
    "7": "executive/managerial",
    "8": "farmer",
    "9": "homemaker",
    "10": "K-12 student",
    "11": "lawyer",
    "12": "programmer",
    "13": "retired",
    "14": "sales/marketing",
    "15": "scientist",
    "16": "self-employed",
    "17": "technician/engineer",
    "18": "tradesman/craftsman",
    "19": "unemployed",
    "20": "writer",
}
GENDERS = {"M": "male", "F": "female"}
# ml-100k u.genre, in flag order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")


def default_cache_dir() -> Path:
    """``$DIVREC_CACHE_DIR/movielens``, else ``~/.cache/divrec/movielens``."""
    base = os.environ.get("DIVREC_CACHE_DIR") or Path.home() / ".cache" / "divrec"
    return Path(base).expanduser() / "movielens"


def load_movielens(
    release: str = "ml-latest-small",
    root: str | None = None,
    download: bool = True,
    cache_dir: str | None = None,
    base_url: str = BASE_URL,
    tags_as_text: bool = False,
    unknown_items: str = "drop",
    expected_sha256: str | None = None,
) -> RecDataset:
    """Load a MovieLens release from ``root/<release>``, downloading it if needed.

    When ``root`` is None or lacks the release and ``download`` is true, fetches
    ``<base_url>/<release>.zip`` into ``cache_dir`` once (verified; ``expected_sha256``
    optional), extracts it safely and reads it from there. ``tags_as_text`` adds an item
    text column ``tags`` (CSV releases only), empty here: tags.csv's rows go to
    ``extra["item_tags"]`` (user_id, item_id, tag) and ``RecDataModule`` fills the column from
    the tags of training (user, item) pairs only (``divrec.data.text.item_tag_texts``), so no
    held-out user's tag reaches an item text.
    """
    if release not in RELEASES:
        raise ConfigError(f"data.release: unknown MovieLens release {release!r}; known: "
                          + ", ".join(RELEASES))  # fmt: skip
    check_unknown_items_mode(unknown_items)
    spec = RELEASES[release]
    if tags_as_text and spec.fmt != "csv":
        raise ConfigError(f"data.tags_as_text: release {release!r} has no tags.csv")
    folder = _find_folder(release, spec, root, download, cache_dir, base_url, expected_sha256)
    reader = {"csv": _read_csv_release, "1m": _read_1m, "100k": _read_100k}[spec.fmt]
    inter, items, users = reader(folder, spec)
    inter = apply_unknown_items(inter, items["item_id"], unknown_items, str(folder))
    extra = {"source": "movielens", "release": release, "folder": str(folder)}
    if tags_as_text:
        items["tags"] = ""
        extra["item_tags"] = _read_tags(folder / "tags.csv")
    return RecDataset(name=release, interactions=inter, items=items, users=users, extra=extra)


def _find_folder(
    release: str,
    spec: Release,
    root: str | None,
    download: bool,
    cache_dir: str | None,
    base_url: str,
    expected_sha256: str | None,
) -> Path:
    """``root/<release>`` (or ``root`` itself when named ``<release>``), else the cache."""
    if root is not None:
        root_path = Path(root).expanduser()
        candidates = [root_path / release] + ([root_path] if root_path.name == release else [])
        for cand in candidates:
            if cand.is_dir():
                return cand
        if not download:
            raise DataError(f"{root_path / release}: MovieLens folder not found (download=False)")
    elif not download:
        raise DataError(f"movielens {release}: no data.root given and download=False")
    url = f"{base_url.rstrip('/')}/{release}.zip"
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return fetch_zip_folder(url, cache, release, spec.files, expected_sha256=expected_sha256)


def _item_frame(ids: pd.Series, titles: pd.Series, cats: pd.Series) -> pd.DataFrame:
    """Items with the contract columns plus ``genres`` and ``year`` text."""
    titles = titles.str.strip()
    year = titles.str.extract(_YEAR, expand=False).fillna("")
    return pd.DataFrame(
        {
            "item_id": ids,
            "title": titles,
            "categories": cats,
            "genres": cats.map(", ".join),
            "year": year.astype(str),
        }
    )


def _read_csv_release(folder: Path, spec: Release):
    ratings = read_delimited(
        folder / "ratings.csv",
        {"userId": "id", "movieId": "id", "rating": "float", "timestamp": "int"},
        ranges={"rating": spec.rating_range},
    )
    inter = ratings.set_axis(["user_id", "item_id", "rating", "timestamp"], axis=1)
    movies = read_delimited(
        folder / "movies.csv", {"movieId": "id", "title": "text", "genres": "text"}
    )
    _no_duplicates(movies, "movieId", folder / "movies.csv")
    items = _item_frame(movies["movieId"], movies["title"], split_categories(movies["genres"], "|"))
    return inter, items, None


def _read_tags(path: Path) -> pd.DataFrame:
    """tags.csv as ``user_id, item_id, tag`` (ids as strings; blank tags dropped)."""
    tags = read_delimited(path, {"userId": "id", "movieId": "id", "tag": "text"})
    tags = tags.rename(columns={"userId": "user_id", "movieId": "item_id"})
    tags = tags[["user_id", "item_id", "tag"]].copy()
    tags["tag"] = tags["tag"].str.strip()
    return tags[tags["tag"] != ""].reset_index(drop=True)


def _read_1m(folder: Path, spec: Release):
    opts = {"sep": "::", "encoding": "latin-1", "quoted": False}
    inter = read_delimited(
        folder / "ratings.dat",
        {"user_id": "id", "item_id": "id", "rating": "float", "timestamp": "int"},
        names=["user_id", "item_id", "rating", "timestamp"],
        ranges={"rating": spec.rating_range},
        **opts,
    )
    movies = read_delimited(
        folder / "movies.dat",
        {"item_id": "id", "title": "text", "genres": "text"},
        names=["item_id", "title", "genres"],
        **opts,
    )
    _no_duplicates(movies, "item_id", folder / "movies.dat")
    items = _item_frame(movies["item_id"], movies["title"], split_categories(movies["genres"], "|"))
    names = ["user_id", "gender", "age", "occupation", "zip"]
    kinds = dict.fromkeys(names[:-1], "id") | {"zip": "text"}
    users = read_delimited(folder / "users.dat", kinds, names=names, **opts)
    users_path = folder / "users.dat"
    users = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "age": _decode(users, "age", ML1M_AGES, users_path),
            "gender": _decode(users, "gender", GENDERS, users_path),
            "occupation": _decode(users, "occupation", ML1M_OCCUPATIONS, users_path),
        }
    )
    _no_duplicates(users, "user_id", users_path)
    return inter, items, users


def _read_100k(folder: Path, spec: Release):
    inter = read_delimited(
        folder / "u.data",
        {"user_id": "id", "item_id": "id", "rating": "float", "timestamp": "int"},
        names=["user_id", "item_id", "rating", "timestamp"],
        sep="\t",
        quoted=False,
        ranges={"rating": spec.rating_range},
    )
    genres = _read_100k_genres(folder / "u.genre")
    base = ["item_id", "title", "release_date", "video_release_date", "imdb_url"]
    flags = [f"g{i}" for i in range(len(genres))]
    kinds = {"item_id": "id", "title": "text", "release_date": "text"} | dict.fromkeys(flags, "int")
    raw = read_delimited(
        folder / "u.item", kinds, names=base + flags, sep="|", encoding="latin-1", quoted=False
    )
    _no_duplicates(raw, "item_id", folder / "u.item")
    flag_values = raw[flags].to_numpy() != 0
    cats = pd.Series([[g for g, on in zip(genres, row, strict=True) if on] for row in flag_values])
    items = _item_frame(raw["item_id"], raw["title"], cats)
    no_year = items["year"] == ""
    items.loc[no_year, "year"] = (
        raw.loc[no_year, "release_date"].str.extract(r"(\d{4})\s*$", expand=False).fillna("")
    )
    users = read_delimited(
        folder / "u.user",
        {"user_id": "id", "age": "int", "gender": "id", "occupation": "text"},
        names=["user_id", "age", "gender", "occupation", "zip"],
        sep="|",
        encoding="latin-1",
        quoted=False,
    )
    users_path = folder / "u.user"
    users = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "age": users["age"].astype(str),
            "gender": _decode(users, "gender", GENDERS, users_path),
            "occupation": users["occupation"],
        }
    )
    _no_duplicates(users, "user_id", users_path)
    return inter, items, users


def _read_100k_genres(path: Path) -> tuple[str, ...]:
    """Genre names in flag order from ``u.genre`` (name|index lines), else the official list."""
    if not path.is_file():
        return ML100K_GENRES
    df = read_delimited(
        path, {"name": "text", "index": "int"}, names=["name", "index"], sep="|",
        encoding="latin-1", quoted=False,
    )  # fmt: skip
    if sorted(df["index"]) != list(range(len(df))):
        raise DataError(f"{path}: genre indices must be 0..{len(df) - 1}")
    return tuple(df.sort_values("index")["name"])


def _decode(df: pd.DataFrame, col: str, table: dict[str, str], path: Path) -> pd.Series:
    """Map codes to words; DataError naming the first unknown code."""
    out = df[col].map(table)
    if out.isna().any():
        first = int(out.isna().to_numpy().argmax())
        raise DataError(
            f"{path}: unknown {col} code {df[col].iloc[first]!r} for user "
            f"{df['user_id'].iloc[first]}; known: {', '.join(table)}"
        )
    return out


def _no_duplicates(df: pd.DataFrame, col: str, path: Path) -> None:
    dup = df[col].duplicated()
    if dup.any():
        raise DataError(f"{path}: duplicate {col} {list(df.loc[dup, col].head(3))}")
