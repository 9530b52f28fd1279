"""MovieLens loader: real ml-latest-small counts, hand-written mini releases, bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from divrec.data.sources.movielens import ML100K_GENRES, load_movielens
from divrec.data.text import item_tag_texts
from divrec.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- fixtures


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


def make_latest(root: Path, ratings: str | None = None, movies: str | None = None) -> Path:
    """ml-latest-small-shaped release, CRLF line ends and RFC-4180 quoting like the real one."""
    folder = root / "ml-latest-small"
    _write(
        folder / "ratings.csv",
        ratings
        if ratings is not None
        else "userId,movieId,rating,timestamp\r\n"
        "1,1,4.0,964982703\r\n"
        "1,11,0.5,964981247\r\n"
        "2,99,5.0,1445714994\r\n"
        "3,5,3.5,1445715000\r\n",
    )
    _write(
        folder / "movies.csv",
        movies
        if movies is not None
        else "movieId,title,genres\r\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\r\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\r\n'
        '99,"Title with ""quotes"" (2001)",(no genres listed)\r\n'
        "5,Babylon 5 ,Sci-Fi\r\n",
    )
    _write(
        folder / "tags.csv",
        "userId,movieId,tag,timestamp\r\n"
        "1,1,pixar,1\r\n2,1,Funny,2\r\n3,1,pixar,3\r\n3,1,funny,4\r\n2,11,politics,5\r\n",
    )
    return folder


def make_100k(root: Path, u_data: str | None = None) -> Path:
    folder = root / "ml-100k"
    _write(
        folder / "u.data",
        u_data
        if u_data is not None
        else "1\t10\t4\t881250949\n2\t1633\t5\t891717742\n1\t267\t3\t878887116\n",
    )
    _write(
        folder / "u.item",
        f"10|Richard III (1995)|22-Jan-1996||http://us.imdb.com/x|{_flags('Drama', 'War')}\n"
        f"1633|Á köldum klaka (Cold Fever) (1994)|08-Mar-1996||http://x|"
        f"{_flags('Comedy', 'Drama')}\n"
        f"267|unknown|||http://x|{_flags('unknown')}\n",
        encoding="latin-1",
    )
    _write(folder / "u.genre", "".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n")
    _write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def make_1m(root: Path, ratings: str | None = None, users: str | None = None) -> Path:
    folder = root / "ml-1m"
    _write(
        folder / "ratings.dat",
        ratings
        if ratings is not None
        else "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n",
    )
    _write(
        folder / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Café au lait (Métisse) (1993)::Comedy\n",
        encoding="latin-1",
    )
    _write(
        folder / "users.dat",
        users if users is not None else "1::F::1::10::48067\n2::M::56::16::70072\n",
    )
    return folder


def _row(df, col, value) -> dict:
    rows = df[df[col] == value].to_dict("records")
    assert len(rows) == 1, rows
    return rows[0]


# ----------------------------------------------------------------------------- real data


def test_real_ml_latest_small_counts():
    base = os.environ.get("DIVREC_DATA_DIR")
    if not base or not (Path(base) / "movielens" / "ml-latest-small").is_dir():
        pytest.skip("DIVREC_DATA_DIR with movielens/ml-latest-small not available")
    ds = load_movielens(root=str(Path(base) / "movielens"), download=False)
    # Numbers from the release README: 100836 ratings, 9742 movies, 610 users.
    assert len(ds.interactions) == 100_836
    assert len(ds.items) == 9_742
    assert ds.interactions["user_id"].nunique() == 610
    # README genre list (18 + IMAX, "Children's" written "Children") + "(no genres listed)".
    assert len(ds.category_names) == 20
    assert "(no genres listed)" in ds.category_names and "IMAX" in ds.category_names
    first = ds.interactions.iloc[0].to_dict()  # ratings.csv line 2: 1,1,4.0,964982703
    assert first == {"user_id": "1", "item_id": "1", "rating": 4.0, "timestamp": 964982703}
    assert _row(ds.items, "item_id", "1")["year"] == "1995"


# ----------------------------------------------------------------------------- formats


def test_csv_release_parsed_end_to_end(tmp_path):
    make_latest(tmp_path)
    ds = load_movielens(root=str(tmp_path), download=False, tags_as_text=True)
    assert len(ds.interactions) == 4 and ds.users is None
    r = ds.interactions.iloc[1].to_dict()
    assert r == {"user_id": "1", "item_id": "11", "rating": 0.5, "timestamp": 964981247}
    pres = _row(ds.items, "item_id", "11")
    assert pres["title"] == "American President, The (1995)"
    assert pres["categories"] == ["Comedy", "Drama", "Romance"]
    assert pres["genres"] == "Comedy, Drama, Romance"
    assert pres["year"] == "1995"
    quoted = _row(ds.items, "item_id", "99")
    assert quoted["title"] == 'Title with "quotes" (2001)'
    assert quoted["categories"] == ["(no genres listed)"]
    babylon = _row(ds.items, "item_id", "5")
    assert babylon["title"] == "Babylon 5" and babylon["year"] == ""
    # tags for movie 1: pixar x2, Funny/funny x2 (case-insensitive) -> both count 2, first
    # seen first; movie 5 has none. The item column stays empty until the data module fills
    # it from training pairs (tests/data/test_tags_text.py).
    tags = item_tag_texts(ds.extra["item_tags"])
    assert tags["1"] == "pixar, Funny" and "5" not in tags
    assert set(ds.items["tags"]) == {""}


def test_root_may_be_the_release_folder_itself(tmp_path):
    folder = make_latest(tmp_path)
    ds = load_movielens(root=str(folder), download=False)
    assert len(ds.interactions) == 4


def test_ml100k_parsed_end_to_end(tmp_path):
    make_100k(tmp_path)
    ds = load_movielens("ml-100k", root=str(tmp_path), download=False)
    assert ds.interactions.iloc[0].to_dict() == {
        "user_id": "1",
        "item_id": "10",
        "rating": 4.0,
        "timestamp": 881250949,
    }
    fever = _row(ds.items, "item_id", "1633")
    assert fever["title"] == "Á köldum klaka (Cold Fever) (1994)"
    assert fever["categories"] == ["Comedy", "Drama"] and fever["year"] == "1994"
    richard = _row(ds.items, "item_id", "10")
    assert richard["categories"] == ["Drama", "War"] and richard["genres"] == "Drama, War"
    unknown = _row(ds.items, "item_id", "267")
    assert unknown["categories"] == ["unknown"] and unknown["year"] == ""
    assert _row(ds.users, "user_id", "2") == {
        "user_id": "2",
        "age": "53",
        "gender": "female",
        "occupation": "other",
    }


def test_ml100k_without_u_genre_uses_official_names(tmp_path):
    folder = make_100k(tmp_path)
    (folder / "u.genre").unlink()
    ds = load_movielens("ml-100k", root=str(tmp_path), download=False)
    assert _row(ds.items, "item_id", "10")["categories"] == ["Drama", "War"]


def test_ml1m_parsed_end_to_end(tmp_path):
    make_1m(tmp_path)
    ds = load_movielens("ml-1m", root=str(tmp_path), download=False)
    assert ds.interactions.iloc[1].to_dict() == {
        "user_id": "1",
        "item_id": "661",
        "rating": 3.0,
        "timestamp": 978302109,
    }
    peach = _row(ds.items, "item_id", "661")
    assert peach["categories"] == ["Animation", "Children's", "Musical"]
    assert peach["year"] == "1996"
    assert _row(ds.items, "item_id", "3")["title"] == "Café au lait (Métisse) (1993)"
    # users.dat codes per the ml-1m README: age 1 = "Under 18", occupation 10 = "K-12 student",
    # age 56 = "56+", occupation 16 = "self-employed".
    assert _row(ds.users, "user_id", "1") == {
        "user_id": "1",
        "age": "Under 18",
        "gender": "female",
        "occupation": "K-12 student",
    }
    u2 = _row(ds.users, "user_id", "2")
    assert (u2["age"], u2["gender"], u2["occupation"]) == ("56+", "male", "self-employed")


def test_unknown_items_drop_or_error(tmp_path, caplog):
    ratings = "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,777,3.0,2\n"
    make_latest(tmp_path, ratings=ratings)
    ds = load_movielens(root=str(tmp_path), download=False)
    assert ds.interactions["item_id"].tolist() == ["1"]
    assert "1 interaction(s)" in caplog.text
    with pytest.raises(DataError, match="ratings|not in the catalogue"):
        load_movielens(root=str(tmp_path), download=False, unknown_items="error")
    with pytest.raises(ConfigError, match="unknown_items"):
        load_movielens(root=str(tmp_path), download=False, unknown_items="keep")


# ----------------------------------------------------------------------------- bad inputs

HEAD = "userId,movieId,rating,timestamp\n"


@pytest.mark.parametrize(
    ("ratings", "pattern"),
    [
        ("", r"ratings\.csv: empty file"),
        ("userId,movieId,timestamp\n1,1,5\n", r"ratings\.csv: missing column.*rating"),
        (HEAD + "1,1,4.0,1\n1,11,abc,2\n", r"ratings\.csv line 3: rating 'abc' is not a number"),
        (HEAD + "1,1,4.0,1\n1,11,NaN,2\n", r"ratings\.csv line 3: rating is NaN"),
        (HEAD + "1,1,4.0,1\n1,11,,2\n", r"ratings\.csv line 3: missing rating"),
        (HEAD + "1,1,6.0,1\n", r"ratings\.csv line 2: rating 6 outside \[0\.5, 5\]"),
        (HEAD + "1,1,0.0,1\n", r"ratings\.csv line 2: rating 0 outside"),
        (HEAD + "1,1,4.0,1\n1,11,4.0\n", r"ratings\.csv line 3: expected 4 fields, found 3"),
        (HEAD + "1,1,4.0,1,9\n1,11,4.0,2\n", r"ratings\.csv line 2: expected 4 fields, found 5"),
        (HEAD + "1,1,4.0,1\n1,11,4.0,2,9\n", r"ratings\.csv line 3: expected 4 fields, found 5"),
        (HEAD + "1,1,4.0,1\n\n1,11,4.0,x\n", r"ratings\.csv line 4: timestamp 'x' is not an"),
    ],
)
def test_bad_ratings_csv(tmp_path, ratings, pattern):
    make_latest(tmp_path, ratings=ratings)
    with pytest.raises(DataError, match=pattern) as info:
        load_movielens(root=str(tmp_path), download=False)
    assert "\n" not in str(info.value)


def test_missing_folder_file_and_bad_release(tmp_path):
    with pytest.raises(DataError, match="ml-latest-small.*download=False"):
        load_movielens(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="download=False"):
        load_movielens(root=None, download=False)
    folder = make_latest(tmp_path)
    (folder / "movies.csv").unlink()
    with pytest.raises(DataError, match=r"movies\.csv: file not found"):
        load_movielens(root=str(tmp_path), download=False)
    with pytest.raises(ConfigError, match="ml-100k"):
        load_movielens("ml-7", root=str(tmp_path), download=False)
    with pytest.raises(ConfigError, match="tags_as_text"):
        load_movielens("ml-1m", root=str(tmp_path), download=False, tags_as_text=True)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"ratings": "1::1193::5::1\n1::661::3\n"}, r"ratings\.dat line 2: expected 4 fields"),
        ({"ratings": "1::1193::5::1\n1::661::x::2\n"}, r"ratings\.dat line 2: rating 'x'"),
        ({"ratings": "1::1193::0.5::1\n"}, r"ratings\.dat line 1: rating 0\.5 outside \[1, 5\]"),
        ({"users": "1::F::1::10::48067\n2::M::7::16::70072\n"}, r"users\.dat: unknown age code"),
        ({"users": "1::X::1::10::48067\n"}, r"users\.dat: unknown gender code 'X'"),
        ({"users": "1::F::1::99::48067\n"}, r"users\.dat: unknown occupation code '99'"),
    ],
)
def test_bad_ml1m(tmp_path, kwargs, pattern):
    make_1m(tmp_path, **kwargs)
    with pytest.raises(DataError, match=pattern):
        load_movielens("ml-1m", root=str(tmp_path), download=False)


def test_bad_ml100k(tmp_path):
    make_100k(tmp_path, u_data="1\t10\t4\t881250949\n2\t1633\t5\n")
    with pytest.raises(DataError, match=r"u\.data line 2: expected 4 fields, found 3"):
        load_movielens("ml-100k", root=str(tmp_path), download=False)
    make_100k(tmp_path, u_data="1\t10\t4\t881250949\n2\t1633\t0\t1\n")
    with pytest.raises(DataError, match=r"u\.data line 2: rating 0 outside \[1, 5\]"):
        load_movielens("ml-100k", root=str(tmp_path), download=False)
    make_100k(tmp_path)
    item = tmp_path / "ml-100k" / "u.item"
    item.write_bytes(item.read_bytes() + b"99|Short row|01-Jan-1990\n")
    with pytest.raises(DataError, match=r"u\.item line 4: expected 24 fields, found 3"):
        load_movielens("ml-100k", root=str(tmp_path), download=False)
