"""Bad data files through the CSV source: each is one DataError line naming the file, never a
silently different dataset (a duplicated header name used to drop a column with no word)."""

from __future__ import annotations

from pathlib import Path

import pytest

from divrec.data.sources.csv import load_csv
from divrec.errors import DataError
from tests.faults.conftest import one_line

ITEMS = "item_id,title,categories\n1,Red shoes,shoes\n2,Blue hat,hats\n3,Green bag,bags\n"
INTER = "user_id,item_id,rating,timestamp\nu1,1,5,100\nu1,2,4,200\nu2,3,3,150\nu2,1,2,50\n"


def _folder(tmp_path: Path, inter: str | bytes = INTER, items: str | bytes = ITEMS) -> Path:
    for name, data in (("interactions.csv", inter), ("items.csv", items)):
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return tmp_path


def test_good_folder_loads(tmp_path):
    ds = load_csv(str(_folder(tmp_path)), users=None)
    assert len(ds.interactions) == 4


@pytest.mark.parametrize(
    "which,header",
    [
        ("interactions", "user_id,item_id,timestamp,timestamp"),
        ("interactions", "user_id,item_id,rating, rating"),
        ("items", "item_id,title,title"),
    ],
    ids=["timestamp-twice", "rating-twice-spaced", "items-title-twice"],
)
def test_duplicated_header_name_is_rejected(tmp_path, which, header):
    inter, items = INTER, ITEMS
    if which == "interactions":
        inter = header + "\n" + "".join(f"u{i},1,{i},{i}\n" for i in range(3))
    else:
        items = header + "\n1,a,b\n2,c,d\n3,e,f\n"
    with pytest.raises(DataError) as info:
        load_csv(str(_folder(tmp_path, inter, items)), users=None)
    one_line(info.value, "more than once", f"{which}.csv")


@pytest.mark.parametrize(
    "inter,needle",
    [
        ("user_id,rating\nu1,5\n", "missing column"),
        ("user_id,item_id,rating,timestamp\nu1,1,5\n", "line 2"),
        ("user_id,item_id,rating,timestamp\nu1,1,5,yesterday-ish\n", "timestamp"),
        ("user_id,item_id,rating,timestamp\nu1,1,five,100\n", "rating"),
        ("", "empty file"),
        (b"\xff\xfe\x00\x00\x81\x82binary", "not valid"),
    ],
    ids=["no-item-column", "short-row", "bad-timestamp", "bad-rating", "empty", "binary"],
)
def test_malformed_interactions_are_one_line(tmp_path, inter, needle):
    with pytest.raises(DataError) as info:
        load_csv(str(_folder(tmp_path, inter)), users=None)
    one_line(info.value, "interactions.csv", needle)


def test_missing_items_file_is_one_line(tmp_path):
    folder = _folder(tmp_path)
    (folder / "items.csv").unlink()
    with pytest.raises(DataError) as info:
        load_csv(str(folder), users=None)
    one_line(info.value, "items.csv")
