"""Download, verify and safely extract dataset archives.

Downloads stream into a temporary file next to the destination and are renamed into place
only after the size and checksum checks pass, so an interrupted or corrupt download never
carries the final name. Extraction refuses the whole archive if any member would land
outside the target (absolute path, ``..``, symlink) before anything is written, and builds
the target folder under a temporary name (``atomic_dir``).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from divrec.errors import DataError
from divrec.utils.io import atomic_dir, atomic_path, file_sha256

log = logging.getLogger(__name__)

_SCHEMES = ("http", "https", "file")
DIGEST_FILE = ".archive.sha256"  # inside an extracted folder: sha256 of the zip it came from
_CHUNK = 1 << 20


def download_file(
    url: str,
    dest: str | os.PathLike,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    timeout: float = 60,
) -> str:
    """Stream ``url`` to ``dest`` atomically; return the sha256 hex digest of the bytes.

    Raises DataError on HTTP/network failure, truncated transfer (Content-Length), size or
    checksum mismatch; ``dest`` is then left untouched.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise DataError(f"{url}: unsupported URL scheme {scheme!r}; use one of {_SCHEMES}")
    dest = Path(dest)
    request = urllib.request.Request(url, headers={"User-Agent": "divrec"})
    log.info("downloading %s -> %s", url, dest)
    with atomic_path(dest) as tmp:
        digest, n = hashlib.sha256(), 0
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp, open(tmp, "wb") as f:
                announced = resp.headers.get("Content-Length")
                while block := resp.read(_CHUNK):
                    f.write(block)
                    digest.update(block)
                    n += len(block)
        except urllib.error.HTTPError as exc:
            raise DataError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"{url}: download failed ({reason})") from None
        if announced is not None and announced.isdigit() and int(announced) != n:
            raise DataError(f"{url}: truncated download ({n} of {announced} bytes)")
        if expected_size is not None and n != expected_size:
            raise DataError(f"{url}: size mismatch (got {n} bytes, expected {expected_size})")
        hexdigest = digest.hexdigest()
        if expected_sha256 is not None and hexdigest != expected_sha256.strip().lower():
            raise DataError(
                f"{url}: sha256 mismatch (got {hexdigest}, expected {expected_sha256.strip()})"
            )
    log.info("downloaded %s (%d bytes, sha256 %s)", dest.name, n, hexdigest)
    return hexdigest


def verify_zip(path: str | os.PathLike, required: Iterable[str] = ()) -> None:
    """Raise DataError unless ``path`` is a readable zip whose CRCs match and which holds
    every member named in ``required`` (archive paths, e.g. ``ml-latest-small/ratings.csv``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a zip archive (corrupt or incomplete download)")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = set(zf.namelist())
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: corrupt zip archive ({exc})") from None
    if bad is not None:
        raise DataError(f"{path}: corrupt zip archive (CRC check failed for {bad})")
    missing = [m for m in required if m not in names]
    if missing:
        raise DataError(f"{path}: zip archive lacks expected member(s) {missing}")


def _member_path(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
    """The member's relative path, or DataError if it could escape the target folder."""
    name = info.filename.replace("\\", "/")
    rel = PurePosixPath(name)
    mode = info.external_attr >> 16
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in rel.parts:
        raise DataError(f"{archive}: refusing unsafe member {info.filename!r} (escapes target)")
    if stat.S_ISLNK(mode):
        raise DataError(f"{archive}: refusing symlink member {info.filename!r}")
    return rel


