"""divrec-recommend's inputs: which checkpoint of a run folder, hostile or damaged checkpoint
files, a checkpoint of another model, and binary or malformed ``--catalogue`` files. Each is
one DataError line (the CLI prints it and exits 2)."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
import torch

from divrec.errors import DataError
from divrec.serve.loading import check_hparams, load_checkpoint, load_weights, locate, read_items
from tests.faults.conftest import one_line
from tests.faults.test_checkpoints import _evil_checkpoint


def _touch(path: Path, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def test_run_folder_gives_its_best_checkpoint_not_last_v1(tmp_path):
    ck = tmp_path / "checkpoints"
    best = _touch(ck / "epoch002.ckpt", age=30)
    for name in ("epoch005.ckpt", "last.ckpt", "last-v1.ckpt"):
        _touch(ck / name)
    (tmp_path / "metrics.json").write_text(
        json.dumps({"meta": {"status": "ok", "best_checkpoint": "/elsewhere/epoch002.ckpt"}})
    )
    assert locate(tmp_path) == (tmp_path, best)  # by name: a moved run folder still works


def test_run_folder_without_metrics_gives_newest_epoch_file(tmp_path):
    ck = tmp_path / "checkpoints"
    _touch(ck / "epoch001.ckpt", age=60)
    newest = _touch(ck / "epoch003.ckpt", age=10)
    _touch(ck / "last-v1.ckpt")
    assert locate(tmp_path)[1] == newest


def test_pickle_with_code_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(DataError) as info:
        load_checkpoint(tmp_path / "evil.ckpt")
    text = one_line(info.value, "refusing to unpickle")
    assert "weights_only=False" not in text  # never advise the unsafe switch
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint", b"PK\x03\x04\x00\x00"]
    + [random.Random(seed).randbytes(4096) for seed in range(24)],  # seeded: reproducible
    ids=["empty", "text", "zip-header"] + [f"random{seed}" for seed in range(24)],
)
def test_damaged_checkpoint_file_is_one_line(tmp_path, content):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_checkpoint(bad)
    one_line(info.value, str(bad))


def test_checkpoint_without_state_dict_is_one_line(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "w.ckpt")
    with pytest.raises(DataError, match="no state_dict"):
        load_checkpoint(tmp_path / "w.ckpt")


def test_other_model_settings_are_refused(tmp_path):
    saved = {"model": {"user_tower": "history", "head_hidden": 32, "pretrained": "/a"}}
    built = {"model": {"user_tower": "text", "head_hidden": 32, "pretrained": "/b"}}
    with pytest.raises(DataError) as info:
        check_hparams(tmp_path / "x.ckpt", saved, built, tmp_path / "config.yaml")
    text = one_line(info.value, "model.user_tower: 'history' vs 'text'")
    assert "pretrained" not in text  # a moved model folder is not a different model
    check_hparams(
        tmp_path / "x.ckpt",
        saved,
        {"model": {**saved["model"], "pretrained": "/b"}},
        tmp_path / "config.yaml",
    )


def test_shape_mismatch_is_one_line(tmp_path):
    module = torch.nn.Linear(4, 3)
    state = torch.nn.Linear(5, 3).state_dict()
    with pytest.raises(DataError) as info:
        load_weights(module, state, tmp_path / "x.ckpt", tmp_path / "config.yaml")
    one_line(info.value, "tensor shapes do not match", "size mismatch")


@pytest.mark.parametrize(
    "name,content",
    [
        ("items.csv", b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary"),
        ("items.csv", b""),
        ("items.csv", b'item_id,title\n"unterminated,quote\n'),
        ("items.jsonl", b'{"item_id": 1, "title": \n'),
        ("items.json", b"[1, 2"),
        ("items.parquet", b"PAR1 not really parquet"),
    ],
    ids=["binary-csv", "empty-csv", "bad-quote-csv", "bad-jsonl", "bad-json", "bad-parquet"],
)
def test_malformed_catalogue_is_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_items(path)
    one_line(info.value, str(path))


def test_cli_prints_one_line_for_a_folder_without_checkpoints(tmp_path, capsys):
    from divrec.serve.recommend import main

    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "items.csv"
    path.write_bytes(b"\xff\xfe\x00\x81 binary")
    # the checkpoint is checked first: a folder without one is one line, exit 2
    assert main(["--checkpoint", str(tmp_path), "--history", "1", "--catalogue", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err, err


@pytest.mark.slow
def test_checkpoint_of_another_tower_in_a_run_folder_is_refused(compose, tmp_path):
    """A history-tower checkpoint dropped into a text-tower run: one line, not other lists."""
    import shutil

    from omegaconf import OmegaConf

    from divrec.run.train import train
    from divrec.serve.recommend import load_model

    runs = {}
    for tower in ("text", "history"):
        out = tmp_path / tower
        cfg = compose(f"model.user_tower={tower}", f"paths.output_dir={out}", "eval.save_topk=20")
        train(cfg)
        (out / ".hydra").mkdir()
        OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
        runs[tower] = out
    foreign = runs["text"] / "checkpoints" / "foreign.ckpt"
    shutil.copy(runs["history"] / "checkpoints" / "epoch000.ckpt", foreign)
    with pytest.raises(DataError) as info:
        load_model(foreign)
    one_line(info.value, "model.user_tower: 'history' vs 'text'")
    assert load_model(runs["text"]).checkpoint.name == "epoch000.ckpt"  # its own one loads
