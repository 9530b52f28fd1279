"""Amazon Reviews on real-data shapes: folder layout under DIVREC_DATA_DIR, scrape junk in the
metadata text, and the catalogue a composed ``data=amazon`` run ends up with."""

from __future__ import annotations

import pytest

from divrec.data.sources.amazon import load_amazon
from divrec.errors import ConfigError, DataError
from divrec.run.build import build_datamodule
from tests.data.test_amazon import META_2023, REVIEWS_2023, write_lines

JUNK = '<span class="a-size-medium a-color-secondary"'
IMG = (
    '<img src="https://images-na.ssl-images-amazon.com/images/G/01/x.png" '
    'class="nav-categ-image" alt="AMAZON FASHION"/>'
)
# 2018 metadata as scraped: junk titles, HTML descriptions (lists), an <img> as main_cat.
META_JUNK = [
    {"asin": "A1", "title": JUNK, "brand": "Acme", "category": ["Beauty", "Skin Care"],
     "description": ["<b>Rich face cream.</b> For dry skin.", "<br>Made in France"]},
    {"asin": "A2", "title": JUNK, "brand": "Glow", "category": [], "main_cat": IMG,
     "description": []},
    {"asin": "A3", "title": "<b>Lip &amp; Cheek</b> Tint", "category": ["Beauty"],
     "description": "&lt;p&gt;Escaped &lt;i&gt;markup&lt;/i&gt;&lt;/p&gt;"},
    {"asin": "A4", "title": "", "category": []},
    {"asin": "A5", "title": "Plain title", "category": ["Beauty"], "description": "1 m <USB-C>"},
]  # fmt: skip
REVIEWS_JUNK = [
    {"overall": 5.0, "reviewerID": f"U{i}", "asin": f"A{i}", "unixReviewTime": 1441065600 + i}
    for i in range(1, 6)
]


def test_clean_text_strips_markup_but_not_angle_text():
    from divrec.data.sources.amazon_text import clean_text, first_sentence, is_junk_title

    assert clean_text("<b>Bold</b> &amp; <i>it</i>") == ("Bold & it", True)
    assert clean_text("&lt;p&gt;Escaped&lt;/p&gt;") == ("Escaped", True)
    assert clean_text("1 m <USB-C> cable") == ("1 m <USB-C> cable", False)
    assert clean_text(JUNK) == ("", True)
    assert clean_text(IMG) == ("AMAZON FASHION", True)
    assert clean_text(["<script>var a = 1;</script>Nice", "<br/>soap"]) == ("Nice soap", True)
    assert clean_text(None) == ("", False)
    assert is_junk_title("var aPageStart = (new Date()).getTime();")
    assert is_junk_title("a-size-medium a-color-secondary") and is_junk_title(" - ")
    assert not is_junk_title("Lip & Cheek Tint (2 oz.)")
    long = "word " * 40
    assert len(first_sentence(long)) <= 80 and first_sentence("One. Two.") == "One"


def test_junk_titles_fall_back_and_are_counted(tmp_path):
    reviews = write_lines(tmp_path / "r.json.gz", REVIEWS_JUNK, gz=True)
    meta = write_lines(tmp_path / "m.json.gz", META_JUNK, gz=True)
    ds = load_amazon(str(reviews), str(meta))
    items = ds.items.set_index("item_id")
    assert items.loc["A1", "title"] == "Rich face cream"  # description's first sentence
    assert items.loc["A1", "description"] == "Rich face cream. For dry skin. Made in France"
    assert items.loc["A2", "title"] == "Glow AMAZON FASHION"  # brand + leaf category
    assert items.loc["A2", "categories"] == ["AMAZON FASHION"]  # <img alt> of main_cat
    assert items.loc["A3", "title"] == "Lip & Cheek Tint"
    assert items.loc["A3", "description"] == "Escaped markup"
    assert items.loc["A4", "title"] == "A4"  # nothing to fall back on
    assert items.loc["A5", "title"] == "Plain title"
    assert items.loc["A5", "description"] == "1 m <USB-C>"
    assert not items["title"].str.contains("<|class=").any()
    stats = ds.stats()
    assert stats["text/cleaned_titles"] == 3  # A1, A2 junk; A3 markup removed
    assert stats["text/titles_from_fallback"] == 2  # A1, A2
    assert stats["text/titles_from_id"] == 1  # A4
    assert stats["text/html_stripped"] == 3  # A1, A2, A3


def _tree(root, version: str, category: str = "All_Beauty", gz: bool = True):
    """``root/amazon/<version>/<category>/`` with the release's file names."""
    folder = root / "amazon" / version / category
    folder.mkdir(parents=True)
    ext = ".json" if version == "2018" else ".jsonl"
    ext += ".gz" if gz else ""
    reviews, meta = (REVIEWS_JUNK, META_JUNK) if version == "2018" else (REVIEWS_2023, META_2023)
    write_lines(folder / f"{category}{ext}", reviews, gz)
    write_lines(folder / f"meta_{category}{ext}", meta, gz)
    return folder


