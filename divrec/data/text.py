"""Text templates for items and users, and tokenisation with an on-disk cache.

Items are rendered with a format string over their columns, e.g.
``"{title}. Categories: {categories}."`` (``categories`` joined with ", "). Users are rendered
from their demographic columns (when the source has them) plus the titles of their most
recent N *training* items, so no valid/test item leaks into the user text. A training pair's
user text also leaves out the pair's own positive: each user's training rows fall into F
folds, and a pair gets the text rendered without its fold (``render_user_variants``).

Tokenised texts are stored with HF ``datasets`` under a key computed from the texts, the
tokenizer's content and the maximum length (``Dataset.map`` on in-memory data never caches,
see PITFALLS.md), written atomically and reloaded with ``load_from_disk``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from divrec.errors import ConfigError, DataError
from divrec.utils.io import atomic_dir, discard_dir, fingerprint

log = logging.getLogger(__name__)


@dataclass
class TextConfig:
    """Templates and lengths (``data.text`` in the config)."""

    item_template: str = "{title}. Categories: {categories}."
    user_template: str = "{profile}Recently liked: {history}."
    user_fields: list[str] | None = None  # demographic columns; None = all user columns
    user_history_items: int = 10  # titles of the most recent N training items
    user_text_folds: int = 2  # training-pair user texts leave out the pair's fold (>= 2)
    max_item_len: int = 32
    max_user_len: int = 96
    item_prefix: str = ""  # prepended to every item text (embedding models' instruction)
    user_prefix: str = ""  # prepended to every user text


def with_prefix(texts: list[str], prefix: str) -> list[str]:
    """``prefix + text`` for each text (the prefix is part of the text, hence of every
    token and embedding cache key)."""
    return [prefix + t for t in texts] if prefix else list(texts)


def template_fields(template: str) -> list[str]:
    """Names of the ``{field}`` placeholders in a format string."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def render_items(items: pd.DataFrame, template: str) -> tuple[list[str], int]:
    """Render every item row with ``template``; returns (texts, n_empty_fallbacks).

    An item whose rendered text is empty falls back to its title, then to its id (counted).
    """
    fields = template_fields(template)
    cols = {c: items[c] for c in items.columns}
    cols["categories"] = items["categories"].map(lambda c: ", ".join(c))
    missing = [f for f in fields if f not in cols]
    if missing:
        raise ConfigError(
            f"data.text.item_template: unknown field(s) {missing}; item columns are {sorted(cols)}"
        )
    values = [cols[f].astype(str).tolist() for f in fields]
    titles, ids = items["title"].tolist(), items["item_id"].tolist()
    texts: list[str] = []
    n_empty = 0
    for i in range(len(items)):
        row = {f: values[j][i] for j, f in enumerate(fields)}
        text = template.format(**row).strip() if any(v.strip() for v in row.values()) else ""
        if not text:
            n_empty += 1
            text = titles[i].strip() or f"item {ids[i]}"
        texts.append(text)
    if n_empty:
        log.warning("%d item(s) have empty text; fell back to title or id", n_empty)
    return texts, n_empty


def _profiles(users: pd.DataFrame | None, cfg: TextConfig) -> dict[str, str]:
    """user_id -> rendered demographic profile ("" when the source has none)."""
    for f in template_fields(cfg.user_template):
        if f not in ("profile", "history"):
            raise ConfigError(
                f"data.text.user_template: unknown field '{f}'; use {{profile}} and {{history}}"
            )
    profile: dict[str, str] = {}
    if users is not None:
        fields = cfg.user_fields or [c for c in users.columns if c != "user_id"]
        missing = [f for f in fields if f not in users.columns]
        if missing:
            raise ConfigError(f"data.text.user_fields: unknown column(s) {missing}")
        for row in users[["user_id", *fields]].itertuples(index=False):
            parts = [
                f"{f.replace('_', ' ')}: {v}" for f, v in zip(fields, row[1:], strict=True) if v
            ]
            profile[row[0]] = (", ".join(parts) + ". ") if parts else ""
    return profile


