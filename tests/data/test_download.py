"""Downloading MovieLens from a local HTTP server: fetch once, verify, refuse bad archives."""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from divrec.data.sources.download import download_file, safe_extract_zip, verify_zip
from divrec.data.sources.movielens import load_movielens
from divrec.errors import DataError

RATINGS = "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n2,2,3.5,964982704\r\n"
MOVIES = (
    "movieId,title,genres\r\n1,Toy Story (1995),Animation|Comedy\r\n"
    '2,"Jumanji, The (1995)",Adventure\r\n'
)


def make_zip(members: dict[str, str | bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """Zip bytes with the given member names (written verbatim, even unsafe ones)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, link_target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, link_target)
    return buf.getvalue()


def release_zip(**extra: str) -> bytes:
    return make_zip(
        {"ml-latest-small/ratings.csv": RATINGS, "ml-latest-small/movies.csv": MOVIES, **extra}
    )


class Server:
    """Serves ``files`` (url path -> bytes) on 127.0.0.1 and counts GET requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.announce: dict[str, int] = {}  # path -> Content-Length to claim (truncation)
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                length = outer.announce.get(self.path, len(body))
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _load(server: Server, cache: Path, **kw):
    return load_movielens(root=None, download=True, base_url=server.url, cache_dir=str(cache), **kw)


def test_download_extract_load_then_reuse(server, tmp_path):
    body = release_zip()
    server.files["/ml-latest-small.zip"] = body
    cache = tmp_path / "cache"
    ds = _load(server, cache)
    assert len(ds.interactions) == 2
    assert ds.items.set_index("item_id").loc["2", "title"] == "Jumanji, The (1995)"
    assert server.hits == {"/ml-latest-small.zip": 1}
    assert (cache / "ml-latest-small" / "ratings.csv").read_bytes() == RATINGS.encode()
    recorded = (cache / "ml-latest-small.zip.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(body).hexdigest()
    # Second call: served from the extracted cache, no request.
    ds2 = _load(server, cache)
    assert len(ds2.interactions) == 2 and server.hits["/ml-latest-small.zip"] == 1
    # Extracted folder gone but verified zip kept: re-extract without downloading.
    shutil.rmtree(cache / "ml-latest-small")
    assert len(_load(server, cache).interactions) == 2
    assert server.hits["/ml-latest-small.zip"] == 1


def test_damaged_cached_zip_is_fetched_again(server, tmp_path):
    server.files["/ml-latest-small.zip"] = release_zip()
    cache = tmp_path / "cache"
    _load(server, cache)
    shutil.rmtree(cache / "ml-latest-small")
    (cache / "ml-latest-small.zip").write_bytes(b"bit rot")
    assert len(_load(server, cache).interactions) == 2
    assert server.hits["/ml-latest-small.zip"] == 2


def test_default_cache_dir_from_env(server, tmp_path, monkeypatch):
    server.files["/ml-latest-small.zip"] = release_zip()
    monkeypatch.setenv("DIVREC_CACHE_DIR", str(tmp_path / "envcache"))
    ds = load_movielens(base_url=server.url)
    assert len(ds.interactions) == 2
    assert (tmp_path / "envcache" / "movielens" / "ml-latest-small" / "movies.csv").is_file()


def test_root_without_release_falls_back_to_download(server, tmp_path):
    server.files["/ml-latest-small.zip"] = release_zip()
    ds = load_movielens(
        root=str(tmp_path / "empty"), base_url=server.url, cache_dir=str(tmp_path / "c")
    )
    assert len(ds.interactions) == 2 and server.hits["/ml-latest-small.zip"] == 1


def test_expected_sha256_match_and_mismatch(server, tmp_path):
    body = release_zip()
    server.files["/ml-latest-small.zip"] = body
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="sha256 mismatch"):
        _load(server, cache, expected_sha256="0" * 64)
    assert not (cache / "ml-latest-small.zip").exists()
    assert not (cache / "ml-latest-small").exists()
    ds = _load(server, cache, expected_sha256=hashlib.sha256(body).hexdigest())
    assert len(ds.interactions) == 2


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (b"<html>not a zip</html>", "not a zip archive"),
        (release_zip()[:-40], "not a zip archive|corrupt"),
        (make_zip({"ml-latest-small/ratings.csv": RATINGS}), "lacks expected member"),
    ],
)
def test_corrupt_or_incomplete_zip_rejected(server, tmp_path, body, pattern):
    server.files["/ml-latest-small.zip"] = body
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=pattern):
        _load(server, cache)
    assert not (cache / "ml-latest-small.zip").exists()
    assert not (cache / "ml-latest-small").exists()