@pytest.mark.parametrize("version", ["2018", "2023"])
def test_category_under_data_dir(tmp_path, monkeypatch, version):
    _tree(tmp_path, version, gz=version == "2018")
    monkeypatch.setenv("DIVREC_DATA_DIR", str(tmp_path))
    for v in (int(version), version, None):  # Hydra gives data.version=2018 as an int
        ds = load_amazon(category="All_Beauty", version=v)
        assert ds.name == "All_Beauty" and ds.extra["layout"] == version
        assert len(ds.items) == len(META_JUNK if version == "2018" else META_2023)
    ds = load_amazon(category="All_Beauty", version=version, layout=int(version))
    assert ds.extra["layout"] == version


def test_layout_and_file_errors_are_one_clear_line(tmp_path, monkeypatch):
    folder = _tree(tmp_path, "2018")
    _tree(tmp_path, "2023")
    monkeypatch.setenv("DIVREC_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"found under both .*set data.version=2018"):
        load_amazon(category="All_Beauty")
    with pytest.raises(DataError, match=r"no folder .*2018/Beauty; available: 2018/All_Beauty"):
        load_amazon(category="Beauty", version=2018)
    with pytest.raises(ConfigError, match=r"data.version: must be 2018 or 2023, got 2020"):
        load_amazon(category="All_Beauty", version=2020)
    with pytest.raises(ConfigError, match=r"data.reviews: required .* or data.category"):
        load_amazon()
    (folder / "All_Beauty.json.gz").rename(folder / "All_Beauty_5.json.gz")
    with pytest.raises(DataError, match=r"no reviews file All_Beauty.json.gz or All_Beauty.json"):
        load_amazon(category="All_Beauty", version=2018)
    # a relative explicit name: found in the category folder (the 5-core file here)
    ds = load_amazon(reviews="All_Beauty_5.json.gz", category="All_Beauty", version=2018)
    assert len(ds.items) == len(META_JUNK)
    # relative to data.root ($DIVREC_DATA_DIR/amazon) without a category
    ds = load_amazon(reviews="2018/All_Beauty/All_Beauty_5.json.gz")
    assert ds.name == "All_Beauty_5"
    with pytest.raises(DataError) as info:
        load_amazon(reviews="nope.json")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("data.reviews=nope.json: file not found; tried ")
    assert str(tmp_path / "amazon" / "nope.json") in msg and str(tmp_path / "nope.json") in msg
    monkeypatch.delenv("DIVREC_DATA_DIR")
    with pytest.raises(ConfigError, match=r"set DIVREC_DATA_DIR \(or data.root\)"):
        load_amazon(category="All_Beauty")


def _shop(n_users: int = 12, n_reviewed: int = 8, n_meta: int = 40) -> tuple[list, list]:
    """Every user reviews every one of ``n_reviewed`` items (5 stars); the metadata lists
    ``n_meta`` items like a category dump does, most never reviewed."""
    reviews = [
        {"overall": 5.0, "reviewerID": f"U{u}", "asin": f"A{i}",
         "unixReviewTime": 1441065600 + 100 * u + i}
        for u in range(n_users) for i in range(n_reviewed)
    ]  # fmt: skip
    meta = [
        {"asin": f"A{i}", "title": JUNK if i % 2 else f"Item {i}", "brand": "Acme",
         "category": ["Beauty", f"Kind {i % 3}"], "description": [f"<p>Product {i}.</p>"]}
        for i in range(n_meta)
    ]  # fmt: skip
    return reviews, meta


@pytest.mark.parametrize("how", ["files", "category"])
def test_composed_amazon_run_ranks_only_items_with_interactions(compose_source, tmp_path, how):
    reviews, meta = _shop()
    folder = tmp_path / "data" / "amazon" / "2018" / "All_Beauty"
    folder.mkdir(parents=True)
    write_lines(folder / "All_Beauty.json.gz", reviews, gz=True)
    write_lines(folder / "meta_All_Beauty.json.gz", meta, gz=True)
    if how == "files":  # absolute paths, as before the folder layout existed
        where = [f"data.reviews={folder / 'All_Beauty.json.gz'}"]
        where += [f"data.meta={folder / 'meta_All_Beauty.json.gz'}"]
    else:
        where = [f"data.root={tmp_path / 'data' / 'amazon'}", "data.category=All_Beauty"]
        where += ["data.version=2018"]
    dm = build_datamodule(compose_source("data=amazon", *where))
    assert len(dm.catalogue) == 8  # not the 40 items of the metadata file
    assert dm.stats["catalogue_items"] == 8 and dm.stats["preprocess/catalogue_items_dropped"] == 32
    assert dm.stats["text/titles_from_fallback"] == 20  # the odd ids' junk titles
    assert dm.stats["text/empty_items"] == 0
    assert dm.catalogue.titles[dm.catalogue.index["A1"]] == "Product 1"
    assert not any("class=" in t or "<" in t for t in dm.catalogue.texts)
