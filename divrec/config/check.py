"""Start-up validation of a composed config against ``divrec.config.schema``.

``validate_config(cfg)`` runs before any data is loaded and reports, in one line with each
key's full dotted path: unknown keys (with close matches), wrong types, values out of range,
unknown names (finetune mode, re-ranker, metric, ...), missing required values (``???``) and
cross-key rules (split ratios sum to 1, re-rank candidates >= max K); a valid config that
defeats its own purpose gets one warning per problem (:func:`config_warnings`).
``validate_against_data``
adds the checks that need the catalogue: its size, and whether it has categories at all (xQuAD
and the category loss terms need them). Hydra's struct mode already refuses ``a.b=1``
for a key ``b`` that does not exist; this catches ``+a.b=1`` and keys set in YAML files.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import math
import types
import typing
from pathlib import PurePath
from typing import Any, Union

from omegaconf import DictConfig, ListConfig, OmegaConf

from divrec.config.schema import GROUPS, MODEL_KINDS, MODEL_SCHEMAS, signature_params
from divrec.config.trainer import check_trainer
from divrec.errors import ConfigError
from divrec.metrics.evaluator import category_fallback

_SKIP = object()  # a value that could not be read (its error is already recorded)
log = logging.getLogger(__name__)


def validate_config(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every problem in the model/loss/rerank/optim/eval/data
    groups of ``cfg``; return None when the config is valid."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    errors: list[str] = []
    for group in ("model", *GROUPS):
        if group not in cfg:
            errors.append(f"{group}: config group missing")
    if not errors:
        try:
            kind = cfg.model.get("kind", "two_tower")
        except Exception:  # noqa: BLE001 - '???' or a broken interpolation: check_node reports
            kind = "two_tower"
        if kind not in MODEL_SCHEMAS:
            errors.append(f"model.kind: {kind!r} unknown; choose from {list(MODEL_KINDS)}")
        else:
            check_node(cfg.model, MODEL_SCHEMAS[kind], "model", errors)
        for group, schema in GROUPS.items():
            check_node(cfg[group], schema, group, errors)
        if "trainer" in cfg:
            check_trainer(cfg.trainer, errors, _did_you_mean)
        if not errors:
            _cross_checks(cfg, errors)
    _raise(errors)
    for warning in config_warnings(cfg):
        log.warning(warning)


def config_warnings(cfg: DictConfig) -> list[str]:
    """Valid settings that undo each other (one line each): repeat purchases kept by
    ``data.aggregate=invoice`` but collapsed again by ``data.preprocess.dedup``, and
    ``model=buy_again`` with its own items masked (``eval.mask_seen=true``)."""
    out = []
    data, model = cfg.data, cfg.model
    dedup = (data.get("preprocess") or {}).get("dedup", "latest")
    if data.get("aggregate") == "invoice" and dedup != "none":
        out.append(
            f"data.aggregate=invoice keeps repeat purchases but data.preprocess.dedup={dedup} "
            "collapses them to one per (user, item) again; set data.preprocess.dedup=none"
        )
    buy_again = model.get("kind") == "baseline" and model.get("name") == "buy_again"
    if buy_again and bool(cfg.eval.get("mask_seen", True)):
        out.append(
            "model=buy_again with eval.mask_seen=true: the user's own items are masked, so it "
            "ranks like model=pop; set eval.mask_seen=false"
        )
    return out


def validate_against_data(cfg: DictConfig, n_items: int, has_categories: bool = True) -> None:
    """Checks that need the catalogue (after the data module is set up): its size ``n_items``
    and ``has_categories`` (False: no item has a category)."""
    errors: list[str] = []
    if not has_categories:
        errors += category_needs(cfg)
    ks = [int(k) for k in cfg.eval.ks]
    if max(ks) > n_items:
        errors.append(f"eval.ks: K={max(ks)} exceeds the catalogue ({n_items} items)")
    rr = cfg.rerank
    if rr.get("name", "none") != "none" and rr.get("candidates") is not None:
        need = min(max(max(ks), int(cfg.eval.get("save_topk", 100))), n_items)
        if int(rr.candidates) < need:
            errors.append(
                f"rerank.candidates: {rr.candidates} < {need} (the longest list ranked: "
                f"max of eval.ks and eval.save_topk, capped at {n_items} items)"
            )
    _raise(errors)


def category_needs(cfg: DictConfig) -> list[str]:
    """Problems of ``cfg`` on a catalogue without categories: xQuAD or calibration (the run's re-ranker or a
    ``rerank_sweep`` name), a callback monitoring a category metric (never logged) and a
    category loss term with ``loss.diversity_weight > 0`` (weight 0: the term is unused)."""
    why = "needs item categories and this catalogue has none (data.categories_from=clusters gives it some)"
    errors = []
    sweep = (cfg.get("rerank_sweep") or {}).get("names") or []
    for name in sorted({"xquad", "calibrated"} & {cfg.rerank.get("name", "none"), *sweep}):
        errors.append(f"rerank: {name} {why}; use rerank=mmr or rerank=dpp")
    div = (cfg.get("loss") or {}).get("diversity") or {}
    uses_cats = div.get("name") == "category_entropy" or (
        div.get("name") == "ils" and div.get("similarity") == "category"
    )
    for name, cb in (cfg.get("callbacks") or {}).items():
        monitor = cb.get("monitor") if isinstance(cb, DictConfig) else None
        if monitor and category_fallback(str(monitor)) is not None:
            errors.append(f"callbacks.{name}.monitor: {monitor} {why}; monitor val/ndcg@10")
    if cfg.model.get("kind", "two_tower") == "two_tower" and uses_cats:
        if float(cfg.loss.get("diversity_weight", 0.0) or 0.0) > 0:
            errors.append(
                f"loss.diversity: {div.get('name')} {why}; use loss/diversity=ils "
                "(similarity: embedding) or loss.diversity_weight=0"
            )
    return errors


def _raise(errors: list[str]) -> None:
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError(f"{len(errors)} config problems: " + "; ".join(errors))


def _cross_checks(cfg: DictConfig, errors: list[str]) -> None:
    ratios = [float(r) for r in cfg.data.split.get("ratios", [0.8, 0.1, 0.1])]
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6:
        errors.append(
            f"data.split.ratios: expected three non-negative numbers summing to 1, got {ratios}"
        )
    ks = [int(k) for k in cfg.eval.get("ks", [10, 20])]
    rr = cfg.rerank
    if rr.get("name", "none") != "none" and rr.get("candidates") is not None:
        if int(rr.candidates) < max(ks):
            errors.append(f"rerank.candidates: {rr.candidates} < max(eval.ks)={max(ks)}")


# ------------------------------------------------------------------ generic walker
def check_node(node: Any, schema: type, path: str, errors: list[str], parent: Any = None) -> None:
    """Check mapping ``node`` (at dotted ``path``) against dataclass ``schema``; append each
    problem to ``errors``."""
    if not isinstance(node, DictConfig):
        errors.append(f"{path}: expected a mapping, got {_show(node)}")
        return
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    extra: dict[str, inspect.Parameter] = {}
    extra_hints: dict[str, Any] = {}
    params, known = getattr(schema, "params", None), True
    if params is not None:
        try:
            fn, skip = params(node, parent)
            extra = signature_params(fn, skip=(*skip, *fields))
            extra_hints = _hints(fn)
        except (ConfigError, KeyError, AttributeError):
            known = False  # the name/source key itself is wrong: reported by its own check
    for key in node.keys():
        key = str(key)
        where = f"{path}.{key}"
        if key in fields:
            value = _read(node, key, where, errors)
            if value is not _SKIP:
                _check_value(value, hints[key], fields[key].metadata, where, errors, node)
        elif key in extra:
            value = _read(node, key, where, errors)
            if value is not _SKIP:
                tp = extra_hints.get(key, _type_of_default(extra[key]))
                _check_value(value, tp, {}, where, errors, node)
        elif known:
            allowed = [*fields, *extra]
            hint = _did_you_mean(key, allowed)
            errors.append(f"{where}: unknown key{hint}; allowed: {', '.join(allowed) or '(none)'}")
    present = {str(k) for k in node.keys()}
    for key, p in extra.items():
        if p.default is inspect.Parameter.empty and key not in present:
            errors.append(f"{path}.{key}: required (set {path}.{key}=...)")


def _read(node: DictConfig, key: str, where: str, errors: list[str]) -> Any:
    if OmegaConf.is_missing(node, key):
        errors.append(f"{where}: required value missing ('???'); set {where}=...")
        return _SKIP
    try:
        return node[key]
    except Exception as e:  # noqa: BLE001 - any resolver failure is a config problem
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        errors.append(f"{where}: cannot resolve its value ({first})")
        return _SKIP


def _check_value(value: Any, tp: Any, meta: Any, where: str, errors: list[str], node: Any) -> None:
    schema = _schema_in(tp)
    if schema is not None and isinstance(value, DictConfig):
        check_node(value, schema, where, errors, parent=node)
        return
    if not _matches(value, tp):
        errors.append(f"{where}: expected {_describe(tp)}, got {_show(value)}")
        return
    items = list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]
    if isinstance(value, (ListConfig, list, tuple)):
        n, lo, exact = len(items), meta.get("min_len", 0), meta.get("length")
        if exact is not None and n != exact:
            errors.append(f"{where}: expected exactly {exact} values, got {n}")
        elif n < lo:
            errors.append(f"{where}: expected at least {lo} value(s), got {n}")
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(value, (ListConfig, list, tuple)) else where
        problem = _rule_problem(item, meta)
        if problem:
            errors.append(f"{at}: {problem}")


def _rule_problem(value: Any, meta: Any) -> str | None:
    if "choices" in meta and value is not None:
        allowed = [str(c) for c in meta["choices"]()]
        if str(value) not in allowed:
            return f"{value!r} unknown{_did_you_mean(str(value), allowed)}; choose from {allowed}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    for rule, ok, word in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    ):
        if rule in meta and not ok(value, meta[rule]):
            return f"expected a value {word} {meta[rule]}, got {value!r}"
    return None


# ------------------------------------------------------------------ types
def _args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _schema_in(tp: Any) -> type | None:
    """The dataclass in ``tp`` (``S`` or ``S | None``), else None."""
    for t in _args(tp) if _is_union(tp) else (tp,):
        if dataclasses.is_dataclass(t):
            return t
    return None


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any or tp is inspect.Parameter.empty:
        return True
    if _is_union(tp):
        return any(_matches(value, t) for t in _args(tp))
    if tp is type(None) or tp is None:
        return value is None
    if dataclasses.is_dataclass(tp):
        return isinstance(value, DictConfig)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str or (isinstance(tp, type) and issubclass(tp, PurePath)):
        return isinstance(value, str)
    origin = typing.get_origin(tp) or tp
    if origin in (list, tuple) or (isinstance(origin, type) and origin.__name__ == "Sequence"):
        if not isinstance(value, (ListConfig, list, tuple)):
            return False
        args = _args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_matches, value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, (DictConfig, dict))
    return True  # an annotation the checker does not model: accept


def _describe(tp: Any) -> str:
    if _is_union(tp):
        return " or ".join(_describe(t) for t in _args(tp))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if tp is type(None) or tp is None:
        return "null"
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        args = _args(tp)
        return f"a list of {plural.get(args[0], 'values')}" if args else "a list"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to defaults
        return {}


def _type_of_default(p: inspect.Parameter) -> Any:
    d = p.default
    if d is inspect.Parameter.empty or d is None:
        return Any
    return float if isinstance(d, float) else type(d)


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."
