"""Gather every run's ``metrics.json`` under a sweep/runs folder into one DataFrame.

Run folder contract (written by the training code): ``metrics.json`` is a flat dict of metric
keys (``"test/ndcg@10"`` -> float or null) plus a ``"meta"`` dict with ``status``, ``error``,
``overrides`` (Hydra task overrides), optional ``knobs`` (flat dotted key -> value the sweep
varied) and provenance fields. ``val/*`` and ``test/*`` are of the same weights, named by
``meta.evaluated_checkpoint`` / ``evaluated_epoch`` / ``evaluated_step``. ``.hydra/overrides.yaml`` next to it is the fallback source of
overrides. Layouts vary (multirun ``0/``, ``1/``; ``diversity=0.1/``), so the search is
recursive and a run is named by its folder relative to the sweep folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from divrec.errors import DataError

METRICS_FILE = "metrics.json"
BASE_COLUMNS = ("run", "status", "error")
KNOB_COLUMNS_ATTR = "knob_columns"
METRIC_COLUMNS_ATTR = "metric_columns"
_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def collect_runs(folder: str | os.PathLike) -> pd.DataFrame:
    """One row per ``metrics.json`` found under ``folder`` (any depth), in natural path order.

    Columns: ``run`` (run folder relative to ``folder``, posix, ``"."`` for the folder itself),
    ``status`` (``"ok"``, ``"failed"``, ``"unreadable"`` or ``"incomplete"``: a run folder
    without ``metrics.json``, e.g. a job killed before the end), ``error`` (str or None), then knob
    columns, then metric columns (float, NaN where a run lacks the metric). The names of the
    knob and metric columns are stored in ``df.attrs["knob_columns"]`` /
    ``df.attrs["metric_columns"]``. Natural order means ``2/`` sorts before ``10/``.

    Knobs come from ``meta.knobs``; when that is absent or empty, from ``meta.overrides``;
    when those are absent or empty too, from ``.hydra/overrides.yaml`` next to the file.
    A corrupt or unreadable ``metrics.json`` yields a row with status ``"unreadable"`` and the
    error text (knobs still come from ``.hydra/overrides.yaml`` when it is there).
    Raises DataError when ``folder`` is missing, not a folder, or holds no run.
    """
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{root}: folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected a sweep or runs folder)")
    files = sorted(root.rglob(METRICS_FILE), key=lambda p: _natural_key(p.relative_to(root)))
    files = [f for f in files if f.is_file()]
    files = sorted(
        [*files, *(d / METRICS_FILE for d in incomplete_runs(root))],
        key=lambda p: _natural_key(p.relative_to(root)),
    )
    if not files:
        raise DataError(f"{root}: no {METRICS_FILE} found at any depth (is this a runs folder?)")

    rows: list[dict[str, Any]] = []
    knob_cols: dict[str, None] = {}  # ordered sets: first appearance wins
    metric_cols: dict[str, None] = {}
    runs = [f.parent.relative_to(root).as_posix() for f in files]
    # Several sweeps side by side (a/diversity=0.1, b/diversity=0.1): their top folder is a knob.
    tops = {r.split("/", 1)[0] for r in runs if "/" in r}
    for path, run in zip(files, runs, strict=True):
        base, knobs, metrics = _read_run(path)
        if len(tops) > 1 and "/" in run:
            knobs = {"sweep": run.split("/", 1)[0], **knobs}
        for k in knobs:
            knob_cols.setdefault(k, None)
        for k in metrics:
            metric_cols.setdefault(k, None)
        rows.append({"run": run, **base, "knobs": knobs, "metrics": metrics})

    knob_names = {k: _knob_column_name(k, metric_cols) for k in knob_cols}
    records = []
    for row in rows:
        rec: dict[str, Any] = {c: row[c] for c in BASE_COLUMNS}
        for k in knob_cols:
            rec[knob_names[k]] = row["knobs"].get(k)
        for k in metric_cols:
            rec[k] = row["metrics"].get(k, math.nan)
        records.append(rec)
    columns = [*BASE_COLUMNS, *knob_names.values(), *metric_cols]
    df = pd.DataFrame.from_records(records, columns=columns)
    for k in metric_cols:
        df[k] = df[k].astype("float64")
    for key, name in knob_names.items():  # ints stay ints (not 7.0) when some run lacks them
        values = [row["knobs"].get(key) for row in rows]
        present = [v for v in values if not is_missing(v)]
        if len(present) < len(values) and present and all(map(_is_int, present)):
            df[name] = pd.array(values, dtype="Int64")
    df.attrs[KNOB_COLUMNS_ATTR] = list(knob_names.values())
    df.attrs[METRIC_COLUMNS_ATTR] = list(metric_cols)
    return df


def knob_columns(df: pd.DataFrame) -> list[str]:
    """Knob column names of a ``collect_runs`` frame (from ``df.attrs``)."""
    return [c for c in df.attrs.get(KNOB_COLUMNS_ATTR, []) if c in df.columns]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Metric column names of a ``collect_runs`` frame (from ``df.attrs``)."""
    return [c for c in df.attrs.get(METRIC_COLUMNS_ATTR, []) if c in df.columns]


