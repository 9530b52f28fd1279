"""Atomic writes leave files and folders with the modes a plain open()/mkdir would give."""

import os
import stat

from divrec.utils.io import atomic_dir, atomic_path, write_json


def test_atomic_results_get_umask_modes_not_private_temp_modes(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "cache") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o755
    assert (tmp_path / "m.json").read_text().strip().startswith("{")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind
