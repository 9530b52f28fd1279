"""The invoice-line source: drops (each counted), aggregation, titles, column map, errors."""

from __future__ import annotations

import csv
import gzip
import json
import math
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divrec.data.sources import load_source
from divrec.data.sources.transactions import MAPPING_UCI
from divrec.errors import ConfigError, DataError
from divrec.run.train import train
from tests.conftest import ROOT

UCI_HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
UCI_FORMAT = "%m/%d/%Y %H:%M"
# (invoice, item, description, quantity, date, price, customer)
LINES = [
    ("536365", "A1", "RED MUG", 2, "12/1/2010 8:26", 1.5, "17850.0"),
    ("536366", "A1", "RED MUG ", 3, "12/2/2010 9:00", 1.5, "17850"),  # same user, repeated
    ("536367", "A1", "Red mug", 1, "12/3/2010 10:00", 1.6, "12000"),
    ("536368", "A1", "Red mug", 1, "12/3/2010 11:00", 1.6, "12001"),
    ("536369", "B2", "GREEN BOWL", 4, "12/4/2010 9:00", 2.0, "12000"),
    ("536369", "B2", "BLUE BOWL", 1, "12/5/2010 9:00", 2.0, "12001"),
    ("C536370", "A1", "RED MUG", -2, "12/6/2010 9:00", 1.5, "17850"),  # cancelled
    ("536371", "B2", "BLUE BOWL", -1, "12/6/2010 9:10", 2.0, "12000"),  # return
    ("536372", "B2", "BLUE BOWL", 0, "12/6/2010 9:20", 2.0, "12000"),  # zero quantity
    ("536373", "POST", "POSTAGE", 1, "12/6/2010 9:30", 18.0, "12000"),  # fee
    ("536374", "M", "Manual", 1, "12/6/2010 9:40", 0.5, "12001"),  # manual line
    ("536375", "A1", "RED MUG", 5, "12/6/2010 9:50", 1.5, ""),  # guest: no customer
    ("536376", "C3", "CHAIR", 1, "12/7/2010 9:00", 30.0, "12001"),  # 'C' item: kept
    ("536377", "D9", "", 2, "12/8/2010 9:00", 3.0, "12000"),  # no description
]


def _t(date: str) -> int:
    return int(pd.Timestamp(pd.to_datetime(date, format=UCI_FORMAT), tz="UTC").timestamp())


def _write_uci(path: Path, lines=LINES, gz: bool = False) -> Path:
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="latin-1") as f:
        w = csv.writer(f)
        w.writerow(UCI_HEADER)
        for inv, item, desc, qty, date, price, cust in lines:
            w.writerow([inv, item, desc, qty, date, price, cust, "United Kingdom"])
    return path


def _load(path: Path, **kw):
    opts = {"columns": MAPPING_UCI, "time_format": UCI_FORMAT, "encoding": "latin-1", **kw}
    return load_source("transactions", path=str(path), **opts)


def _pairs(ds) -> dict[tuple[str, str], tuple[float, int]]:
    i = ds.interactions
    return {
        (u, it): (r, t)
        for u, it, r, t in zip(i.user_id, i.item_id, i.rating, i.timestamp, strict=True)
    }


def test_every_drop_is_counted_once(tmp_path):
    ds = _load(_write_uci(tmp_path / "retail.csv"))
    stats = ds.stats()
    assert {k: v for k, v in stats.items() if k.startswith("tx/")} == {
        "tx/lines": 14,
        "tx/dropped_missing_user": 1,
        "tx/dropped_cancelled": 1,  # negative too, but counted under the first rule only
        "tx/dropped_nonpositive_quantity": 2,
        "tx/dropped_non_product": 2,
        "tx/kept_lines": 8,
        "tx/repeat_interactions": 0,  # aggregate=pair: one interaction per (user, item)
    }
    assert sorted(ds.items["item_id"]) == ["A1", "B2", "C3", "D9"]  # no POST / M
    assert ds.name == "retail"