def parse_overrides(overrides: list[Any]) -> dict[str, Any]:
    """Hydra override strings -> ``{key: value}``; numbers parsed, ``hydra.*`` skipped.

    ``+key=v`` / ``++key=v`` count as ``key``; deletions (``~key``) and entries without ``=``
    are skipped because they set no value.
    """
    knobs: dict[str, Any] = {}
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            continue
        key, value = item.split("=", 1)
        key = key.strip().lstrip("+")
        if not key or key.startswith("~") or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        knobs[key] = parse_value(value.strip())
    return knobs


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.3"``/``"1e-3"`` -> float, anything else (incl. ``"nan"``) -> str."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


RUN_MARKERS = (".hydra", "recommendations.parquet", "checkpoints", "split")


def incomplete_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` (holding one of ``RUN_MARKERS``) without ``metrics.json``."""
    found = set()
    for marker in RUN_MARKERS:
        for hit in root.rglob(marker):
            folder = hit.parent
            rel = folder.relative_to(root).parts
            if any(p in RUN_MARKERS or p.startswith(".") for p in rel):
                continue  # inside a run's own checkpoints/, split/ or a temporary folder
            if not (folder / METRICS_FILE).exists():
                found.add(folder)
    return sorted(found)


def _read_run(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """(``{status, error}``, knobs, metrics) of one run; never raises on bad content."""
    if not path.exists():
        base = {
            "status": "incomplete",
            "error": f"no {METRICS_FILE}: the job was killed, crashed hard or is still running",
        }
        return base, _hydra_overrides(path.parent), {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, dict):
            raise ValueError(f"top level is {type(payload).__name__}, expected an object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        base = {"status": "unreadable", "error": f"{type(exc).__name__}: {exc}"}
        return base, _hydra_overrides(path.parent), {}

    meta = payload.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    status = meta.get("status") or "ok"
    error = meta.get("error")
    base = {"status": str(status), "error": None if error is None else str(error)}

    knobs = meta.get("knobs")
    if isinstance(knobs, dict) and knobs:
        knobs = {str(k): v for k, v in knobs.items()}
    elif isinstance(meta.get("overrides"), list) and meta["overrides"]:
        knobs = parse_overrides(meta["overrides"])
    else:
        knobs = _hydra_overrides(path.parent)

    metrics: dict[str, float] = {}
    for key, value in payload.items():
        if key == "meta" or isinstance(value, bool):
            continue
        if value is None:
            metrics[key] = math.nan
        elif isinstance(value, (int, float)):
            metrics[key] = float(value)
    return base, knobs, metrics


def is_missing(value: Any) -> bool:
    """True for None, NaN and pd.NA (scalars only): an empty cell in a ``collect_runs`` frame."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_knob(value: Any) -> str:
    """Compact display of a knob value: floats in ``%g`` form, missing as ``""``."""
    if is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _hydra_overrides(run_dir: Path) -> dict[str, Any]:
    """Knobs from ``run_dir/.hydra/overrides.yaml``; empty when absent or unparsable."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return parse_overrides(items) if isinstance(items, list) else {}


def _knob_column_name(key: str, metric_cols: dict[str, None]) -> str:
    """A knob key as column name, prefixed ``knob:`` only if it clashes with another column."""
    if key in BASE_COLUMNS or key in metric_cols or key == "pareto":
        return f"knob:{key}"
    return key


def _natural_key(path: Path) -> tuple:
    """Sort key comparing numbers as numbers: ``2/`` < ``10/``, ``d=0.05`` < ``d=0.1``."""
    out: list[tuple] = []
    for part in path.parts:
        for i, tok in enumerate(_NUMBER.split(part)):
            out.append((0, float(tok), "") if i % 2 else (1, 0.0, tok))
        out.append((-1, 0, ""))  # part separator sorts first: "a/x" before "a0/x"
    return tuple(out)
