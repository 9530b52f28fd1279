"""Every line of the README's "Worked examples, one per source" block runs as written.

The block is read from README.md (between its markers); each command is split as a POSIX shell
would (``shlex``: the quoting of a ``{field}`` template is part of what is tested), ``/path/to/``
is pointed at files this test builds in each source's layout (from one small simulated shop),
and the overrides are composed and trained with test-sized model settings appended.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from divrec.data.sources import load_source
from divrec.run.train import train
from tests.conftest import ROOT

START, END = "<!-- worked examples start -->", "<!-- worked examples end -->"
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")
EXTRA_META = 10  # Amazon metadata rows nobody reviewed: not in the catalogue


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = [ln.strip() for ln in block.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith(("#", "```"))]


COMMANDS = readme_commands()


def _shop():
    ds = load_source("shop_sim", n_items=80, n_users=60, n_interactions=1800, seed=3)
    inter = ds.interactions.copy()
    inter["rating"] = np.maximum(inter["rating"], 4.0)  # all positives under every source's rule
    return ds, inter


def _num(ids) -> list[int]:
    return [int(str(i)[1:]) for i in ids]  # "u0007" -> 7 (MovieLens ids are integers)


def _write_movielens(root: Path, ds, inter) -> None:
    folder = root / "movielens" / "ml-latest-small"
    folder.mkdir(parents=True)
    r = inter.assign(userId=_num(inter["user_id"]), movieId=_num(inter["item_id"]))
    r[["userId", "movieId", "rating", "timestamp"]].to_csv(folder / "ratings.csv", index=False)
    movies = ds.items.assign(
        movieId=_num(ds.items["item_id"]), genres=["|".join(c) for c in ds.items["categories"]]
    )
    movies[["movieId", "title", "genres"]].to_csv(folder / "movies.csv", index=False)


def _write_amazon(root: Path, ds, inter) -> None:
    folder = root / "amazon" / "2018" / "All_Beauty"
    folder.mkdir(parents=True)
    with gzip.open(folder / "All_Beauty.json.gz", "wt") as f:
        for r in inter.itertuples():
            row = {"reviewerID": r.user_id, "asin": r.item_id, "overall": r.rating}
            f.write(json.dumps({**row, "unixReviewTime": int(r.timestamp)}) + "\n")
    with gzip.open(folder / "meta_All_Beauty.json.gz", "wt") as f:
        for r in ds.items.itertuples():
            row = {"asin": r.item_id, "title": r.title, "brand": r.brand}
            f.write(json.dumps({**row, "category": list(r.categories), "description": []}) + "\n")
        for i in range(EXTRA_META):
            f.write(json.dumps({"asin": f"x{i}", "title": f"Unreviewed {i}"}) + "\n")


def _write_recbole(root: Path, ds, inter) -> None:
    folder = root / "atomic"
    folder.mkdir(parents=True)
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    rows = [f"{r.user_id}\t{r.item_id}\t{r.rating}\t{r.timestamp}" for r in inter.itertuples()]
    (folder / "ml-100k.inter").write_text(head + "\n".join(rows) + "\n")
    cats = [" ".join(c.replace(" ", "_") for c in cs) for cs in ds.items["categories"]]
    items = [
        f"{i}\t{t}\t{c}"
        for i, t, c in zip(ds.items["item_id"], ds.items["title"], cats, strict=True)
    ]
    head = "item_id:token\ttitle:token_seq\tclass:token_seq\n"
    (folder / "ml-100k.item").write_text(head + "\n".join(items) + "\n")


def _write_csv(root: Path, ds, inter) -> None:
    folder = root / "shop"
    folder.mkdir(parents=True)
    inter[["user_id", "item_id", "rating", "timestamp"]].to_csv(
        folder / "interactions.csv", index=False
    )
    items = ds.items.assign(categories=["|".join(c) for c in ds.items["categories"]])
    items[["item_id", "title", "categories", "brand"]].to_csv(folder / "items.csv", index=False)
    ds.users.to_csv(folder / "users.csv", index=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("path_to")
    ds, inter = _shop()
    for write in (_write_movielens, _write_amazon, _write_recbole, _write_csv):
        write(root / "data" if write in (_write_movielens, _write_amazon) else root, ds, inter)
    return root


def test_block_has_one_example_per_source():
    sources = [re.search(r"\bdata=(\w+)", c).group(1) for c in COMMANDS]
    assert sorted(sources) == ["amazon", "csv", "movielens", "recbole", "shop_sim"]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: re.search(r"data=(\w+)", c).group(1))
def test_worked_example_runs(command, files, compose, tmp_path, monkeypatch):
    words = [w.replace("/path/to/", f"{files}/") for w in shlex.split(command)]
    while ENV.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        monkeypatch.setenv(name, value)
    assert words[:2] == ["python", "train.py"], command
    overrides = words[2:]
    cfg = compose(*overrides)
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["meta"]["status"] == "ok"
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0 and math.isfinite(metrics["test/ndcg@10"])
    stats = metrics["meta"]["data_stats"]
    if "data=amazon" in overrides:  # the metadata-only items are not ranked
        assert stats["catalogue_items"] == stats["items_with_interactions"] == 80
    if "data=csv" in overrides:  # the shell + Hydra quoting gives the template verbatim
        assert cfg.data.text.item_template == "{title} by {brand}. Categories: {categories}."