def test_count_rating_and_first_time(tmp_path):
    ds = _load(_write_uci(tmp_path / "retail.csv"))
    assert _pairs(ds) == {
        ("17850", "A1"): (2.0, _t("12/1/2010 8:26")),  # "17850.0" and "17850" are one user
        ("12000", "A1"): (1.0, _t("12/3/2010 10:00")),
        ("12001", "A1"): (1.0, _t("12/3/2010 11:00")),
        ("12000", "B2"): (1.0, _t("12/4/2010 9:00")),
        ("12001", "B2"): (1.0, _t("12/5/2010 9:00")),
        ("12001", "C3"): (1.0, _t("12/7/2010 9:00")),
        ("12000", "D9"): (1.0, _t("12/8/2010 9:00")),
    }
    assert ds.interactions["timestamp"].is_monotonic_increasing


def test_quantity_rating_and_last_time(tmp_path):
    ds = _load(_write_uci(tmp_path / "retail.csv"), rating="quantity", timestamp="last")
    pairs = _pairs(ds)
    assert pairs[("17850", "A1")] == (5.0, _t("12/2/2010 9:00"))
    assert pairs[("12000", "B2")] == (4.0, _t("12/4/2010 9:00"))
    assert pairs[("12000", "D9")] == (2.0, _t("12/8/2010 9:00"))


# (invoice, item, quantity, time, user): u1 buys A1 twice in invoice 1 (two lines), again in 2
REPEATS = [
    ("1", "A1", 1, 100, "u1"),
    ("1", "A1", 2, 100, "u1"),
    ("1", "B2", 1, 100, "u1"),
    ("2", "A1", 4, 250, "u1"),
    ("3", "A1", 1, 200, "u2"),
    ("4", "A1", 2, 300, "u2"),
    ("5", "B2", 5, 300, "u1"),
]


def _write_repeats(path: Path, with_invoice: bool = True) -> Path:
    head = "invoice,item,quantity,time,user" if with_invoice else "item,quantity,time,user"
    rows = [",".join(map(str, r if with_invoice else r[1:])) for r in REPEATS]
    path.write_text("\n".join([head, *rows]) + "\n")
    return path


def _events(ds) -> list[tuple[str, str, float, int]]:
    i = ds.interactions
    return list(zip(i.user_id, i.item_id, i.rating, i.timestamp, strict=True))


def test_invoice_aggregate_keeps_repeat_purchases(tmp_path):
    path = _write_repeats(tmp_path / "lines.csv")
    ds = load_source("transactions", path=str(path), aggregate="invoice")
    # one event per (user, item, invoice), ordered by time; rating = the invoice's lines
    assert _events(ds) == [
        ("u1", "A1", 2.0, 100),
        ("u1", "B2", 1.0, 100),
        ("u2", "A1", 1.0, 200),
        ("u1", "A1", 1.0, 250),
        ("u1", "B2", 1.0, 300),  # time ties: by user, then item
        ("u2", "A1", 1.0, 300),
    ]
    # repeats: u1-A1 at 250, u2-A1 at 300, u1-B2 at 300 (each pair's first event is not one)
    assert ds.stats()["tx/repeat_interactions"] == 3
    qty = load_source("transactions", path=str(path), aggregate="invoice", rating="quantity")
    assert [e[2] for e in _events(qty)] == [3.0, 1.0, 1.0, 4.0, 5.0, 2.0]
    pair = load_source("transactions", path=str(path))  # default: today's one per pair
    assert _events(pair) == [
        ("u1", "A1", 3.0, 100),
        ("u1", "B2", 2.0, 100),
        ("u2", "A1", 2.0, 200),
    ]
    assert pair.stats()["tx/repeat_interactions"] == 0


def test_invoice_aggregate_without_invoice_column_groups_by_time(tmp_path):
    path = _write_repeats(tmp_path / "lines.csv", with_invoice=False)
    ds = load_source("transactions", path=str(path), aggregate="invoice", timestamp="last")
    # the same events: here every invoice has its own time
    assert [(u, i, r) for u, i, r, _ in _events(ds)] == [
        ("u1", "A1", 2.0),
        ("u1", "B2", 1.0),
        ("u2", "A1", 1.0),
        ("u1", "A1", 1.0),
        ("u1", "B2", 1.0),
        ("u2", "A1", 1.0),
    ]


def test_uci_invoice_aggregate_splits_the_repeated_mug(tmp_path):
    ds = _load(_write_uci(tmp_path / "retail.csv"), aggregate="invoice", rating="quantity")
    mugs = [(r, t) for u, i, r, t in _events(ds) if (u, i) == ("17850", "A1")]
    assert mugs == [(2.0, _t("12/1/2010 8:26")), (3.0, _t("12/2/2010 9:00"))]
    assert ds.stats()["tx/repeat_interactions"] == 1


