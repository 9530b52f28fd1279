"""Weights & Biases glue: build the logger (offline when this machine has no W&B key), finish
every run (multirun jobs must never share one) and log a table of sample users with their
history and recommended titles."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.wandb.ai"
_hinted: set[str] = set()  # output roots whose "logging offline" line was printed already


def _settings_files() -> dict[str, str]:
    """W&B's settings files (``$WANDB_CONFIG_DIR/settings`` or ``~/.config/wandb/settings``,
    then ``./wandb/settings``), as ``wandb login`` / ``wandb offline`` write them."""
    try:  # wandb 0.31 internals; a changed layout only loses this source
        from wandb.sdk.lib.settings_file import SettingsFiles

        cfg_dir = os.environ.get("WANDB_CONFIG_DIR")
        system = Path(cfg_dir).expanduser() if cfg_dir else Path.home() / ".config" / "wandb"
        return SettingsFiles(
            global_settings=system / "settings", local_settings=Path("wandb") / "settings"
        ).all()
    except Exception:  # noqa: BLE001 - unreadable files count as absent
        return {}


def has_credentials() -> bool:
    """Whether W&B credentials exist locally (env var, netrc entry or a key in W&B's settings
    files: what ``wandb.init`` would find); makes no network call."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    files = _settings_files()
    if files.get("api_key"):
        return True
    try:  # wandb 0.31 internals: same netrc lookup wandb itself uses
        from wandb.sdk.lib.wbauth import read_netrc_auth

        host = os.environ.get("WANDB_BASE_URL") or files.get("base_url") or DEFAULT_HOST
        return read_netrc_auth(host=host) is not None
    except Exception:  # noqa: BLE001 - unreadable/invalid netrc: treat as absent
        return False


def explicit_mode(mode: str | None = None) -> str | None:
    """The W&B mode the user chose: ``mode`` (``logger.wandb.mode``), else ``$WANDB_MODE``,
    else the ``mode`` of W&B's settings files (``wandb offline``); ``None`` when none."""
    return mode or os.environ.get("WANDB_MODE") or _settings_files().get("mode") or None


def sync_command(root: str) -> str:
    """Shell command uploading every offline W&B run under folder ``root``."""
    return f"wandb sync $(find {shlex.quote(root)} -type d -name 'offline-run-*' -prune)"


def _output_root(save_dir: str) -> str:
    """The folder holding every run of this launch: Hydra's sweep folder in a multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return str(hc.sweep.dir)
    except Exception:  # noqa: BLE001 - not inside a Hydra job
        pass
    return save_dir


def _hint_offline(save_dir: str) -> None:
    """Log, once per output root and process (not again for runs inside it), that runs go
    offline and how to upload them or go online."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    root = _output_root(save_dir)
    if getattr(rank_zero_only, "rank", 0) != 0:  # DDP: the other ranks log nothing
        return
    if any(Path(root).resolve().is_relative_to(Path(r).resolve()) for r in _hinted):
        return
    _hinted.add(root)
    log.warning(
        "W&B: no API key here, so runs are logged offline under %s; to upload them run "
        "`wandb login` then `%s`; to log online, run `wandb login` before training "
        "(WANDB_MODE picks a mode)",
        root,
        sync_command(root),
    )


def wandb_logger(mode: str | None = None, save_dir: str = ".", **kwargs: Any):
    """Lightning's ``WandbLogger`` in the user's :func:`explicit_mode`; without one, online
    when this machine has a W&B key, else offline and quiet with one line of ours instead
    (:func:`_hint_offline`). ``kwargs`` go to ``WandbLogger`` (and on to ``wandb.init``)."""
    from lightning.pytorch.loggers import WandbLogger

    chosen = explicit_mode(mode)
    if chosen is None and not has_credentials():
        chosen = "offline"
        _hint_offline(str(save_dir))
        if "settings" not in kwargs and not {"WANDB_SILENT", "WANDB_QUIET"} & set(os.environ):
            kwargs["settings"] = {"silent": True}
    Path(save_dir).mkdir(parents=True, exist_ok=True)  # W&B warns about a missing folder
    logger = WandbLogger(save_dir=save_dir, **({"mode": chosen} if chosen else {}), **kwargs)
    init = getattr(logger, "_wandb_init", {})
    if init.get("anonymous", "") is None:  # Lightning's default None only draws a W&B warning
        del init["anonymous"]
    return logger


def finish_wandb(exit_code: int = 0) -> None:
    """Close the active W&B run, if any (failed runs with ``exit_code=1``)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def sample_table(recs: pd.DataFrame, dm, n_users: int = 20, k: int = 10) -> pd.DataFrame:
    """One row per sample user: recent history titles and the top-``k`` recommended titles."""
    if recs.empty:
        return pd.DataFrame(columns=["user_id", "history", "recommended"])
    cat = dm.catalogue
    users = sorted(recs["user_id"].unique())[:n_users]
    rows = []
    for u in users:
        ui = dm.user_index[u]
        hist = dm.history.indices[dm.history.indptr[ui] : dm.history.indptr[ui + 1]][-5:]
        top = recs[(recs["user_id"] == u) & (recs["rank"] <= k)]
        rows.append(
            {
                "user_id": u,
                "history": "; ".join(cat.titles[i] for i in hist.tolist()[::-1]),
                "recommended": "; ".join(cat.titles[cat.index[i]] for i in top["item_id"]),
                **({"because": " | ".join(top["because"])} if "because" in top else {}),
            }
        )
    return pd.DataFrame(rows)


def wandb_loggers(loggers: list) -> list:
    """The Lightning ``WandbLogger`` objects among ``loggers`` (none, and nothing imported,
    when Lightning's loggers were never loaded: a closed-form run without W&B)."""
    module = sys.modules.get("lightning.pytorch.loggers.wandb")
    if module is None:
        return []
    return [lg for lg in loggers if isinstance(lg, module.WandbLogger)]


def log_recommendation_table(loggers: list, recs: pd.DataFrame, dm) -> None:
    """Log :func:`sample_table` to every W&B logger of the run."""
    for lg in wandb_loggers(loggers):
        table = sample_table(recs, dm)
        lg.log_table("recommendations", dataframe=table)