def test_crc_corruption_detected(tmp_path):
    body = bytearray(make_zip({"a/x.txt": b"hello world " * 50}))
    # Flip one byte inside the compressed data of the first (only) member.
    header_len = 30 + len("a/x.txt")
    body[header_len + 5] ^= 0xFF
    path = tmp_path / "bad.zip"
    path.write_bytes(bytes(body))
    with pytest.raises(DataError, match="corrupt"):
        verify_zip(path)


def test_path_traversal_refused_nothing_written_outside(server, tmp_path):
    server.files["/ml-latest-small.zip"] = release_zip(**{"ml-latest-small/../../evil.txt": "x"})
    cache = tmp_path / "a" / "cache"
    with pytest.raises(DataError, match="unsafe member"):
        _load(server, cache)
    written = sorted(p.name for p in tmp_path.rglob("*"))
    assert "evil.txt" not in written
    assert not (cache / "ml-latest-small").exists()


@pytest.mark.parametrize(
    ("members", "symlinks", "pattern"),
    [
        ({"../evil.txt": "x"}, None, "unsafe member '../evil.txt'"),
        ({"/abs/evil.txt": "x"}, None, "unsafe member"),
        ({"C:/evil.txt": "x"}, None, "unsafe member"),
        ({"ok.txt": "x"}, {"link": "/etc/passwd"}, "symlink member 'link'"),
    ],
)
def test_safe_extract_refuses_unsafe_members(tmp_path, members, symlinks, pattern):
    path = tmp_path / "x.zip"
    path.write_bytes(make_zip({"good.txt": "fine", **members}, symlinks))
    target = tmp_path / "out" / "target"
    with pytest.raises(DataError, match=pattern):
        safe_extract_zip(path, target)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs/evil.txt").exists()


def test_safe_extract_subdir_and_replace(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(make_zip({"top/a.txt": "A", "top/sub/b.txt": "B", "other.txt": "O"}))
    target = tmp_path / "t"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    safe_extract_zip(path, target, subdir="top")
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["a.txt", "sub/b.txt"]
    assert (target / "sub" / "b.txt").read_text() == "B"


def test_download_file_errors(server, tmp_path):
    server.files["/f.bin"] = b"0123456789"
    dest = tmp_path / "f.bin"
    digest = download_file(f"{server.url}/f.bin", dest, expected_size=10)
    assert (
        digest == hashlib.sha256(b"0123456789").hexdigest() and dest.read_bytes() == b"0123456789"
    )
    with pytest.raises(DataError, match="size mismatch"):
        download_file(f"{server.url}/f.bin", tmp_path / "g.bin", expected_size=11)
    server.files["/short.bin"] = b"01234"
    server.announce["/short.bin"] = 50
    with pytest.raises(DataError, match="download failed|truncated"):
        download_file(f"{server.url}/short.bin", tmp_path / "s.bin")
    with pytest.raises(DataError, match="HTTP 404"):
        download_file(f"{server.url}/missing.zip", tmp_path / "h.bin")
    with pytest.raises(DataError, match="unsupported URL scheme"):
        download_file("ftp://127.0.0.1/x", tmp_path / "i.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
