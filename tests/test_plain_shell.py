"""`python train.py` typed in a plain shell: no W&B key, no HF/W&B/tokenizers variables.

divrec itself must log to W&B offline (one line says how to upload), load local weights with
no network and no ``HF_HUB_OFFLINE``, fail in one line for a Hub name, and set
``TOKENIZERS_PARALLELISM`` unless the user did.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from divrec.run import wandb_log
from tests.conftest import ROOT, TINY_OVERRIDES

HINT = "W&B: no API key here"
KEY = "a" * 40  # a well-formed (fake) W&B API key; nothing here contacts the server


def _plain_env(home: Path, **extra: str) -> dict[str, str]:
    """Only PATH and a fresh HOME (no netrc, no `wandb login`), plus ``extra``."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **extra}


@pytest.fixture
def no_wandb_setup(monkeypatch, tmp_path):
    """A W&B-less machine for in-process checks: no key, no netrc, no settings, no mode."""
    for var in (
        "WANDB_API_KEY",
        "WANDB_IDENTITY_TOKEN_FILE",
        "WANDB_BASE_URL",
        "WANDB_MODE",
        "WANDB_SILENT",
        "WANDB_QUIET",
        "NETRC",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.chdir(tmp_path)  # no ./wandb/settings of the repository
    monkeypatch.setattr(wandb_log, "_hinted", set(), raising=False)
    return home


# ------------------------------------------------------------------ W&B: which mode, and why


def test_no_key_means_offline_with_one_hint_line(no_wandb_setup, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=wandb_log.__name__)
    out = tmp_path / "run"
    first = wandb_log.wandb_logger(save_dir=str(out), project="p")
    again = wandb_log.wandb_logger(save_dir=str(out / "mmr=0.5"), project="p")  # a sub-run
    for lg in (first, again):
        assert lg._wandb_init["mode"] == "offline"
        assert lg._wandb_init["settings"] == {"silent": True}  # our line replaces W&B's chatter
        assert "anonymous" not in lg._wandb_init
    hints = [r.getMessage() for r in caplog.records if HINT in r.getMessage()]
    assert len(hints) == 1, hints
    assert f"wandb sync $(find {out} -type d -name 'offline-run-*' -prune)" in hints[0]
    assert "wandb login" in hints[0]


@pytest.mark.parametrize(
    ("env", "mode_arg", "expected"),
    [
        ({"WANDB_MODE": "disabled"}, None, "disabled"),  # the user's WANDB_MODE wins
        ({"WANDB_MODE": "online"}, None, "online"),  # even online without a key
        ({"WANDB_MODE": "offline"}, "disabled", "disabled"),  # logger.wandb.mode wins over env
        ({"WANDB_API_KEY": KEY}, None, None),  # a key: W&B's default (online), untouched
    ],
)
def test_explicit_mode_or_a_key_wins(no_wandb_setup, monkeypatch, caplog, env, mode_arg, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    lg = wandb_log.wandb_logger(mode=mode_arg, save_dir=".", project="p")
    assert lg._wandb_init.get("mode") == expected
    assert "settings" not in lg._wandb_init
    assert not any(HINT in r.getMessage() for r in caplog.records)


def test_wandb_settings_file_counts_for_key_and_mode(no_wandb_setup):
    """`wandb login` may store the key, `wandb disabled` the mode, in W&B's settings file."""
    settings = no_wandb_setup / ".config" / "wandb" / "settings"
    settings.parent.mkdir(parents=True)
    assert not wandb_log.has_credentials()
    settings.write_text(f"[default]\napi_key = {KEY}\n")
    assert wandb_log.has_credentials()
    settings.write_text("[default]\nmode = disabled\n")
    assert not wandb_log.has_credentials()
    assert wandb_log.wandb_logger(save_dir=".")._wandb_init["mode"] == "disabled"


def test_netrc_entry_counts_and_dashboard_reuses_the_check(no_wandb_setup):
    from divrec.reports import dashboard

    assert dashboard.has_credentials is wandb_log.has_credentials  # one check, no copy
    (no_wandb_setup / ".netrc").write_text(f"machine api.wandb.ai login user password {KEY}\n")
    assert wandb_log.has_credentials()


def test_default_logger_runs_offline_without_key(compose, tmp_path, no_wandb_setup, caplog):
    """The shipped logger=wandb (no WANDB_MODE, no key) trains and leaves an offline run."""
    import wandb

    from divrec.run.train import run

    caplog.set_level(logging.WARNING, logger=wandb_log.__name__)
    run(compose("logger=wandb", "trainer.limit_train_batches=2"))
    assert wandb.run is None
    assert len(list((tmp_path / "run" / "wandb").glob("offline-run-*"))) == 1
    assert sum(HINT in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------ HF and tokenizers

_LOAD_SCRIPT = r"""
import json, socket, sys
def _no_network(*a, **k):
    raise OSError("network is off in this test")
socket.getaddrinfo = _no_network
socket.socket.connect = _no_network
import os
from divrec.errors import ConfigError
from divrec.models.pretrained import load_backbone, load_tokenizer
out = {"parallelism": os.environ.get("TOKENIZERS_PARALLELISM")}
for name in sys.argv[1:3]:  # local folder, bundled MiniLM
    out[name] = load_tokenizer(name)("hello")["input_ids"]
    load_backbone(name)
for name in sys.argv[3:]:  # Hub name, missing local folder
    try:
        load_tokenizer(name)
        out[name] = "loaded"
    except ConfigError as e:
        out[name] = str(e)
print("RESULT" + json.dumps(out))
"""


def test_local_weights_load_without_network_or_hf_variables(tiny_model_dir, tmp_path):
    missing = str(tmp_path / "no-such-model")
    res = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, tiny_model_dir, "minilm", "foo/bar", missing],
        cwd=ROOT,
        env=_plain_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.split("RESULT", 1)[1])
    assert out[tiny_model_dir][0] == 101 and out["minilm"][0] == 101  # [CLS] ... [SEP]
    assert out["foo/bar"] == (
        "model.encoder.pretrained: 'foo/bar' is not a local folder and downloads from the "
        "Hugging Face Hub are off (no network); pass a local path (or export HF_HUB_OFFLINE=0 "
        "to download)"
    )
    assert out[missing].startswith(f"model.encoder.pretrained: {missing!r} is not a local folder")
    assert "Repo id" not in out[missing]
    assert out["parallelism"] == "false"  # set by `import divrec`


def test_tokenizers_parallelism_is_set_unless_the_user_did(tmp_path):
    code = "import os, divrec; print(os.environ.get('TOKENIZERS_PARALLELISM'))"
    for env, expected in (({}, "false"), ({"TOKENIZERS_PARALLELISM": "true"}, "true")):
        res = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=_plain_env(tmp_path / "home", **env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == expected


# ------------------------------------------------------------------ the README's commands


def _train_py(tmp_path: Path, tiny_model_dir: str, cache: Path, *args: str):
    """``python train.py ARGS`` with the logger left at its default (W&B), env PATH + HOME."""
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("logger=")]
    cmd = [
        sys.executable,
        "train.py",
        *(a for a in args if a.startswith("-")),
        *tiny,
        "trainer.limit_train_batches=2",
        f"model.encoder.pretrained={tiny_model_dir}",
        f"paths.cache_dir={cache}",
        *(a for a in args if not a.startswith("-")),
    ]
    res = subprocess.run(
        cmd,
        cwd=ROOT,
        env=_plain_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-4000:]
    assert "No API key configured" not in text
    assert text.count(HINT) == 1, text[-4000:]
    assert not (tmp_path / "home" / ".netrc").exists()
    return text


@pytest.mark.slow
def test_train_py_and_a_sweep_in_a_plain_shell(tiny_model_dir, shared_cache, tmp_path):
    """Both README commands, env = PATH + HOME only: each run leaves an offline W&B run."""
    run_dir = tmp_path / "single"
    _train_py(tmp_path, tiny_model_dir, shared_cache, f"hydra.run.dir={run_dir}")
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert json.loads((run_dir / "metrics.json").read_text())["meta"]["status"] == "ok"

    sweep = tmp_path / "sweep"
    _train_py(tmp_path, tiny_model_dir, shared_cache, "-m", "seed=1,2", f"hydra.sweep.dir={sweep}")
    for job in ("0", "1"):
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1, job
        assert json.loads((sweep / job / "metrics.json").read_text())["meta"]["status"] == "ok"
