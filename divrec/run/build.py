"""Construction of a run's parts from a composed config: data module, model, caches.

``build_datamodule`` and ``build_module`` are what ``train`` and ``divrec.serve.recommend`` share;
``reference_embeddings`` is the frozen encoder's item space used by re-rankers and ILD. With
``lightning=False`` (a closed-form baseline's run, :mod:`divrec.run.closed_form`) both build
the same objects without Lightning's classes, so Lightning is never imported.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from divrec.errors import ConfigError

if TYPE_CHECKING:  # Lightning and the two-tower's libraries load when a run needs them
    from divrec.data.datamodule import RecData
    from divrec.evaluation.ranking import RankingCore
    from divrec.models.module import RecModule

log = logging.getLogger(__name__)


LIGHTNING_DATA = "divrec.data.datamodule.RecDataModule"  # data._target_ of every source


def build_datamodule(cfg: DictConfig, lightning: bool = True) -> RecData:
    """Instantiate ``cfg.data`` into a set-up ``RecDataModule`` (``lightning=False``: the same
    data as a plain ``RecData``, for the default ``data._target_``)."""
    plain = not lightning and cfg.data.get("_target_") == LIGHTNING_DATA
    target = {"_target_": "divrec.data.datamodule.RecData"} if plain else {}
    dm: RecData = instantiate(cfg.data, _convert_="all", **target)
    dm.prepare_data()
    dm.setup()
    if dm.categories_from == "clusters":
        assign_clusters(cfg, dm)
    return dm


def assign_clusters(cfg: DictConfig, dm: RecData) -> None:
    """``data.categories_from=clusters``: k-means over the reference item vectors
    (:mod:`divrec.data.clusters`) becomes the catalogue's categories, labels cached."""
    from divrec.data.clusters import cluster_key, cluster_names, kmeans_labels, one_hot

    cache_cfg = OmegaConf.to_container(cfg.model.get("cache") or {}, resolve=True)
    ref = reference_embeddings(cfg, dm, cache_cfg)
    k, seed = dm.n_clusters, dm.cluster_seed
    labels, hit = _cache(cfg).get_or_compute(
        cluster_key(ref, k, seed), lambda: kmeans_labels(ref, k, seed)
    )
    labels = labels.long()
    dm.set_categories(cluster_names(labels, dm.catalogue.titles, k), one_hot(labels, k))
    sizes = torch.bincount(labels, minlength=k)
    dm.stats["categories_cluster_sizes"] = f"{int(sizes.min())}-{int(sizes.max())}"
    log.info(
        "categories: %d clusters of the item text vectors (%s), items per cluster %d-%d",
        k,
        "cached" if hit else "computed",
        int(sizes.min()),
        int(sizes.max()),
    )


