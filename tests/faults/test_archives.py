"""Downloads and archives served from a local HTTP server: the sha256 pin is checked every
time (also when the extracted folder is cached), hostile members (``..``, absolute paths,
symlinks) and corrupt or truncated archives are refused in one line with nothing extracted."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest

from divrec.data.sources.download import DIGEST_FILE, fetch_zip_folder
from divrec.errors import DataError
from tests.faults.conftest import one_line

FILES = {"ds/ratings.csv": "user_id,item_id\n1,2\n", "ds/items.csv": "item_id,title\n2,x\n"}


def _zip(members: dict[str, str], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _serve(root: Path, data: bytes) -> str:
    (root / "ds.zip").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str, cache: Path, pin: str | None = None) -> Path:
    return fetch_zip_folder(
        f"{url}/ds.zip", cache, "ds", ["ratings.csv", "items.csv"], expected_sha256=pin
    )


def test_pin_is_checked_when_the_folder_is_cached(http_dir, tmp_path):
    root, url = http_dir
    good = _serve(root, _zip(FILES))
    cache = tmp_path / "cache"
    target = _fetch(url, cache, good)
    assert (target / "ratings.csv").read_text() == FILES["ds/ratings.csv"]
    assert (target / DIGEST_FILE).read_text().split()[0] == good
    assert _fetch(url, cache, good) == target  # the right pin: cache reused
    with pytest.raises(DataError) as info:
        _fetch(url, cache, "0" * 64)  # a wrong pin: rejected although the folder is cached
    one_line(info.value, "sha256 mismatch")
    assert (target / "ratings.csv").is_file()  # the cached folder itself is untouched


def test_pin_is_checked_against_a_changed_upstream_archive(http_dir, tmp_path):
    root, url = http_dir
    _serve(root, _zip(FILES))
    cache = tmp_path / "cache"
    _fetch(url, cache)  # unpinned first fetch
    new = _serve(root, _zip({**FILES, "ds/items.csv": "item_id,title\n2,new\n"}))
    target = _fetch(url, cache, new)  # pinned to the new release: fetched and re-extracted
    assert "new" in (target / "items.csv").read_text()
    assert (target / DIGEST_FILE).read_text().split()[0] == new


def test_unpinned_cached_folder_needs_no_network(http_dir, tmp_path):
    root, url = http_dir
    _serve(root, _zip(FILES))
    cache = tmp_path / "cache"
    target = _fetch(url, cache)
    (root / "ds.zip").unlink()  # server has nothing now
    assert _fetch(url, cache) == target


@pytest.mark.parametrize(
    "members,symlink",
    [
        ({**FILES, "ds/../../evil.txt": "x"}, None),
        ({**FILES, "/tmp/evil-abs.txt": "x"}, None),
        ({**FILES, "ds/..\\..\\evil.txt": "x"}, None),
        (FILES, "ds/link"),
    ],
    ids=["dotdot", "absolute", "backslash-dotdot", "symlink"],
)
def test_hostile_archive_is_refused_and_nothing_extracted(http_dir, tmp_path, members, symlink):
    root, url = http_dir
    _serve(root, _zip(members, symlink))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        _fetch(url, cache)
    one_line(info.value, "refusing")
    assert not (cache / "ds").exists()
    assert not (tmp_path / "evil.txt").exists() and not (cache.parent / "evil.txt").exists()


@pytest.mark.parametrize(
    "data", [b"", b"not a zip at all", _zip(FILES)[:-40]], ids=["empty", "text", "truncated"]
)
def test_corrupt_archive_is_one_line(http_dir, tmp_path, data):
    root, url = http_dir
    _serve(root, data)
    with pytest.raises(DataError) as info:
        _fetch(url, tmp_path / "cache")
    one_line(info.value)
    assert not (tmp_path / "cache" / "ds").exists()
    assert not (tmp_path / "cache" / "ds.zip").exists()  # a bad download is not kept


def test_archive_missing_a_required_file_is_one_line(http_dir, tmp_path):
    root, url = http_dir
    _serve(root, _zip({"ds/ratings.csv": "a\n"}))
    with pytest.raises(DataError) as info:
        _fetch(url, tmp_path / "cache")
    one_line(info.value, "items.csv")


def test_http_404_is_one_line(http_dir, tmp_path):
    _, url = http_dir
    with pytest.raises(DataError) as info:
        _fetch(url, tmp_path / "cache")
    one_line(info.value, "HTTP 404")
