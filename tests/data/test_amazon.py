"""Amazon Reviews loader: 2018 and 2023 layouts, plain and gzipped, metadata handling."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from divrec.data.sources.amazon import load_amazon
from divrec.errors import ConfigError, DataError


def write_lines(path: Path, lines: list, gz: bool = False) -> Path:
    """Each entry: a dict (dumped as JSON) or a raw string line."""
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


REVIEWS_2018 = [
    {"overall": 5.0, "reviewerID": "U1", "asin": "A1", "unixReviewTime": 1441065600,
     "reviewText": "great", "verified": True},
    {"overall": 3.0, "reviewerID": "U2", "asin": "A2", "unixReviewTime": 1441065700},
    {"overall": 4.0, "reviewerID": "U1", "asin": "A3", "unixReviewTime": 1441065800},
    # Loose (Python-literal) line as in older dumps.
    "{'overall': 2.0, 'reviewerID': 'U3', 'asin': 'A1', 'unixReviewTime': 1441065900}",
]  # fmt: skip
META_2018 = [
    {"asin": "A1", "title": "Tom &amp; Jerry Headphones",
     "description": ["Great &quot;bass&quot;", "Light"],
     "category": ["Electronics", "Audio", "Headphones"], "brand": "Acme",
     "main_cat": "All Electronics"},
    {"asin": "A2", "title": "USB cable", "description": "1 m &lt;USB-C&gt;", "category": [],
     "main_cat": "Computers"},
    {"asin": "A1", "title": "Duplicate, must be ignored", "category": ["Other"]},
    {"asin": "A9", "title": "Never reviewed", "category": ["Toys"]},
]  # fmt: skip
REVIEWS_2023 = [
    {"rating": 5.0, "title": "Nice", "text": "ok", "images": [], "asin": "B1",
     "parent_asin": "P1", "user_id": "AG1", "timestamp": 1588687728923, "helpful_vote": 0},
    {"rating": 1.0, "title": "Bad", "text": "no", "images": [], "asin": "B2",
     "parent_asin": "P2", "user_id": "AG2", "timestamp": 1588687729999, "helpful_vote": 2},
]  # fmt: skip
META_2023 = [
    {"main_category": "All Beauty", "title": "Lip &amp; Cheek Tint", "description": [],
     "categories": [], "parent_asin": "P1", "store": "Glow&amp;Co"},
    {"main_category": "All Beauty", "title": "Face cream", "description": ["Rich", "cream"],
     "categories": ["Beauty", "Skin Care", "Face"], "parent_asin": "P2", "store": None},
]  # fmt: skip


def _item(ds, item_id: str) -> dict:
    rows = ds.items[ds.items["item_id"] == item_id].to_dict("records")
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("gz", [False, True])
def test_2018_layout(tmp_path, caplog, gz):
    reviews = write_lines(tmp_path / ("r.json.gz" if gz else "r.json"), REVIEWS_2018, gz)
    meta = write_lines(tmp_path / ("m.json.gz" if gz else "m.json"), META_2018, gz)
    with caplog.at_level(logging.WARNING):
        ds = load_amazon(str(reviews), str(meta))
    assert ds.extra["layout"] == "2018"
    # A3 has no metadata -> its one review is dropped: 4 - 1 = 3 reviews remain.
    assert sorted(ds.interactions["item_id"]) == ["A1", "A1", "A2"]
    assert "1 reviewed item(s) (1 review(s)) have no metadata" in caplog.text
    assert "1 duplicate metadata row(s)" in caplog.text
    first = ds.interactions.iloc[0].to_dict()
    assert first == {"user_id": "U1", "item_id": "A1", "rating": 5.0, "timestamp": 1441065600}
    loose = ds.interactions[ds.interactions["user_id"] == "U3"].iloc[0]
    assert (loose["rating"], loose["timestamp"]) == (2.0, 1441065900)
    a1 = _item(ds, "A1")
    assert a1["title"] == "Tom & Jerry Headphones"
    assert a1["categories"] == ["Electronics > Audio > Headphones"]
    assert a1["description"] == 'Great "bass" Light'
    assert a1["brand"] == "Acme"
    a2 = _item(ds, "A2")
    assert a2["categories"] == ["Computers"] and a2["description"] == "1 m <USB-C>"
    assert set(ds.items["item_id"]) == {"A1", "A2", "A9"}


def test_2018_keep_missing_meta(tmp_path, caplog):
    reviews = write_lines(tmp_path / "r.json", REVIEWS_2018)
    meta = write_lines(tmp_path / "m.json", META_2018)
    with caplog.at_level(logging.WARNING):
        ds = load_amazon(str(reviews), str(meta), drop_missing_meta=False)
    assert len(ds.interactions) == 4
    a3 = _item(ds, "A3")
    assert a3["title"] == "A3" and a3["categories"] == [] and a3["description"] == ""
    assert "kept with title = item id" in caplog.text
    with pytest.raises(DataError, match="1 reviewed item"):
        load_amazon(str(reviews), str(meta), unknown_items="error")


@pytest.mark.parametrize("gz", [False, True])
def test_2023_layout(tmp_path, gz):
    reviews = write_lines(tmp_path / ("r.jsonl.gz" if gz else "r.jsonl"), REVIEWS_2023, gz)
    meta = write_lines(tmp_path / ("m.jsonl.gz" if gz else "m.jsonl"), META_2023, gz)
    ds = load_amazon(str(reviews), str(meta))
    assert ds.extra["layout"] == "2023"
    # Timestamps in ms -> seconds (floor): 1588687729999 ms -> 1588687729 s.
    assert ds.interactions.to_dict("records") == [
        {"user_id": "AG1", "item_id": "P1", "rating": 5.0, "timestamp": 1588687728},
        {"user_id": "AG2", "item_id": "P2", "rating": 1.0, "timestamp": 1588687729},
    ]
    p1 = _item(ds, "P1")
    assert p1["title"] == "Lip & Cheek Tint" and p1["brand"] == "Glow&Co"
    assert p1["categories"] == ["All Beauty"]  # empty list -> main_category
    p2 = _item(ds, "P2")
    assert p2["categories"] == ["Beauty > Skin Care > Face"]
    assert p2["description"] == "Rich cream" and p2["main_category"] == "All Beauty"


def test_explicit_layout_and_no_meta(tmp_path):
    reviews = write_lines(tmp_path / "r.jsonl", REVIEWS_2023)
    ds = load_amazon(str(reviews), layout="2023")
    assert sorted(ds.items["item_id"]) == ["P1", "P2"]
    assert ds.items["title"].tolist() == ds.items["item_id"].tolist()
    with pytest.raises(DataError, match="missing field"):
        load_amazon(str(reviews), layout="2018")
    with pytest.raises(ConfigError, match="data.layout"):
        load_amazon(str(reviews), layout="2020")


@pytest.mark.parametrize(
    ("lines", "pattern"),
    [
        ([REVIEWS_2018[0], "{not json"], r"r\.json line 2: not a JSON object"),
        ([REVIEWS_2018[0], "[1, 2]"], r"r\.json line 2: not a JSON object"),
        (
            [REVIEWS_2018[0], {"reviewerID": "U", "asin": "A", "unixReviewTime": 1}],
            r"r\.json line 2: missing field\(s\) \['overall'\]",
        ),
        (
            [REVIEWS_2018[0], {**REVIEWS_2018[1], "overall": "five"}],
            r"r\.json line 2: non-numeric",
        ),
        (
            [
                REVIEWS_2018[0],
                '{"overall": NaN, "reviewerID": "U", "asin": "A", "unixReviewTime": 1}',
            ],
            r"r\.json line 2: rating is NaN",
        ),  # fmt: skip
        ([{"foo": 1}], r"r\.json: cannot tell the Amazon layout"),
        (["", "  "], r"r\.json: no reviews"),
    ],
)
def test_bad_reviews(tmp_path, lines, pattern):
    reviews = write_lines(tmp_path / "r.json", lines)
    with pytest.raises(DataError, match=pattern):
        load_amazon(str(reviews))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.json: file not found"):
        load_amazon(str(tmp_path / "nope.json"))
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(DataError, match=r"empty\.json: empty file"):
        load_amazon(str(tmp_path / "empty.json"))
    reviews = write_lines(tmp_path / "r.json", REVIEWS_2018)
    with pytest.raises(DataError, match=r"m\.json: file not found"):
        load_amazon(str(reviews), str(tmp_path / "m.json"))
    meta = write_lines(tmp_path / "m2.json", [{"title": "no asin"}])
    with pytest.raises(DataError, match=r"m2\.json line 1: missing field 'asin'"):
        load_amazon(str(reviews), str(meta))
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(DataError, match=r"bad\.gz: unreadable"):
        load_amazon(str(tmp_path / "bad.gz"))