def safe_extract_zip(
    path: str | os.PathLike,
    target: str | os.PathLike,
    subdir: str | None = None,
    digest: str | None = None,
) -> Path:
    """Extract ``path`` into the folder ``target`` (replacing it), refusing unsafe members.

    With ``subdir`` only members under ``subdir/`` are extracted, with that prefix removed
    (``ml-1m/ratings.dat`` -> ``target/ratings.dat``). All members are checked first; any
    absolute path, ``..`` component or symlink rejects the whole archive with DataError and
    nothing is written. ``digest`` (the archive's sha256) is kept in ``target/{DIGEST_FILE}``,
    written with the folder. Returns ``target``.
    """
    path, target = Path(path), Path(target)
    prefix = PurePosixPath(subdir.strip("/")) if subdir else None
    try:
        with zipfile.ZipFile(path) as zf:
            plan = []
            for info in zf.infolist():
                rel = _member_path(info, path)
                if prefix is not None:
                    if rel == prefix or not rel.is_relative_to(prefix):
                        continue
                    rel = rel.relative_to(prefix)
                if rel.parts:
                    plan.append((info, rel))
            if not plan:
                raise DataError(f"{path}: nothing to extract under {subdir!r}")
            with atomic_dir(target, replace=True) as tmp:
                root = tmp.resolve()
                for info, rel in plan:
                    out = (tmp / rel).resolve()
                    if out != root and root not in out.parents:
                        raise DataError(f"{path}: refusing unsafe member {info.filename!r}")
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                if digest:
                    (tmp / DIGEST_FILE).write_text(f"{digest}  {path.name}\n")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{path}: corrupt zip archive ({exc})") from None
    return target


def _recorded_sha256(sha_path: Path) -> str | None:
    try:
        return sha_path.read_text().split()[0].lower()
    except (OSError, IndexError):
        return None


def fetch_zip_folder(
    url: str,
    cache_dir: str | os.PathLike,
    name: str,
    required: Iterable[str] = (),
    expected_sha256: str | None = None,
    timeout: float = 60,
) -> Path:
    """Return ``cache_dir/name``: the folder ``name/`` of the zip at ``url``, fetched once.

    Layout: ``<cache_dir>/<name>.zip``, ``<name>.zip.sha256`` (digest of what was
    downloaded, checked on reuse) and the extracted ``<cache_dir>/<name>/`` with the digest of
    its archive in ``DIGEST_FILE``. A folder that already holds every ``required`` file is
    used as is (no network), but with ``expected_sha256`` only when its recorded digest is
    the pinned one; otherwise the archive is checked (or fetched) again against the pin. A
    bad cached zip is fetched again; a bad downloaded zip is deleted and reported with
    DataError.
    """
    cache_dir = Path(cache_dir).expanduser()
    required = list(required)
    target = cache_dir / name
    zip_path = cache_dir / f"{name}.zip"
    sha_path = zip_path.with_name(zip_path.name + ".sha256")
    pin = expected_sha256.strip().lower() if expected_sha256 else None
    if target.is_dir() and all((target / r).is_file() for r in required):
        recorded = _recorded_sha256(target / DIGEST_FILE) or _recorded_sha256(sha_path)
        if pin is None or recorded == pin:
            return target
        log.warning(
            "%s: extracted from an archive with sha256 %s, not the pinned %s; checking again",
            target,
            recorded or "(not recorded)",
            pin,
        )
    members = [f"{name}/{r}" for r in required]
    if zip_path.is_file():
        want = pin or _recorded_sha256(sha_path) or ""
        try:
            if want and file_sha256(zip_path) != want:
                raise DataError(f"{zip_path}: sha256 differs from the recorded one")
            verify_zip(zip_path, members)
        except DataError as exc:
            log.warning("%s; downloading again", exc)
            zip_path.unlink()
    if not zip_path.is_file():
        digest = download_file(url, zip_path, expected_sha256=expected_sha256, timeout=timeout)
        try:
            verify_zip(zip_path, members)
        except DataError:
            zip_path.unlink(missing_ok=True)
            raise
        with atomic_path(sha_path) as tmp:
            tmp.write_text(f"{digest}  {zip_path.name}\n")
    try:
        digest = pin or _recorded_sha256(sha_path) or file_sha256(zip_path)
        safe_extract_zip(zip_path, target, subdir=name, digest=digest)
    except DataError:
        zip_path.unlink(missing_ok=True)
        raise
    missing = [r for r in required if not (target / r).is_file()]
    if missing:
        raise DataError(f"{target}: extracted archive lacks {missing}")
    return target
