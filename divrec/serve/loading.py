"""What ``load_model`` reads, checked: which checkpoint of a run, its tensors, its saved
hyper-parameters against the run's config, and an extra ``--catalogue`` file. Every problem
is one DataError line naming the file."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from divrec.errors import DataError

# model keys that may differ between the checkpoint and the config of the same run
_MOVABLE = ("pretrained",)


def locate(path: str | Path) -> tuple[Path, Path]:
    """(run folder, checkpoint file) from a checkpoint path or a run folder.

    A run folder's checkpoint is the best one its ``metrics.json`` names
    (``meta.best_checkpoint``, looked up by file name in ``checkpoints/``, so a moved folder
    still works); without it, the newest non-``last`` checkpoint, else ``last.ckpt``.
    """
    path = Path(path)
    if path.is_dir():
        run = path
        ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
        if not ckpts:
            raise DataError(f"{run}: no checkpoints/*.ckpt in this run folder")
        best = _best_named(run)
        if best is not None:
            return run, best
        epochs = [c for c in ckpts if not c.name.startswith("last")]
        return run, max(epochs or ckpts, key=lambda c: c.stat().st_mtime_ns)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint or run folder")
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run, path


def run_config(run: Path) -> Any:
    """The run folder's saved ``.hydra/config.yaml`` (an OmegaConf DictConfig) with
    ``paths.output_dir`` pointed at ``run`` (it was ``${hydra:runtime.output_dir}``)."""
    from omegaconf import OmegaConf

    cfg_file = run / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        raise DataError(f"{cfg_file}: missing; pass a checkpoint inside a divrec run folder")
    cfg = OmegaConf.load(cfg_file)
    cfg.paths.output_dir = str(run)
    return cfg


def _best_named(run: Path) -> Path | None:
    try:
        meta = json.loads((run / "metrics.json").read_text()).get("meta") or {}
        name = Path(str(meta.get("best_checkpoint") or "")).name
    except (OSError, ValueError, AttributeError):
        return None
    best = run / "checkpoints" / name
    return best if name.endswith(".ckpt") and best.is_file() else None


def load_checkpoint(ckpt: Path) -> dict[str, Any]:
    """The checkpoint dict (tensors and plain values only: nothing is unpickled as code)."""
    try:
        with warnings.catch_warnings():  # damaged bytes: "pickle protocol 101" noise
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{ckpt}: holds objects other than tensors and plain values; refusing to unpickle "
            "it (that could run code). Use a checkpoint written by a divrec run"
        ) from None
    except Exception as e:  # arbitrary bytes reach any corner of the unpickler (IndexError, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{ckpt}: not a readable Lightning checkpoint ({reason})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise DataError(f"{ckpt}: not a Lightning checkpoint (no state_dict)")
    return obj


def check_hparams(ckpt: Path, saved: Any, built: Any, cfg_file: Path) -> None:
    """Refuse a checkpoint whose saved ``model`` hyper-parameters differ from the config's."""
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        return  # written without save_hyperparameters: the state-dict check still applies
    a, b = _flat(saved["model"]), _flat(dict(built.get("model") or {}))
    diff = [
        k
        for k in sorted(set(a) | set(b))
        if k.split(".")[0] not in _MOVABLE and a.get(k) != b.get(k)
    ]
    if diff:
        shown = ", ".join(f"model.{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in diff[:3])
        raise DataError(
            f"{ckpt}: trained with other model settings than {cfg_file} ({shown}"
            f"{', ...' if len(diff) > 3 else ''}); pass a checkpoint of this run"
        )


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def load_weights(module: Any, state: dict, ckpt: Path, cfg_file: Path) -> None:
    """``module.load_state_dict(state)``; shape and key mismatches as one line."""
    try:
        res = module.load_state_dict(state, strict=False)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "")
        raise DataError(
            f"{ckpt}: tensor shapes do not match {cfg_file} ({first or 'size mismatch'})"
        ) from None
    missing = [k for k in res.missing_keys if ".backbone." not in k]
    if missing or res.unexpected_keys:
        raise DataError(
            f"{ckpt}: does not match {cfg_file} (missing {missing[:3]}, "
            f"unexpected {list(res.unexpected_keys)[:3]})"
        )


def read_items(path: str | Path) -> pd.DataFrame:
    """An extra catalogue from csv / parquet / json / jsonl; unreadable files as one line."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such catalogue file")
    try:
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
        elif p.suffix in (".jsonl", ".json"):
            df = pd.read_json(p, lines=p.suffix == ".jsonl", dtype=False)
        else:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not a text catalogue (bytes not utf-8 at {e.start})") from None
    except (ValueError, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"{p}: not a readable catalogue ({reason})") from None
    if not isinstance(df, pd.DataFrame) or df.columns.duplicated().any():
        raise DataError(f"{p}: catalogue needs one column per name (item_id, title, ...)")
    return df
