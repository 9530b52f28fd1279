"""RecBole atomic files, plain CSV folders, and the source registry."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from divrec.data.sources import SOURCES, load_source
from divrec.data.sources.csv import load_csv
from divrec.data.sources.recbole import load_recbole
from divrec.errors import ConfigError, DataError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _item(ds, item_id: str) -> dict:
    rows = ds.items[ds.items["item_id"] == item_id].to_dict("records")
    assert len(rows) == 1
    return rows[0]


# ----------------------------------------------------------------------------- RecBole

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t10\t4\t881250949\n"
    "2\t20\t5\t891717742\n"
    "1\t30\t3\t878887116\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "10\tToy Story\t1995\tAnimation Children's Comedy\n"
    "20\tHeat\t1995\tAction Crime Thriller\n"
    "30\tCasino\t1995\tDrama\n"
    "30\tCasino duplicate\t1996\tComedy\n"
)
USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "1\t24\tM\ttechnician\t85711\n"
    "2\t53\tF\tother\t94043\n"
)


def make_recbole(root: Path, inter: str = INTER, item: str | None = ITEM, user=USER) -> Path:
    _write(root / "ml.inter", inter)
    if item is not None:
        _write(root / "ml.item", item)
    if user is not None:
        _write(root / "ml.user", user)
    return root


def test_recbole_defaults(tmp_path, caplog):
    make_recbole(tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = load_recbole(str(tmp_path), "ml")
    assert ds.interactions.iloc[0].to_dict() == {
        "user_id": "1",
        "item_id": "10",
        "rating": 4.0,
        "timestamp": 881250949,
    }
    toy = _item(ds, "10")
    assert toy["title"] == "Toy Story"
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert toy["release_year"] == "1995"
    assert _item(ds, "30")["title"] == "Casino"  # first of the duplicates kept
    assert "1 duplicate item_id row(s)" in caplog.text
    assert ds.users.set_index("user_id").loc["2"].to_dict() == {
        "age": "53",
        "gender": "F",
        "occupation": "other",
        "zip_code": "94043",
    }


def test_recbole_nested_folder_no_rating_no_time_no_item(tmp_path):
    inter = "user_id:token\titem_id:token\n7\ta\n8\tb\n7\tb\n"
    make_recbole(tmp_path / "ds", inter=inter, item=None, user=None)
    (tmp_path / "ds" / "ml.inter").rename(tmp_path / "ds" / "x.inter")
    (tmp_path / "ds" / "x").mkdir()
    (tmp_path / "ds" / "x.inter").rename(tmp_path / "ds" / "x" / "x.inter")
    ds = load_recbole(str(tmp_path / "ds"), "x")
    assert ds.interactions["rating"].tolist() == [1.0, 1.0, 1.0]
    assert ds.interactions["timestamp"].tolist() == [0, 1, 2]  # row order
    assert sorted(ds.items["item_id"]) == ["a", "b"] and ds.users is None
    assert ds.items["categories"].tolist() == [[], []]


def test_recbole_field_map_and_comma_seqs(tmp_path):
    inter = "uid:token\tiid:token\tscore:float\n1\t10\t2.5\n"
    item = (
        "iid:token\tname:token\ttags:token_seq\tgenre:token_seq\n10\tX\tSci-Fi, Space Opera\tA B\n"
    )
    make_recbole(tmp_path, inter=inter, item=item, user=None)
    fmap = {"user_id": "uid", "item_id": "iid", "rating": "score", "categories": "tags"}
    ds = load_recbole(str(tmp_path), "ml", field_map=fmap)
    assert ds.interactions.iloc[0][["user_id", "item_id", "rating"]].tolist() == ["1", "10", 2.5]
    x = _item(ds, "10")
    assert x["categories"] == ["Sci-Fi", "Space Opera"] and x["title"] == "X"
    assert x["genre"] == "A B"  # unused token_seq kept as text
    with pytest.raises(ConfigError, match="data.field_map.colour"):
        load_recbole(str(tmp_path), "ml", field_map={"colour": "x"})
    with pytest.raises(DataError, match="field_map.categories='nope'"):
        load_recbole(str(tmp_path), "ml", field_map={**fmap, "categories": "nope"})


def test_recbole_unknown_items(tmp_path, caplog):
    make_recbole(tmp_path, inter=INTER + "3\t99\t1\t5\n")
    with caplog.at_level(logging.WARNING):
        ds = load_recbole(str(tmp_path), "ml")
    assert "99" not in set(ds.interactions["item_id"]) and len(ds.interactions) == 3
    assert "1 interaction(s) reference 1 item id(s) not in the catalogue" in caplog.text
    with pytest.raises(DataError, match=r"ml\.inter: 1 interaction"):
        load_recbole(str(tmp_path), "ml", unknown_items="error")


@pytest.mark.parametrize(
    ("inter", "pattern"),
    [
        ("", r"ml\.inter: empty file"),
        ("user_id\titem_id\n1\t2\n", r"ml\.inter: header field 'user_id' is not 'name:type'"),
        ("user_id:token\trating:float\n1\t2\n", r"ml\.inter: missing field 'item_id'"),
        (INTER + "1\t10\tfive\t1\n", r"ml\.inter line 5: rating:float 'five' is not a number"),
        (INTER + "1\t10\tnan\t1\n", r"ml\.inter line 5: rating:float is NaN"),
        (INTER + "1\t10\t4\n", r"ml\.inter line 5: expected 4 fields, found 3"),
        (INTER + "1\t10\t4\tyesterday-ish\n", r"ml\.inter line 5: timestamp:float 'yesterday-ish'"),
        ("user_id:token\titem_id:token\n", r"ml\.inter: no data rows"),
    ],
)
def test_recbole_bad_inputs(tmp_path, inter, pattern):
    make_recbole(tmp_path, inter=inter)
    with pytest.raises(DataError, match=pattern):
        load_recbole(str(tmp_path), "ml")


def test_recbole_missing(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_recbole(str(tmp_path / "nope"), "ml")
    with pytest.raises(DataError, match=r"ml\.inter: file not found"):
        load_recbole(str(tmp_path), "ml")


# ----------------------------------------------------------------------------- CSV

INTERACTIONS = "user_id,item_id,rating,timestamp\nu1,i1,4,100\nu2,i2,2.5,200\nu1,i3,5,300\n"
ITEMS = (
    "item_id,title,categories,brand\n"
    'i1,"Kettle, steel",Home > Kitchen|Sale,Acme\n'
    "i2,Mug,Home > Kitchen,\n"
    "i3,Lamp,,Lumo\n"
)
USERS = "user_id,city\nu1,Paris\nu2,\n"


def make_csv(root: Path, inter=INTERACTIONS, items=ITEMS, users=USERS) -> Path:
    _write(root / "interactions.csv", inter)
    if items is not None:
        _write(root / "items.csv", items)
    if users is not None:
        _write(root / "users.csv", users)
    return root


def test_csv_defaults(tmp_path):
    make_csv(tmp_path)
    ds = load_csv(str(tmp_path))
    assert ds.interactions.iloc[1].to_dict() == {
        "user_id": "u2",
        "item_id": "i2",
        "rating": 2.5,
        "timestamp": 200,
    }
    kettle = _item(ds, "i1")
    assert kettle["title"] == "Kettle, steel"
    assert kettle["categories"] == ["Home > Kitchen", "Sale"] and kettle["brand"] == "Acme"
    assert _item(ds, "i3")["categories"] == [] and _item(ds, "i2")["brand"] == ""
    assert ds.users.to_dict("records") == [
        {"user_id": "u1", "city": "Paris"},
        {"user_id": "u2", "city": ""},
    ]


def test_csv_custom_columns_sep_dates_and_defaults(tmp_path):
    inter = "who;sku;when\nu1;i1;2020-01-01T00:00:10Z\nu2;i2;2020-01-02\n"
    items = "sku;name;tags\ni1;Kettle;a/b\ni2;Mug;c\ni2;Mug again;d\n"
    make_csv(tmp_path, inter=inter, items=items, users=None)
    cols = {"user_id": "who", "item_id": "sku", "timestamp": "when", "title": "name",
            "categories": "tags"}  # fmt: skip
    ds = load_csv(str(tmp_path), columns=cols, sep=";", category_sep="/")
    # 2020-01-01T00:00:10Z = 18262 days * 86400 + 10 = 1577836810; 2020-01-02 = +86400 - 10.
    assert ds.interactions["timestamp"].tolist() == [1577836810, 1577923200]
    assert ds.interactions["rating"].tolist() == [1.0, 1.0]  # no rating column
    assert _item(ds, "i1")["categories"] == ["a", "b"] and ds.users is None
    assert _item(ds, "i2")["title"] == "Mug"
    no_time = "who;sku\nu1;i1\nu2;i2\nu1;i2\n"
    make_csv(tmp_path, inter=no_time, items=items, users=None)
    ds = load_csv(str(tmp_path), columns=cols, sep=";", category_sep="/")
    assert ds.interactions["timestamp"].tolist() == [0, 1, 2]  # row order


def test_csv_unknown_items(tmp_path, caplog):
    make_csv(tmp_path, inter=INTERACTIONS + "u3,zzz,1,400\n")
    with caplog.at_level(logging.WARNING):
        ds = load_csv(str(tmp_path))
    assert len(ds.interactions) == 3 and "1 interaction(s)" in caplog.text
    with pytest.raises(DataError, match=r"interactions\.csv: 1 interaction.*\['zzz'\]"):
        load_csv(str(tmp_path), unknown_items="error")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"inter": "user_id,rating\nu1,4\n"}, r"interactions\.csv: missing column.*item_id"),
        ({"inter": "user_id,item_id,rating\nu1,i1,4\nu2,i2,NaN\n"}, r"interactions\.csv line 3: rating is NaN"),
        ({"inter": "user_id,item_id,rating\nu1,i1,4\n,i2,3\n"}, r"interactions\.csv line 3: missing user_id"),
        ({"items": "item_id,name\ni1,K\n"}, r"items\.csv: missing column .title."),
        ({"items": None}, r"items\.csv: file not found"),
        ({"users": "name\nx\n"}, r"users\.csv: missing column 'user_id'"),
        ({"inter": ""}, r"interactions\.csv: empty file"),
    ],
)  # fmt: skip
def test_csv_bad_inputs(tmp_path, kwargs, pattern):
    make_csv(tmp_path, **kwargs)
    with pytest.raises(DataError, match=pattern):
        load_csv(str(tmp_path))


def test_csv_config_errors(tmp_path):
    make_csv(tmp_path)
    with pytest.raises(ConfigError, match="data.columns.colour"):
        load_csv(str(tmp_path), columns={"colour": "x"})
    with pytest.raises(DataError, match="not found"):
        load_csv(str(tmp_path / "nope"))


# ----------------------------------------------------------------------------- registry


def test_registry_loads_and_checks_keys(tmp_path):
    make_csv(tmp_path)
    assert set(SOURCES) == {"movielens", "amazon", "recbole", "csv", "shop_sim", "transactions"}
    ds = load_source("csv", path=str(tmp_path), category_sep="|")
    assert len(ds.interactions) == 3
    with pytest.raises(ConfigError) as info:
        load_source("csv", path=str(tmp_path), colums={})
    msg = str(info.value)
    assert msg.startswith("data.colums: unknown key for source 'csv'; allowed: path, ")
    assert "category_sep" in msg
    with pytest.raises(ConfigError, match="data.path: required for source 'csv'"):
        load_source("csv")
    with pytest.raises(ConfigError, match="unknown source 'nope'; known: movielens, amazon"):
        load_source("nope")


def test_registry_converts_omegaconf(tmp_path):
    from omegaconf import OmegaConf

    make_csv(tmp_path)
    cfg = OmegaConf.create({"path": str(tmp_path), "columns": {"title": "title"}})
    ds = load_source("csv", **cfg)
    assert len(ds.items) == 3


def test_csv_without_categories_column(tmp_path, caplog):
    make_csv(tmp_path, items="item_id,title,brand\ni1,Kettle,Acme\ni2,Mug,\ni3,Lamp,Lumo\n")
    with caplog.at_level(logging.INFO, logger="divrec.data.sources.csv"):
        ds = load_csv(str(tmp_path))
    assert [list(c) for c in ds.items["categories"]] == [[], [], []]
    assert _item(ds, "i1")["brand"] == "Acme"
    assert "no 'categories' column" in caplog.text


def test_csv_yaml_lists_every_loader_option():
    import inspect

    from omegaconf import OmegaConf

    conf = OmegaConf.load(Path(__file__).parents[2] / "conf" / "data" / "csv.yaml")
    for name, param in inspect.signature(load_csv).parameters.items():
        assert name in conf.keys(), f"conf/data/csv.yaml lacks {name}"
        if param.default is not inspect.Parameter.empty:
            assert conf[name] == param.default, name
