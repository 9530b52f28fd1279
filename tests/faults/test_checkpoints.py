"""Hostile and damaged checkpoints: nothing is unpickled from the network, a run only evaluates
its own weights or the file the user named, half-written files never carry a .ckpt name and
``ckpt_path=last`` resumes the newest intact one."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from divrec.errors import ConfigError, DataError
from divrec.run.checkpoints import AtomicCheckpoint, AtomicCheckpointIO, damaged, newest_intact
from divrec.run.train import run, train
from tests.faults.conftest import one_line


class _Evil:
    """Unpickling this creates the folder ``marker``: stands in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _evil_checkpoint(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0", "x": _Evil(marker)}, path)


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_remote_checkpoint_is_refused_and_never_unpickled(
    compose, tmp_path, http_dir, monkeypatch, scheme
):
    root, url = http_dir
    marker = tmp_path / "pwned"
    _evil_checkpoint(root / "x.ckpt", marker)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # hub downloads land here
    monkeypatch.delenv("DIVREC_TRACEBACK", raising=False)
    where = f"{url}/x.ckpt" if scheme == "http" else f"file://{root / 'x.ckpt'}"
    with pytest.raises(SystemExit) as info:
        run(compose(f"ckpt_path={where}"))
    one_line(info.value.code, "remote checkpoints are refused", where)
    assert not marker.exists(), "the checkpoint's pickle ran code"
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


@pytest.mark.slow
def test_local_malicious_checkpoint_is_not_executed_with_train_false(compose, tmp_path):
    marker = tmp_path / "pwned"
    _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(Exception) as info:  # torch refuses the global: weights_only=True
        train(compose("train=false", f"ckpt_path={tmp_path / 'evil.ckpt'}"))
    assert "weights_only" in str(info.value) or "Unpickl" in type(info.value).__name__
    assert not marker.exists()


def test_missing_checkpoint_file_is_one_line_before_data_loads(compose, tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        train(compose(f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    assert not (tmp_path / "run" / "split").exists()


def test_best_path_from_another_run_is_not_kept(tmp_path):
    cb = AtomicCheckpoint(dirpath=str(tmp_path / "mine" / "checkpoints"))
    other = tmp_path / "other" / "checkpoints" / "epoch000.ckpt"
    cb.load_state_dict({"dirpath": str(other.parent), "best_model_path": str(other)})
    assert cb.best_model_path == ""
    own = tmp_path / "mine" / "checkpoints" / "epoch003.ckpt"
    cb.load_state_dict(
        {"dirpath": cb.dirpath, "best_model_path": str(own), "best_model_score": 0.5}
    )
    assert cb.best_model_path == str(own)


@pytest.mark.slow
def test_resuming_a_finished_foreign_checkpoint_tests_its_weights_not_its_best_path(
    compose, tmp_path
):
    """Run A finished; run B names A's last.ckpt (nothing left to train): B evaluates the
    named weights and records no best checkpoint from A's folder."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(compose(f"paths.output_dir={a}"))
    train(compose(f"paths.output_dir={b}", f"ckpt_path={a / 'checkpoints' / 'last.ckpt'}"))
    meta_b = json.loads((b / "metrics.json").read_text())["meta"]
    assert str(a) not in str(meta_b["best_checkpoint"]), meta_b["best_checkpoint"]
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    assert mb["test/ndcg@10"] == pytest.approx(ma["test/ndcg@10"], abs=1e-6)


# ------------------------------------------------------------------ atomic writes, resume
def _ckpt(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.full((64, 64), value)}}, path)
    return path


@pytest.mark.parametrize(
    "damage",
    ["truncated-half", "truncated-tail", "zero-bytes", "garbage", "not-a-zip-text"],
)
def test_last_resumes_the_newest_intact_checkpoint(tmp_path, caplog, damage):
    folder = tmp_path / "checkpoints"
    good = _ckpt(folder / "epoch000.ckpt")
    last = _ckpt(folder / "last.ckpt", 2.0)
    data = last.read_bytes()
    last.write_bytes(
        {
            "truncated-half": data[: len(data) // 2],
            "truncated-tail": data[:-30],
            "zero-bytes": b"",
            "garbage": os.urandom(len(data)),
            "not-a-zip-text": b"hello\n",
        }[damage]
    )
    os.utime(last, (good.stat().st_mtime + 5, good.stat().st_mtime + 5))  # last is newest
    assert damaged(last) and damaged(good) is None
    with caplog.at_level("INFO"):
        assert newest_intact(folder) == str(good)
    assert "resuming from" in caplog.text and "epoch000.ckpt" in caplog.text
    assert "last.ckpt is damaged" in caplog.text


def test_last_with_every_checkpoint_damaged_is_one_line(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError) as info:
        newest_intact(folder)
    one_line(info.value, "no intact checkpoint", "last.ckpt")


def test_checkpoint_write_on_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    before = target.read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04" + b"\x00" * 100)  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DataError) as info:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    one_line(info.value, str(target), "no space left")
    assert target.read_bytes() == before  # the previous intact file is kept
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_checkpoint_write_does_not_use_tmpdir(tmp_path, monkeypatch):
    """A tiny/unwritable $TMPDIR must not matter: the temporary file is beside the target."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing-tmpdir"))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    target = tmp_path / "checkpoints" / "epoch000.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    assert damaged(target) is None


@pytest.mark.slow
def test_run_resumes_past_a_truncated_last_ckpt(compose, tmp_path, caplog):
    """A 1-epoch run, its last.ckpt cut in half: ckpt_path=last resumes epoch000.ckpt."""
    out = tmp_path / "run"
    train(compose("trainer.max_epochs=1"))
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["epoch000.ckpt", "last.ckpt"], ckpts  # no temporary file left
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with caplog.at_level("INFO"):
        train(compose("trainer.max_epochs=1", "ckpt_path=last"))
    assert "resuming from" in caplog.text and "epoch000.ckpt" in caplog.text
    assert json.loads((out / "metrics.json").read_text())["meta"]["status"] == "ok"


def test_trainer_checkpoints_go_through_the_atomic_writer(tmp_path):
    import lightning.pytorch as pl

    cb = AtomicCheckpoint(dirpath=str(tmp_path / "checkpoints"))
    trainer = pl.Trainer(accelerator="cpu", callbacks=[cb], logger=False, enable_progress_bar=False)
    cb.setup(trainer, None, "fit")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