def _time_order(train: pd.DataFrame) -> pd.DataFrame:
    """Training rows by (user, time), stable; the index is each row's position in ``train``."""
    return train.reset_index(drop=True).sort_values(["user_id", "timestamp"], kind="stable")


def _user_text(cfg: TextConfig, profile: str, items: list[str], titles: dict[str, str]) -> str:
    """The template over ``profile`` and the titles of the most recent of ``items`` (oldest
    first in ``items``; the text lists the newest ``user_history_items`` newest first)."""
    hist = [titles.get(i, i) for i in items[-cfg.user_history_items :][::-1]]
    return cfg.user_template.format(
        profile=profile, history="; ".join(hist) if hist else "nothing yet"
    ).strip()


def render_users(
    user_ids: list[str],
    train: pd.DataFrame,
    item_titles: dict[str, str],
    users: pd.DataFrame | None,
    cfg: TextConfig,
) -> list[str]:
    """One text per user: demographic profile plus recent training-item titles."""
    profile = _profiles(users, cfg)
    recent = _time_order(train).groupby("user_id", sort=False)["item_id"].agg(list)
    return [_user_text(cfg, profile.get(u, ""), recent.get(u, []), item_titles) for u in user_ids]


def history_folds(train: pd.DataFrame, n_folds: int) -> np.ndarray:
    """Fold of each training row, ``[len(train)]`` ints in ``[0, n_folds)``: the row's position
    in its user's time-ordered history counted from the most recent (0), modulo ``n_folds``.
    Deterministic; every user with >= ``n_folds`` rows has rows in every fold."""
    order = _time_order(train)
    folds = np.zeros(len(train), dtype=np.int64)
    pos = order.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    folds[order.index.to_numpy()] = pos % n_folds
    return folds


def render_user_variants(
    user_ids: list[str],
    train: pd.DataFrame,
    item_titles: dict[str, str],
    users: pd.DataFrame | None,
    cfg: TextConfig,
) -> tuple[list[str], np.ndarray]:
    """User texts with and without each fold of the training history, and each training
    pair's text row.

    Returns ``(texts, pair_rows)``: ``texts`` has ``(F + 1) * U`` entries (F =
    ``cfg.user_text_folds``, U = ``len(user_ids)``): rows ``[0, U)`` are :func:`render_users`'s
    full-history texts (evaluation and serving); rows ``[(f + 1) U, (f + 2) U)`` leave out
    every item of fold ``f`` (:func:`history_folds`). ``pair_rows`` ``[len(train)]``: the row
    for each training pair, the variant of the pair's own fold, so no pair's user text names
    its positive item (not even through a duplicate row of the same item in another fold).
    """
    n_folds = cfg.user_text_folds
    if n_folds < 2:
        raise ConfigError(f"data.text.user_text_folds: expected an int >= 2, got {n_folds!r}")
    profile = _profiles(users, cfg)
    index = {u: k for k, u in enumerate(user_ids)}
    folds = history_folds(train, n_folds)
    order = _time_order(train)
    order_folds = folds[order.index.to_numpy()]
    by_user: dict[str, tuple[list[str], list[int]]] = {}
    for u, i, f in zip(order["user_id"], order["item_id"], order_folds, strict=True):
        items, fs = by_user.setdefault(u, ([], []))
        items.append(i)
        fs.append(int(f))
    texts = [""] * ((n_folds + 1) * len(user_ids))
    for k, u in enumerate(user_ids):
        items, fs = by_user.get(u, ([], []))
        prof = profile.get(u, "")
        texts[k] = _user_text(cfg, prof, items, item_titles)
        for f in range(n_folds):
            hidden = {i for i, g in zip(items, fs, strict=True) if g == f}
            kept = [i for i in items if i not in hidden]
            texts[(f + 1) * len(user_ids) + k] = _user_text(cfg, prof, kept, item_titles)
    rows = train["user_id"].map(index).to_numpy(np.int64)
    return texts, (folds + 1) * len(user_ids) + rows


