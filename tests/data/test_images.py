"""Item images: shop_sim's rendered images (deterministic, category recoverable from pixels,
the shop unchanged), image references from a column (paths, roots, URLs fetched once),
missing and unreadable files."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from divrec.data import images as im
from divrec.data.sources.shop_images import SHAPES, render_pixels
from divrec.data.sources.shop_sim import load_shop_sim
from divrec.errors import ConfigError, DataError

SMALL = {"n_items": 600, "n_users": 60, "n_interactions": 1200, "seed": 3}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return load_shop_sim(**SMALL, render_images=True, image_dir=str(tmp_path_factory.mktemp("i")))


def _pixels(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=float) for p in paths])


def test_rendering_leaves_the_shop_unchanged(shop):
    plain = load_shop_sim(**SMALL)
    pd.testing.assert_frame_equal(plain.interactions, shop.interactions)
    pd.testing.assert_frame_equal(plain.items, shop.items.drop(columns="image"))
    assert "image" not in plain.items.columns


def test_rendered_images_are_deterministic_pngs(shop, tmp_path):
    again = load_shop_sim(**SMALL, render_images=True, image_dir=str(tmp_path))
    assert again.items["image"].tolist() != shop.items["image"].tolist()  # other folder
    np.testing.assert_array_equal(_pixels(again.items["image"]), _pixels(shop.items["image"]))
    other = load_shop_sim(**{**SMALL, "seed": 4}, render_images=True, image_dir=str(tmp_path))
    assert Path(other.items["image"][0]).parent != Path(again.items["image"][0]).parent
    img = Image.open(shop.items["image"][0])
    assert img.format == "PNG" and img.size == (32, 32) and img.mode == "RGB"


def _nearest_centroid_accuracy(x: np.ndarray, labels: list[str]) -> float:
    """Centroids from even rows, accuracy on odd rows (brute force distances)."""
    y = np.array(labels)
    train, test = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    names = sorted(set(y[train]))
    cents = np.stack([x[train][y[train] == c].mean(0) for c in names])
    d = ((x[test][:, None, :] - cents[None]) ** 2).sum(-1)
    return float((np.array(names)[d.argmin(1)] == y[test]).mean())


def test_category_is_recoverable_from_the_pixels(shop):
    px = _pixels(shop.items["image"])  # [N, 32, 32, 3]
    pooled = px.reshape(len(px), 4, 8, 4, 8, 3).mean(axis=(2, 4)).reshape(len(px), -1)
    leaf = [c[0] for c in shop.items["categories"]]
    dept = [c.split(" > ")[0] for c in leaf]
    assert _nearest_centroid_accuracy(pooled, leaf) > 0.9
    # the shape's pixels (far from the grey background): their colour names the leaf, their
    # layout (the mask moved to its centre of mass) the department
    fg = np.abs(px - 128).max(-1) > 40  # [N, 32, 32]
    colour = np.stack([p[m].mean(0) for p, m in zip(px, fg, strict=True)])
    assert _nearest_centroid_accuracy(colour, leaf) > 0.9
    ys, xs = np.mgrid[0:32, 0:32]
    layout = []
    for m in fg:
        cy, cx = (int(round(float((g * m).sum() / m.sum()))) for g in (ys, xs))
        layout.append(np.roll(m, (16 - cy, 16 - cx), axis=(0, 1)).ravel())
    assert _nearest_centroid_accuracy(np.array(layout, dtype=float), dept) > 0.85


def test_each_department_has_its_own_shape():
    leaf = np.arange(8)
    px = render_pixels(leaf, np.arange(8), seed=0, size=32)
    fg = np.abs(px.astype(float) - 128).max(-1) > 40
    areas = fg.reshape(8, -1).mean(1)
    assert len(SHAPES) == 8 and (areas > 0.05).all() and (areas < 0.8).all()
    masks = fg.reshape(8, -1)
    for a in range(8):  # pairwise different masks (Jaccard < 0.8)
        for b in range(a + 1, 8):
            inter, union = (masks[a] & masks[b]).sum(), (masks[a] | masks[b]).sum()
            assert inter / union < 0.8, (SHAPES[a], SHAPES[b])


def test_bad_image_size_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="image_size"):
        load_shop_sim(**SMALL, render_images=True, image_size=4, image_dir=str(tmp_path))


def test_image_refs_roots_and_empty_values(tmp_path):
    items = pd.DataFrame(
        {"img": ["a.png", "", None, "/abs/b.png", "https://x.org/c.jpg", float("nan")]}
    )
    refs = im.image_refs(items, "img", root=str(tmp_path))
    assert refs == [str(tmp_path / "a.png"), "", "", "/abs/b.png", "https://x.org/c.jpg", ""]
    assert im.image_refs(items, "other") == [""] * 6
    assert im.image_refs(items, None) == [""] * 6
    with pytest.raises(ConfigError, match="data.images: unknown key"):
        im.check_images_cfg({"colum": "img"})


def _png(path: Path, colour=(10, 200, 30)) -> Path:
    Image.new("RGB", (12, 9), colour).save(path)
    return path


def test_urls_are_fetched_once_through_the_download_code(tmp_path, monkeypatch):
    src = _png(tmp_path / "src.png")
    calls = []
    from divrec.data.sources import download

    orig = download.download_file

    def counting(url, dest, **kw):
        calls.append(url)
        return orig(url, dest, **kw)

    monkeypatch.setattr(download, "download_file", counting)
    url = src.resolve().as_uri()
    cache = tmp_path / "cache"
    refs = [url, url, "ftp://example.org/x.png", str(tmp_path / "missing.png"), ""]
    files, missing = im.local_image_files(refs, cache)
    assert files[0] == files[1] and files[0].parent == cache / "images"
    assert files[0].read_bytes() == src.read_bytes()
    assert files[2:] == [None, None, None]
    # the second reference reuses the cached file; ftp is refused by download_file's checks
    assert calls == [url, "ftp://example.org/x.png"]
    assert missing == Counter(
        {"download failed": 1, "file missing or too large": 1, "no image given": 1}
    )
    im.local_image_files([url], cache)
    assert len(calls) == 2  # a later run: no download


def test_decode_refuses_non_images_and_bombs(tmp_path, monkeypatch):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="unreadable image"):
        im.decode_image(bad)
    ok = _png(tmp_path / "ok.png")
    assert im.decode_image(ok).size == (12, 9) and im.decode_image(ok).mode == "RGB"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 108 pixels: over the limit
    with pytest.raises(DataError, match="too large|unreadable"):
        im.decode_image(ok)


def test_missing_images_warn_once_with_the_count(caplog):
    with caplog.at_level(logging.WARNING, logger="divrec.data.images"):
        im.warn_missing(Counter({"no image given": 2, "unreadable": 1}), 10, "image", ["image"])
        im.warn_missing(Counter(), 10, "image", ["image"])
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["3 of 10 items have no image (no image given: 2, unreadable: 1)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="divrec.data.images"):
        im.warn_missing(Counter({"no image given": 10}), 10, "imge", ["item_id", "image"])
    assert len(caplog.records) == 1 and "'imge' is not an item column" in caplog.text