def test_titles_are_the_most_frequent_description(tmp_path):
    ds = _load(_write_uci(tmp_path / "retail.csv"))
    items = ds.items.set_index("item_id")
    # A1: "RED MUG" x2 (trailing space stripped) vs "Red mug" x2: tie -> alphabetically first
    # B2: one kept line each (the dropped BLUE BOWL lines do not vote): tie -> BLUE BOWL
    assert items["title"].to_dict() == {
        "A1": "RED MUG",
        "B2": "BLUE BOWL",
        "C3": "CHAIR",
        "D9": "D9",
    }
    assert all(c == [] for c in items["categories"])
    assert items.loc["A1", "price"] == "1.55" and items.loc["C3", "price"] == "30.00"
    flipped = _load(_write_uci(tmp_path / "flipped.csv", LINES[::-1]))
    assert flipped.items.set_index("item_id")["title"].to_dict() == items["title"].to_dict()


def test_filters_can_be_switched_off(tmp_path):
    path = _write_uci(tmp_path / "retail.csv")
    stats = _load(path, cancel_prefix=None, non_product_regex=None).stats()
    assert stats["tx/dropped_cancelled"] == 0 and stats["tx/dropped_non_product"] == 0
    assert stats["tx/dropped_nonpositive_quantity"] == 3  # the cancellation is negative
    assert stats["tx/kept_lines"] == 10


def test_default_names_gzip_epoch_and_iso_times(tmp_path):
    path = tmp_path / "lines.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("user,item,time,quantity\n")
        f.write("u1,i1,1000,1\nu1,i1,1970-01-01T00:30:00,1\nu2,i2,3000.7,2\n")
    ds = load_source("transactions", path=str(path))
    pairs = _pairs(ds)
    assert pairs[("u1", "i1")] == (2.0, 1000) and pairs[("u2", "i2")] == (1.0, 3000)
    last = load_source("transactions", path=str(path), timestamp="last")
    assert _pairs(last)[("u1", "i1")] == (2.0, 1800)  # the ISO date, in UTC
    assert ds.name == "lines" and sorted(ds.items["title"]) == ["i1", "i2"]  # no descriptions