def item_tag_texts(tags: pd.DataFrame, train: pd.DataFrame | None = None) -> dict[str, str]:
    """item_id -> its distinct tags (case-insensitive, first spelling), most used first,
    comma-joined. ``tags``: ``user_id, item_id, tag`` rows; with ``train``, only the tags of
    (user, item) pairs in ``train`` count, so a held-out user's tag never reaches an item."""
    if train is not None:
        keep = pd.MultiIndex.from_frame(tags[["user_id", "item_id"]]).isin(
            pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
        )
        log.info("item tags: %d of %d tag rows are on training pairs", int(keep.sum()), len(tags))
        tags = tags[keep]
    tags = tags.assign(key=tags["tag"].str.lower())
    counts = tags.groupby(["item_id", "key"], sort=False).agg(
        tag=("tag", "first"), n=("tag", "size")
    )
    counts = counts.reset_index().sort_values(
        ["item_id", "n"], ascending=[True, False], kind="stable"
    )
    return counts.groupby("item_id", sort=False)["tag"].agg(", ".join).to_dict()


def tokenizer_fingerprint(tokenizer) -> str:
    """Content fingerprint of a tokenizer (vocabulary, normaliser, special tokens).

    The backend's truncation/padding state is left out: calling the tokenizer with
    ``truncation=True`` changes it, and it must not change the cache key of the next text set.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        payload = json.dumps(state, sort_keys=True)
    else:
        payload = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class TokenisedTexts:
    """Right-padded token ids for N texts: ``input_ids``/``attention_mask``: [N, L]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    cache_hit: bool

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``idx`` trimmed to their longest true length (dynamic padding)."""
        mask = self.attention_mask[idx]
        length = max(1, int(mask.sum(1).max()))
        return self.input_ids[idx, :length], mask[:, :length]


def tokenise_uncached(texts: list[str], tokenizer, max_len: int):
    """Tokenise through HF ``datasets`` (batched ``map``): a Dataset with ``input_ids``."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": texts})
    return ds.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_len),
        batched=True,
        remove_columns=["text"],
        desc="tokenise",
    )


def tokenise_cached(
    texts: list[str], tokenizer, max_len: int, cache_dir: str | Path, name: str
) -> TokenisedTexts:
    """Tokenise ``texts`` through HF ``datasets`` once; reuse the saved result afterwards."""

    key = fingerprint(
        name,
        hashlib.sha256("\x1f".join(texts).encode()).hexdigest(),
        tokenizer_fingerprint(tokenizer),
        max_len,
    )
    path = Path(cache_dir) / "tokens" / f"{name}-{key}"
    ids = _load_tokens(path, len(texts))
    hit = ids is not None
    if hit:
        log.info("tokenisation cache hit: %s", path)
    else:
        log.info("tokenising %d %s texts -> %s", len(texts), name, path)
        ds = tokenise_uncached(texts, tokenizer, max_len)
        with atomic_dir(path) as tmp:  # a concurrent job's identical entry may win
            ds.save_to_disk(str(tmp))
        ids = _load_tokens(path, len(texts))
        if ids is None:
            raise DataError(f"{path}: token cache written but unreadable; remove the folder")
    length = max(1, max((len(x) for x in ids), default=1))
    input_ids = np.zeros((len(ids), length), dtype=np.int64)
    mask = np.zeros((len(ids), length), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    pad = tokenizer.pad_token_id or 0
    input_ids[mask == 0] = pad
    return TokenisedTexts(torch.from_numpy(input_ids), torch.from_numpy(mask), hit)


def _load_tokens(path: Path, n: int) -> list[list[int]] | None:
    """``input_ids`` of the token cache entry ``path`` (``n`` rows), or None when absent.

    A damaged entry (truncated ``.arrow``, missing files, wrong row count) is removed, like a
    damaged embedding cache file, and None returned so the caller recomputes it.
    """
    import datasets

    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return None
    try:
        ids = datasets.load_from_disk(str(path))["input_ids"]
        ids = [list(row) for row in ids]
        if len(ids) != n:
            raise ValueError(f"{len(ids)} rows, expected {n}")
        return ids
    except Exception as e:  # noqa: BLE001 - pyarrow/datasets raise many types for bad files
        log.warning("token cache %s unreadable (%s: %s); recomputing", path, type(e).__name__, e)
        discard_dir(path, inode)
        return None
