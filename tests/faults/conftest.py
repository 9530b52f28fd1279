"""Fixtures of the fault suite: a local HTTP server and the one-line-error check."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def http_dir(tmp_path) -> Iterator[tuple[Path, str]]:
    """(folder, base URL): files put in the folder are served on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def one_line(message: object, *needles: str) -> str:
    """Assert ``message`` is one line without a traceback and contains every needle."""
    text = str(message)
    assert "\n" not in text.strip(), text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text