def test_missing_column_is_one_line_naming_file_and_column(tmp_path):
    path = tmp_path / "retail.csv"
    path.write_text("InvoiceNo,StockCode,Quantity,InvoiceDate\n1,A,1,12/1/2010 8:26\n")
    with pytest.raises(DataError) as err:
        _load(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "'CustomerID'" in msg
    assert "data.columns.user" in msg


def test_explicit_optional_column_must_exist(tmp_path):
    path = tmp_path / "lines.csv"
    path.write_text("user,item,time,quantity\nu,i,1,1\n")
    with pytest.raises(
        DataError, match=r"lines.csv: missing column 'Price' \(data.columns.price\)"
    ):
        load_source("transactions", path=str(path), columns={"price": "Price"})


def test_bad_date_names_file_line_and_column(tmp_path):
    lines = [*LINES[:3], ("536999", "A1", "RED MUG", 1, "2010-12-01 8:26", 1.5, "1")]
    path = _write_uci(tmp_path / "retail.csv", lines)
    with pytest.raises(DataError) as err:
        _load(path)
    msg = str(err.value)
    assert "\n" not in msg and f"{path} line 5: InvoiceDate '2010-12-01 8:26'" in msg
    assert UCI_FORMAT in msg


def test_bad_quantity_and_missing_file(tmp_path):
    path = tmp_path / "lines.csv"
    path.write_text("user,item,time,quantity\nu,i,1,1\nu,i,1,many\n")
    with pytest.raises(DataError, match=r"lines.csv line 3: quantity 'many' is not a number"):
        load_source("transactions", path=str(path))
    with pytest.raises(DataError, match="nothing.csv: file not found"):
        load_source("transactions", path=str(tmp_path / "nothing.csv"))


def test_bad_options_are_config_errors(tmp_path):
    path = tmp_path / "lines.csv"
    path.write_text("user,item,time,quantity\nu,i,1,1\n")
    for kw, key in [
        ({"rating": "sum"}, "data.rating"),
        ({"timestamp": "middle"}, "data.timestamp"),
        ({"aggregate": "basket"}, "data.aggregate"),
        ({"non_product_regex": "("}, "data.non_product_regex"),
        ({"columns": {"customer": "c"}}, "data.columns.customer"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load_source("transactions", path=str(path), **kw)


def _shop_log(path: Path, n_users: int = 40, n_items: int = 30, n_lines: int = 900) -> Path:
    rng = np.random.default_rng(0)
    users = rng.integers(0, n_users, n_lines)
    items = (users + rng.geometric(0.3, n_lines)) % n_items  # users share neighbouring items
    rows = pd.DataFrame(
        {
            "InvoiceNo": [f"{500000 + i // 3}" for i in range(n_lines)],
            "StockCode": [f"P{i:03d}" for i in items],
            "Description": [f"PRODUCT {i} MUG" for i in items],
            "Quantity": rng.integers(1, 6, n_lines),
            "InvoiceDate": [
                (pd.Timestamp("2010-12-01") + pd.Timedelta(hours=int(h))).strftime(UCI_FORMAT)
                for h in np.sort(rng.integers(0, 24 * 300, n_lines))
            ],
            "UnitPrice": 1.25,
            "CustomerID": [f"{12000 + u}.0" for u in users],
            "Country": "United Kingdom",
        }
    )
    rows.to_csv(path, index=False)
    return path


def readme_commands() -> list[list[str]]:
    """The README's transactions commands (UCI mapping, leave-last-out, repeat purchases),
    shell-split."""
    text = (ROOT / "README.md").read_text().split("### Shop transaction logs", 1)[1]
    text = text.split("\n### ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in text.split("```bash\n")[1:]]
    return [shlex.split(b.replace("\\\n", " ")) for b in blocks]


def readme_uci_command() -> list[str]:
    return readme_commands()[0]


def test_readme_leave_last_out_command_is_valid(compose_source, tmp_path):
    from divrec.config.check import validate_config

    words = readme_commands()[1]
    path = _write_uci(tmp_path / "lines.csv")
    cfg = compose_source(*(w.replace("/path/to/lines.csv", str(path)) for w in words[2:]))
    assert cfg.data.split.method == "temporal_loo" and cfg.data.path == str(path)
    validate_config(cfg)


def test_readme_repeat_purchase_command_is_valid_and_silent(compose_source, tmp_path, caplog):
    from divrec.config.check import validate_config

    words = readme_commands()[2]
    path = _write_uci(tmp_path / "lines.csv")
    cfg = compose_source(*(w.replace("/path/to/lines.csv", str(path)) for w in words[2:]))
    assert cfg.data.aggregate == "invoice" and cfg.data.preprocess.dedup == "none"
    assert cfg.model.name == "buy_again" and cfg.eval.mask_seen is False
    assert {"ndcg_repeat", "recall_new", "repeat_share"} <= set(cfg.eval.metrics)
    with caplog.at_level("WARNING", logger="divrec.config.check"):
        validate_config(cfg)
    assert not caplog.records  # neither the dedup nor the mask_seen warning


def test_end_to_end_readme_uci_command_trains(compose_source, tmp_path):
    words = readme_uci_command()
    assert words[:3] == ["python", "train.py", "data=transactions"]
    path = _shop_log(tmp_path / "online_retail.csv")
    overrides = [w.replace("/path/to/online_retail.csv", str(path)) for w in words[2:]]
    cfg = compose_source(
        *overrides, "model.head_hidden=32", "model.id_embeddings=false", "model.cache.bf16=false"
    )
    assert cfg.data.path == str(path) and cfg.data.time_format == UCI_FORMAT
    assert cfg.data.split.method == "global_temporal"
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["meta"]["status"] == "ok"
    assert math.isfinite(metrics["test/ndcg@10"]) and 0.0 <= metrics["test/ndcg@10"] <= 1.0
    stats = metrics["meta"]["data_stats"]
    assert stats["tx/lines"] == stats["tx/kept_lines"] == 900


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "lines.csv.gz"
    path.write_bytes(gzip.compress(b"user,item,time,quantity\n" + b"u,i,1,1\n" * 500)[:60])
    with pytest.raises(DataError, match="lines.csv.gz"):
        load_source("transactions", path=str(path))
