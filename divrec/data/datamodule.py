"""``RecDataModule``: source -> preprocess -> split -> text -> tokenised batches.

The work is in ``RecData`` (no Lightning: a closed-form baseline's run never imports it);
``RecDataModule`` is ``RecData`` as a ``LightningDataModule`` (:mod:`divrec.data.lightning_data`),
still importable from here (``data._target_``), Lightning loaded only when it is asked for.

Train batches are (user, positive item) pairs with the ids needed for in-batch negatives and
popularity correction; val/test batches give users, their ground-truth items and the items
they have already seen, for full-catalogue ranking.

DDP-safe: ``prepare_data`` (one process per node) fills the on-disk caches; ``setup`` (every
process) assigns state, from what ``prepare_data`` built in the same process when it ran
there (the pipeline runs once per process), else by rebuilding the deterministic pipeline
and reading the caches.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from divrec.data.catalogue import Catalogue
from divrec.data.clusters import check_cluster_args
from divrec.data.dataset import RecDataset
from divrec.data.history import History
from divrec.data.images import check_images_cfg, image_refs
from divrec.data.preprocess import preprocess
from divrec.data.samplers import EpochShuffle, eval_sampler
from divrec.data.sources import load_source
from divrec.data.split import Split, given_split, make_split, save_split
from divrec.data.text import (
    TextConfig,
    TokenisedTexts,
    item_tag_texts,
    render_items,
    render_user_variants,
    tokenise_cached,
    with_prefix,
)
from divrec.errors import ConfigError
from divrec.utils.io import fingerprint

log = logging.getLogger(__name__)


# (dataset, split, stats, _texts(...) tuple, item tokens, user tokens): one pipeline run.
_Built = tuple[RecDataset, Split, dict[str, Any], tuple, TokenisedTexts, TokenisedTexts]


class _Rows(Dataset):
    """Index dataset over ``n`` rows; collate functions do the real work on whole batches."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class RecData:
    """Data for one run; every argument is a key of the ``data`` config group.

    Keys not listed here are the source's own (e.g. ``release``, ``root``) and are checked
    against the source loader's signature.
    """

    def __init__(
        self,
        source: str,
        tokenizer: str,
        preprocess: dict | None = None,
        split: dict | None = None,
        text: dict | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        history_len: int = 50,
        length_bucketing: int | None = None,
        cache_dir: str = ".cache/divrec",
        name: str | None = None,
        categories_from: str = "source",
        n_clusters: int = 20,
        cluster_seed: int = 0,
        images: dict | None = None,
        **source_args: Any,
    ) -> None:
        super().__init__()
        check_cluster_args(categories_from, n_clusters, cluster_seed)
        # "clusters": categories are set by set_categories (divrec.run.build.assign_clusters)
        self.categories_from = categories_from
        self.n_clusters, self.cluster_seed = n_clusters, cluster_seed
        self.source = source
        self.source_args = dict(source_args)
        self.tokenizer_path = tokenizer
        self.preprocess_args = dict(preprocess or {})
        self.split_args = dict(split or {})
        try:
            self.text_cfg = TextConfig(**dict(text or {}))
        except TypeError as e:
            raise ConfigError(f"data.text: {e}") from None
        self.images_cfg = check_images_cfg(images)  # read by models with model.image
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.history_len = history_len
        self.length_bucketing = length_bucketing  # None: decided by the model (build_module)
        self.cache_dir = Path(cache_dir)
        self.name = name or source
        self.stats: dict[str, Any] = {}
        self._ready = False
        self._prepared: _Built | None = None  # prepare_data's work, for setup in this process
        # Built after seed_everything: the run's seed, so shuffling is a function of (seed, epoch).
        self.shuffle_seed = torch.initial_seed()

    # ----------------------------------------------------------------- pipeline
    def _tokenizer(self):
        from divrec.models.pretrained import load_tokenizer, resolve_pretrained

        return load_tokenizer(resolve_pretrained(self.tokenizer_path))

    def _pipeline(self) -> tuple[RecDataset, Split, dict[str, Any]]:
        ds = load_source(self.source, **self.source_args)
        ds, pre_stats = preprocess(ds, **self.preprocess_args)
        split, split_stats = self._split(ds)
        stats = {**ds.stats(), **{f"preprocess/{k}": v for k, v in pre_stats.items()}}
        stats.update(split_stats)
        return ds, split, stats

    def _texts(self, ds: RecDataset, split: Split):
        """(item texts [N], user ids [U], user texts [(F + 1) U], text row of each training
        pair [n_train], empty-item count); see :func:`render_user_variants` for the rows.
        Item tags (``extra["item_tags"]``, MovieLens ``tags_as_text``) come from training
        pairs only."""
        items = ds.items
        if ds.extra.get("item_tags") is not None:
            tags = item_tag_texts(ds.extra["item_tags"], split.train)
            items = items.assign(tags=items["item_id"].map(tags).fillna(""))
        item_texts, n_empty = render_items(items, self.text_cfg.item_template)
        user_ids = sorted(
            set(split.train["user_id"]) | set(split.valid["user_id"]) | set(split.test["user_id"])
        )
        titles = dict(zip(ds.items["item_id"], ds.items["title"], strict=True))
        user_texts, pair_rows = render_user_variants(
            user_ids, split.train, titles, ds.users, self.text_cfg
        )
        item_texts = with_prefix(item_texts, self.text_cfg.item_prefix)
        user_texts = with_prefix(user_texts, self.text_cfg.user_prefix)
        return item_texts, user_ids, user_texts, pair_rows, n_empty

    def _split(self, ds: RecDataset) -> tuple[Split, dict[str, Any]]:
        """The configured split and its stats; ``method=given`` reads someone else's files
        (the source still supplies the item catalogue and user texts), see ``given_split``."""
        args = dict(self.split_args)
        files = {k: args.pop(k, None) for k in ("train_file", "valid_file", "test_file")}
        if args.get("method") != "given":
            return make_split(ds.interactions, **args), {}
        return given_split(**files, known_items=set(ds.items["item_id"]))

    def prepare_data(self) -> None:
        """Fill the tokenisation caches (rank 0 of each node).

        What it builds is kept for this process's :meth:`setup`, which then does not run the
        pipeline again; a process that did not prepare (other DDP ranks) builds its own.
        """
        if self._ready:  # already set up in this process: the caches exist
            return
        self._prepared = self._build()

    def _build(self) -> _Built:
        """Pipeline, texts and tokens: (ds, split, stats, texts, item tokens, user tokens)."""
        ds, split, stats = self._pipeline()
        texts = self._texts(ds, split)
        item_texts, user_texts = texts[0], texts[2]
        tok = self._tokenizer()
        items = tokenise_cached(
            item_texts, tok, self.text_cfg.max_item_len, self.cache_dir, "items"
        )
        users = tokenise_cached(
            user_texts, tok, self.text_cfg.max_user_len, self.cache_dir, "users"
        )
        return ds, split, stats, texts, items, users

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        built = self._prepared or self._build()  # prepared in this process: reused
        self._prepared = None
        ds, split, self.stats, texts, self.item_tokens, self.user_tokens = built
        item_texts, user_ids, user_texts, pair_rows, n_empty = texts
        self.dataset, self.split = ds, split
        refs = image_refs(ds.items, **self.images_cfg)
        self.catalogue = Catalogue.build(ds.items, item_texts, split.train, refs)
        self.user_ids = user_ids
        self.user_index = {u: i for i, u in enumerate(user_ids)}
        # [(F + 1) U]: rows [0, U) the full-history texts (eval, serving); the rest are the
        # fold variants that training pairs use (``train_text_rows``), see render_user_variants.
        self.user_texts = user_texts
        # Whether the caches existed before this process's build (another rank's fill counts).
        self.tokens_cache_hit = self.item_tokens.cache_hit and self.user_tokens.cache_hit
        self.train_users, self.train_items = self._encode(split.train)
        self.train_text_rows = torch.from_numpy(pair_rows)  # [n_train] rows of user_tokens
        self.history = self._history(split.train)
        self.data_fingerprint = fingerprint(
            self.source, self.source_args, self.preprocess_args, split_fingerprint(split)
        )
        self.stats.update(
            {
                "split/method": split.method,
                "split/train": len(split.train),
                "split/valid": len(split.valid),
                "split/test": len(split.test),
                "split/cold_items": len(split.cold_items),
                "text/empty_items": n_empty,
                "cache/tokens_hit": self.tokens_cache_hit,
            }
        )
        self.user_interests = self._interests(ds)
        # Eval users with no training history: the history tower gives them a zero vector
        # (all-equal scores); the text tower still has their profile. Counted and reported.
        eval_users = set(split.valid["user_id"]) | set(split.test["user_id"])
        cold = len(eval_users - set(split.train["user_id"]))
        self.stats["split/eval_users_without_history"] = cold
        if cold:
            log.warning("%d valid/test user(s) have no training history", cold)
        self._ready = True

    def set_categories(self, names: list[str], matrix: torch.Tensor) -> None:
        """Replace the catalogue's categories (``names [C]``, ``matrix [N, C]`` 0/1), e.g. by
        clusters. The source's true user interests name the old categories: they are dropped."""
        self.catalogue.category_names = list(names)
        self.catalogue.category_matrix = matrix.float()
        self.user_interests = None
        self.stats["categories"] = len(names)
        self.stats["categories_from"] = self.categories_from

    def _encode(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        users = torch.as_tensor(df["user_id"].map(self.user_index).to_numpy(np.int64, copy=True))
        items = torch.as_tensor(
            df["item_id"].map(self.catalogue.index).to_numpy(np.int64, copy=True)
        )
        return users, items

    def _history(self, train: pd.DataFrame) -> History:
        order = train.sort_values(["user_id", "timestamp"], kind="stable")
        users, items = self._encode(order)
        perm = torch.argsort(users, stable=True)
        users, items = users[perm], items[perm]
        counts = torch.bincount(users, minlength=len(self.user_ids))
        indptr = torch.zeros(len(self.user_ids) + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(counts, 0)
        return History(indptr, items, self.history_len)

    def _interests(self, ds: RecDataset) -> torch.Tensor | None:
        truth = ds.extra.get("user_interests")
        if not truth:
            return None
        col = {c: j for j, c in enumerate(self.catalogue.category_names)}
        out = torch.zeros(len(self.user_ids), len(col))
        for u, cats in truth.items():
            if u in self.user_index:
                for c in cats:
                    if c in col:
                        out[self.user_index[u], col[c]] = 1.0
        return out

    def save_split(self, folder: str | Path) -> None:
        """Write the split (original ids) into the run folder."""
        save_split(self.split, folder)

    # ----------------------------------------------------------------- batches
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _Rows(len(self.train_users)),
            batch_size=self.batch_size,
            sampler=EpochShuffle(
                len(self.train_users),
                self.shuffle_seed,
                lengths=self.train_lengths(),
                batch=self.batch_size,
                bucket=self.length_bucketing or 0,
            ),
            drop_last=len(self.train_users) > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=self.collate_train,
            persistent_workers=self.num_workers > 0,
        )

    def train_lengths(self) -> torch.Tensor:
        """Token length of each training pair's user + item text: [n_pairs]."""
        user = self.user_tokens.attention_mask.sum(1)[self.train_text_rows]
        item = self.item_tokens.attention_mask.sum(1)[self.train_items]
        return user + item

    def collate_train(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """A batch of training pairs: ``user_idx, item_idx, user_text_idx [B]`` (the text row
        leaves out the pair's fold, so never names ``item_idx``), tokens of those texts
        ``[B, L]``, history ``[B, H]`` without the target."""
        idx = torch.as_tensor(rows)
        users, items = self.train_users[idx], self.train_items[idx]
        text_rows = self.train_text_rows[idx]
        u_ids, u_mask = self.user_tokens.batch(text_rows)
        hist, hist_mask = self.history.batch(users, exclude=items)
        return {
            "user_idx": users,
            "item_idx": items,
            "user_text_idx": text_rows,
            "user_input_ids": u_ids,
            "user_attention_mask": u_mask,
            "history_idx": hist,
            "history_mask": hist_mask,
        }

    def _eval_collate(self, which: str) -> _EvalCollate:
        """Collate of the ``which`` ("val" | "test") pass: truth, and seen = train (+ valid at
        test), over the users that have truth rows."""
        df = self.split.valid if which == "val" else self.split.test
        seen_df = (
            self.split.train if which == "val" else pd.concat([self.split.train, self.split.valid])
        )
        truth = _grouped(df, self.user_index, self.catalogue.index)
        seen = _grouped(seen_df, self.user_index, self.catalogue.index)
        return _EvalCollate(self, sorted(truth), truth, seen)

    def _eval_loader(self, which: str) -> DataLoader:
        collate = self._eval_collate(which)
        rows = _Rows(len(collate.users))
        return DataLoader(
            rows,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=eval_sampler(rows),  # DDP: each user on exactly one rank, no padding
            num_workers=self.num_workers,
            collate_fn=collate,
        )

    def eval_batch(self, which: str, user_ids: list[str]) -> dict[str, torch.Tensor]:
        """The ``which`` pass's batch for these users (original ids), as its loader builds it;
        a user without truth rows gets an empty ``truth``."""
        collate = self._eval_collate(which)
        collate.users = [self.user_index[u] for u in user_ids]
        return collate(list(range(len(user_ids))))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class _EvalCollate:
    """Builds eval batches: user ids/tokens, dense truth and seen masks [B, N]."""

    def __init__(self, dm: RecData, users: list[int], truth: dict, seen: dict) -> None:
        self.dm, self.users, self.truth, self.seen = dm, users, truth, seen

    def __call__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        n = len(self.dm.catalogue)
        users = torch.as_tensor([self.users[r] for r in rows])
        truth = torch.zeros(len(rows), n, dtype=torch.bool)
        seen = torch.zeros(len(rows), n, dtype=torch.bool)
        for b, u in enumerate(users.tolist()):
            if u in self.truth:
                truth[b, self.truth[u]] = True
            if u in self.seen:
                seen[b, self.seen[u]] = True
        u_ids, u_mask = self.dm.user_tokens.batch(users)
        hist, hist_mask = self.dm.history.batch(users)
        return {
            "user_idx": users,
            "user_text_idx": users,  # the full-history text: nothing to hide at evaluation
            "truth": truth,
            "seen": seen,
            "user_input_ids": u_ids,
            "user_attention_mask": u_mask,
            "history_idx": hist,
            "history_mask": hist_mask,
        }


def _grouped(df: pd.DataFrame, users: dict, items: dict) -> dict[int, torch.Tensor]:
    u = df["user_id"].map(users).to_numpy(np.int64)
    i = df["item_id"].map(items).to_numpy(np.int64)
    order = np.argsort(u, kind="stable")
    u, i = u[order], i[order]
    cuts = np.flatnonzero(np.diff(u)) + 1
    return {
        int(g[0]): torch.from_numpy(it)
        for g, it in zip(np.split(u, cuts), np.split(i, cuts), strict=True)
        if len(g)
    }


def split_fingerprint(split: Split) -> str:
    """Content fingerprint of a split (which interactions went where)."""
    parts = []
    for df in (split.train, split.valid, split.test):
        h = pd.util.hash_pandas_object(df[["user_id", "item_id"]], index=False)
        parts.append(int(h.sum()) & ((1 << 63) - 1))
    return fingerprint(split.method, parts)


def __getattr__(name: str) -> Any:
    """``RecDataModule`` on first use (PEP 562): importing Lightning costs seconds."""
    if name == "RecDataModule":
        from divrec.data.lightning_data import RecDataModule

        return RecDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