def build_module(cfg: DictConfig, dm: RecData, lightning: bool = True) -> RankingCore:
    """The LightningModule for ``cfg.model`` (two-tower or baseline), attached to ``dm``;
    ``lightning=False``: a baseline as a plain :class:`~divrec.baselines.core.BaselineCore`."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    kind = model_cfg.pop("kind", "two_tower")
    cache_cfg = model_cfg.pop("cache", {}) or {}
    evaluation = OmegaConf.to_container(cfg.eval, resolve=True)
    rerank_cfg = OmegaConf.to_container(cfg.rerank, resolve=True)
    sizes = {"n_items": len(dm.catalogue), "n_users": len(dm.user_ids)}
    if kind == "baseline":
        if lightning:
            from divrec.baselines.module import BaselineModule as cls
        else:
            from divrec.baselines.core import BaselineCore as cls

        module = cls(
            model_cfg["name"],
            **sizes,
            options=model_cfg.get("options"),
            evaluation=evaluation,
            rerank_cfg=rerank_cfg,
        )
        if module.baseline.needs_run:  # fusion: its parts are checked against this run
            module.baseline.bind_run(dm)
        text = module.baseline.needs_item_vectors  # e.g. EASE's text prior
        ref = reference_embeddings(cfg, dm, cache_cfg) if text or _needs_reference(cfg) else None
        module.attach(dm, ref)
        return module
    if kind != "two_tower":
        raise ConfigError(f"model.kind: '{kind}' unknown; use two_tower or baseline")
    from divrec.models.module import RecModule

    module = RecModule(
        model={**model_cfg, **sizes},
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        evaluation=evaluation,
        rerank_cfg=rerank_cfg,
    )
    if dm.length_bucketing is None:  # auto: bucket only when texts go through the encoder
        dm.length_bucketing = 0 if module.net.frozen else 50
    item_base = user_base = ref = None
    if module.net.frozen:
        item_base, user_base = frozen_bases(module, dm, cfg, cache_cfg)
        if module.net.item_encoder.pooling == "mean":
            ref = item_base
    if ref is None and _needs_reference(cfg):
        ref = reference_embeddings(cfg, dm, cache_cfg)
    if module.net.image_fusion is not None:
        module.net.attach_images(*image_vectors(cfg, dm, model_cfg["image"]))
    module.attach(dm, item_base, user_base, ref)
    return module


def image_vectors(cfg: DictConfig, dm: RecData, image_cfg: dict):
    """Frozen image vectors of the catalogue ``[N, D]`` and its has-image mask ``[N]``: URLs
    fetched once, vectors from the embedding cache (``model.image``, divrec.data.images)."""
    from divrec.data.images import local_image_files, warn_missing
    from divrec.models.image_encoder import cached_image_vectors

    t0 = time.perf_counter()
    files, missing = local_image_files(dm.catalogue.images, dm.cache_dir)
    vectors, has, hit = cached_image_vectors(
        _cache(cfg),
        str(image_cfg["encoder"]),
        files,
        batch_size=int(image_cfg.get("batch_size", 64)),
        device=_device(),
    )
    unreadable = sum(1 for f, h in zip(files, has.tolist(), strict=True) if f is not None and not h)
    if unreadable:
        missing["unreadable"] += unreadable
    columns = list(dm.dataset.items.columns)
    warn_missing(missing, len(files), dm.images_cfg.get("column"), columns)
    dm.stats["images/with_image"] = int(has.sum())
    dm.stats["cache/images_hit"] = bool(hit)
    log.info(
        "image vectors of %d/%d items %s in %.1f s",
        int(has.sum()),
        len(files),
        "reused from cache" if hit else "computed",
        time.perf_counter() - t0,
    )
    return vectors, has


def _needs_reference(cfg: DictConfig) -> bool:
    """MMR/DPP (the run's or a ``rerank_sweep.names`` entry) re-rank in the reference space;
    ``ild_emb`` measures there when ``eval.diversity_space`` is ``reference`` (the default)."""
    names = {cfg.rerank.get("name", "none"), *((cfg.get("rerank_sweep") or {}).get("names") or [])}
    in_metric = cfg.eval.get("diversity_space", "reference") == "reference"
    return bool(names & {"mmr", "dpp"}) or (in_metric and "ild_emb" in cfg.eval.metrics)


def _cache(cfg: DictConfig):
    from divrec.models.embed_cache import EmbeddingCache

    return EmbeddingCache(Path(cfg.paths.cache_dir) / "embeddings")


def reference_embeddings(cfg: DictConfig, dm: RecData, cache_cfg: dict) -> torch.Tensor:
    """The frozen pretrained encoder's mean-pooled item vectors [N, H] (the shared item space
    of re-rankers and ``ild_emb``), from the embedding cache."""
    from divrec.models.embed_cache import cached_frozen_mean_embeddings, resolve_bf16
    from divrec.models.fill_plan import fill_plan

    enc_cfg = cfg.model.encoder
    ref, _ = cached_frozen_mean_embeddings(  # the backbone loads only on a cache miss
        _cache(cfg),
        enc_cfg.pretrained,
        dm.item_tokens.input_ids,
        dm.item_tokens.attention_mask,
        name="items",
        batch_size=int(cache_cfg.get("batch_size", 128)),
        device=_device(),
        bf16=resolve_bf16(cache_cfg.get("bf16", "auto"), _device()),
        trust_remote_code=bool(enc_cfg.get("trust_remote_code", False)),
        plan=fill_plan(cache_cfg),
    )
    return ref


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def frozen_bases(module: RecModule, dm: RecData, cfg: DictConfig, cache_cfg: dict):
    """Pooled backbone vectors for all items [N, H] (and user texts [(F + 1) U, H]), from the
    on-disk cache. User texts are cached in two files: the full-history texts (rows [0, U),
    what evaluation reads; the same file as a cache made before fold variants) and the
    training variants (rows [U, (F + 1) U)), each cut to its own longest text."""
    from divrec.models.embed_cache import cached_pooled_embeddings, resolve_bf16
    from divrec.models.fill_plan import fill_plan

    cache = _cache(cfg)
    plan = fill_plan(cache_cfg)  # model.cache.devices > 1: a sharded Lightning predict
    device = _device()
    bf16 = resolve_bf16(cache_cfg.get("bf16", "auto"), device)
    bs = int(cache_cfg.get("batch_size", 128))
    t0 = time.perf_counter()

    def embed(encoder, tokens, name: str, rows: torch.Tensor | None = None):
        ids, mask = (
            (tokens.input_ids, tokens.attention_mask) if rows is None else tokens.batch(rows)
        )
        return cached_pooled_embeddings(
            cache,
            encoder,
            ids,
            mask,
            name=name,
            batch_size=bs,
            device=device,
            bf16=bf16,
            plan=plan,
        )

    item_base, hit_i = embed(module.net.item_encoder, dm.item_tokens, "items")
    user_base, hit_u = None, True
    if module.net.user_tower == "text":
        n_users, n_texts = len(dm.user_ids), len(dm.user_texts)
        blocks = [("users", torch.arange(n_users)), ("users-train", torch.arange(n_users, n_texts))]
        parts = [embed(module.net.user_encoder, dm.user_tokens, n, r) for n, r in blocks]
        user_base = torch.cat([p for p, _ in parts])
        hit_u = all(h for _, h in parts)
    dt = time.perf_counter() - t0
    dm.stats["cache/embeddings_hit"] = bool(hit_i and hit_u)
    dm.stats["cache/embeddings_seconds"] = round(dt, 2)
    log.info(
        "frozen embeddings %s in %.1f s", "reused from cache" if hit_i and hit_u else "computed", dt
    )
    return item_base, user_base


def precision(cfg: DictConfig) -> Any:
    if cfg.trainer.get("precision") is not None:
        return cfg.trainer.precision
    gpu = cfg.trainer.get("accelerator") in ("gpu", "cuda") or (
        cfg.trainer.get("accelerator") == "auto" and torch.cuda.is_available()
    )
    return "bf16-mixed" if gpu else "32-true"
