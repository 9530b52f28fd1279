"""Dataclass schemas of the config groups checked at start-up (``divrec.config.check``).

One dataclass per group mirrors its YAML file (``conf/<group>/*.yaml``): field names are the
allowed keys, annotations the allowed types, defaults the YAML defaults, and ``metadata`` the
documentation and value rules read by the checker:

- ``doc``: what the key does;
- ``ge``/``gt``/``le``/``lt``: numeric bounds (applied to each element of a list);
- ``choices``: a zero-argument function returning the allowed values (taken from the module
  that consumes the key, so the schema never drifts from the code);
- ``min_len``/``length``: minimum/exact list length.

A schema with a ``params`` class attribute also accepts the keyword arguments of the callable
``params(node, parent)`` returns (a data source's loader, a diversity term, a baseline): those
keys are checked against its signature and type hints.

These schemas are only read by the checker; Hydra composes the YAML files as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

USER_TOWERS = ("text", "history")  # divrec.models.towers.TwoTower(user_tower=...)
LR_SCHEDULES = ("cosine", "linear", "constant")  # divrec.models.module.configure_optimizers
MODEL_KINDS = ("two_tower", "baseline")  # divrec.run.build.build_module


def opt(default: Any, doc: str, **rules: Any) -> Any:
    """A dataclass field with documentation and value rules (see module docstring)."""
    meta = {"doc": doc, **rules}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    if isinstance(default, type):  # nested schema
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------ allowed values
def _bf16_modes() -> Iterable[Any]:
    return ("auto", True, False)  # divrec.models.embed_cache.resolve_bf16


def _fill_strategies() -> Iterable[str]:
    from divrec.models.fill_plan import FILL_STRATEGIES

    return FILL_STRATEGIES


def _fill_accelerators() -> Iterable[str]:
    from divrec.models.fill_plan import FILL_ACCELERATORS

    return FILL_ACCELERATORS


def _cat_sources() -> Iterable[str]:
    from divrec.data.clusters import CATEGORY_SOURCES

    return CATEGORY_SOURCES


def _finetune_modes() -> Iterable[str]:
    from divrec.models.encoder import FINETUNE_MODES

    return FINETUNE_MODES


def _token_poolings() -> Iterable[str]:
    from divrec.models.encoder import POOLINGS

    return POOLINGS


def _history_poolings() -> Iterable[str]:
    from divrec.models.pooling import POOLINGS

    return POOLINGS


def _cf_variants() -> Iterable[str]:
    from divrec.models.cf import VARIANTS

    return VARIANTS


def _baselines() -> Iterable[str]:
    from divrec.baselines import BASELINES

    return BASELINES


def _relevance_losses() -> Iterable[str]:
    from divrec.losses import RELEVANCE_LOSSES

    return RELEVANCE_LOSSES


def _negatives() -> Iterable[str]:
    from divrec.losses.negatives import NEGATIVE_SAMPLERS

    return NEGATIVE_SAMPLERS


def _diversity_terms() -> Iterable[str]:
    from divrec.losses import DIVERSITY_TERMS

    return DIVERSITY_TERMS


def _diversity_scopes() -> Iterable[str]:
    from divrec.losses import DIVERSITY_SCOPES

    return DIVERSITY_SCOPES


def _rerankers() -> Iterable[str]:
    from divrec.rerank import RERANKERS

    return RERANKERS


def _diversity_spaces() -> Iterable[str]:
    from divrec.metrics.spaces import DIVERSITY_SPACES

    return DIVERSITY_SPACES


def _metric_names() -> Iterable[str]:
    from divrec.metrics import metric_names

    return metric_names()


def _split_methods() -> Iterable[str]:
    from divrec.data.split import SPLIT_METHODS

    return (*SPLIT_METHODS, "given")


def _dedup_modes() -> Iterable[str]:
    from divrec.data.preprocess import DEDUP_MODES

    return DEDUP_MODES


def _sources() -> Iterable[str]:
    from divrec.data.sources import SOURCES

    return SOURCES


# ------------------------------------------------------------------ model
@dataclass
class LoraSchema:
    """``model.encoder.lora``: peft LoRA settings (finetune=lora)."""

    r: int = opt(8, "LoRA rank", ge=1)
    alpha: float = opt(16, "LoRA scaling alpha", gt=0)
    dropout: float = opt(0.05, "dropout on the LoRA input", ge=0, lt=1)
    target_modules: list[str] = opt(
        ["auto"], "modules to adapt ([auto]: by architecture)", min_len=1
    )


@dataclass
class EncoderSchema:
    """``model.encoder`` of the two-tower model (``divrec.models.encoder.TextEncoder``)."""

    pretrained: str = opt("minilm", "HF checkpoint path; 'minilm' = the bundled MiniLM")
    pooling: str = opt("mean", "token pooling", choices=_token_poolings)
    finetune: str = opt("frozen", "which backbone weights train", choices=_finetune_modes)
    top_layers: int = opt(2, "trainable top layers (finetune=top_layers)", ge=1)
    lora: LoraSchema | None = opt(LoraSchema, "LoRA settings (finetune=lora)")
    trust_remote_code: bool = opt(False, "run a checkpoint's own code")
    gradient_checkpointing: bool = opt(False, "recompute activations to save memory")
    compile: bool = opt(False, "torch.compile the backbone (dynamic shapes)")


def _history_pooling_ctor(node: Any, parent: Any) -> tuple[Callable, tuple[str, ...]]:
    from divrec.models.pooling import POOLINGS

    return POOLINGS[str(node.name)], ("dim",)


@dataclass
class HistoryPoolingSchema:
    """``model.pooling``: history pooling of the ``history`` user tower (+ its options)."""

    params: ClassVar = staticmethod(_history_pooling_ctor)
    name: str = opt("mean", "pooling over the user's items", choices=_history_poolings)


@dataclass
class CacheSchema:
    """``model.cache``: filling the frozen-embedding cache."""

    batch_size: int = opt(128, "texts per encoding batch", ge=1)
    bf16: bool | str = opt(
        "auto", "bf16 autocast while encoding (auto: GPU or native-bf16 CPU)", choices=_bf16_modes
    )
    devices: int = opt(1, "processes filling a cache miss (1: this one; N: sharded predict)", ge=1)
    num_nodes: int = opt(1, "machines of a sharded fill (strategy=ddp under srun)", ge=1)
    strategy: str = opt(
        "ddp_spawn", "sharded fill: own processes or srun tasks", choices=_fill_strategies
    )
    accelerator: str = opt("auto", "devices of a sharded fill", choices=_fill_accelerators)


@dataclass
class CFWeightsSchema:
    """``model.cf.weights``: mixing weights of the hybrid (>= 0, one > 0)."""

    two_tower: float = opt(0.0, "weight of the two-tower cosine", ge=0)
    item_based: float = opt(0.0, "weight of the item-based score", ge=0)
    user_based: float = opt(0.0, "weight of the user-based score", ge=0)


@dataclass
class CFSchema:
    """``model.cf`` (conf/model/cf/*.yaml; ``divrec.models.cf.CFScorer``)."""

    name: str = opt("two_tower", "scoring rule", choices=_cf_variants)
    explain: int = opt(3, "history items named per recommendation (0: off)", ge=0)
    top_n: int | None = opt(None, "item_based: top-n similar items kept (null: all)", ge=1)
    k: int = opt(50, "user_based: neighbours per user", ge=1)
    weights: CFWeightsSchema | None = opt(CFWeightsSchema, "hybrid mixing weights")
    learn: bool = opt(False, "hybrid: learn the weights")


def _fusions() -> Iterable[str]:
    from divrec.models.fusion import FUSIONS

    return FUSIONS


@dataclass
class ImageSchema:
    """``model.image``: frozen image vectors fused with the item text vector."""

    encoder: str | None = opt(None, "local vision checkpoint folder (null: no images)")
    fusion: str = opt("concat", "how text and image vectors combine", choices=_fusions)
    batch_size: int = opt(64, "images per batch filling the image-vector cache", ge=1)


@dataclass
class TwoTowerSchema:
    """``model`` with ``kind: two_tower`` (conf/model/two_tower.yaml)."""

    kind: str = opt("two_tower", "model family", choices=lambda: MODEL_KINDS)
    user_tower: str = opt("history", "user tower input", choices=lambda: USER_TOWERS)
    share_encoder: bool = opt(True, "one encoder for users and items")
    head_hidden: int = opt(512, "hidden width of each residual head", ge=1)
    projection_dim: int | None = opt(None, "output size (null: encoder width)", ge=1)
    dropout: float = opt(0.1, "dropout inside the heads", ge=0, lt=1)
    id_embeddings: bool = opt(True, "add learned user/item ID embeddings")
    temperature: float = opt(0.05, "softmax temperature (initial value when learned)", gt=0)
    learn_temperature: bool = opt(True, "learn the temperature")
    encoder: EncoderSchema = opt(EncoderSchema, "text encoder")
    pooling: HistoryPoolingSchema = opt(HistoryPoolingSchema, "history pooling")
    cf: CFSchema | None = opt(CFSchema, "CF scoring variant")
    image: ImageSchema = opt(ImageSchema, "item images")
    cache: CacheSchema = opt(CacheSchema, "embedding cache")


@dataclass
class BaselineEncoderSchema:
    """``model.encoder`` of a baseline: only the shared item space of re-rankers/ild_emb."""

    pretrained: str = opt("minilm", "HF checkpoint path for the reference item vectors")
    trust_remote_code: bool = opt(False, "run a checkpoint's own code")


def _baseline_ctor(node: Any, parent: Any) -> tuple[Callable, tuple[str, ...]]:
    from divrec.baselines import BASELINES

    return BASELINES[str(parent.name)].__init__, ("self", "n_users", "n_items")


@dataclass
class BaselineOptionsSchema:
    """``model.options``: the baseline constructor's keyword arguments."""

    params: ClassVar = staticmethod(_baseline_ctor)


@dataclass
class BaselineSchema:
    """``model`` with ``kind: baseline`` (conf/model/{pop,itemknn,ease,bpr,lightgcn}.yaml)."""

    kind: str = opt("baseline", "model family", choices=lambda: MODEL_KINDS)
    name: str = opt("pop", "baseline name", choices=_baselines)
    options: BaselineOptionsSchema | None = opt(BaselineOptionsSchema, "constructor options")
    encoder: BaselineEncoderSchema = opt(BaselineEncoderSchema, "reference encoder")
    cache: CacheSchema = opt(CacheSchema, "embedding cache")


# ------------------------------------------------------------------ loss, rerank, optim, eval
def _diversity_ctor(node: Any, parent: Any) -> tuple[Callable, tuple[str, ...]]:
    from divrec.losses import DIVERSITY_TERMS

    return DIVERSITY_TERMS[str(node.name)], ()


@dataclass
class DiversitySchema:
    """``loss.diversity`` (conf/loss/diversity/*.yaml): ``name`` + the term's options."""

    params: ClassVar = staticmethod(_diversity_ctor)
    name: str = opt("none", "diversity regulariser", choices=_diversity_terms)
    scope: str = opt(
        "batch", "candidates: in-batch items | each user's top_c items", choices=_diversity_scopes
    )
    top_c: int = opt(50, "candidates per user with scope=topk", ge=2)


@dataclass
class LossSchema:
    """``loss`` (conf/loss/{softmax,bpr}.yaml)."""

    relevance: str = opt("softmax", "relevance loss", choices=_relevance_losses)
    logq: bool = opt(True, "logQ popularity correction of in-batch negatives")
    negatives: str = opt(
        "in_batch",
        "extra sampled negatives: in_batch (none) | uniform | popularity",
        choices=_negatives,
    )
    n_negatives: int = opt(256, "extra negatives per step (shared by all rows)", ge=1)
    negative_alpha: float = opt(0.75, "popularity negatives: q(i) ~ pop_i^alpha", ge=0)
    diversity_weight: float = opt(0.0, "lambda of the diversity term", ge=0)
    diversity: DiversitySchema = opt(DiversitySchema, "diversity term")


@dataclass
class RerankSchema:
    """``rerank`` (conf/rerank/*.yaml)."""

    name: str = opt("none", "post-hoc re-ranker", choices=_rerankers)
    diversity: float = opt(0.3, "trade-off: 0 = relevance order (DPP: a = (1-d)/(2d))", ge=0, le=1)
    candidates: int | None = opt(200, "re-rank each user's top-M (null: all)", ge=1)
    normalize: bool = opt(True, "min-max each user's top-M scores to [0, 1] before re-ranking")
    temperature: float = opt(0.1, "plackett_luce: softmax temperature T of exp(score / T)", gt=0)
    seed: int = opt(0, "plackett_luce: noise seed (${seed})")
    samples: int = opt(10, "plackett_luce: lists per user for the exposure metrics", ge=1)


@dataclass
class OptimSchema:
    """``optim`` (conf/optim/adamw.yaml)."""

    lr: float = opt(1.0e-3, "peak learning rate", gt=0)
    weight_decay: float = opt(0.01, "AdamW weight decay", ge=0)
    warmup_ratio: float = opt(0.05, "share of steps with linear warm-up", ge=0, le=1)
    schedule: str = opt("cosine", "decay after warm-up", choices=lambda: LR_SCHEDULES)


@dataclass
class EvalSchema:
    """``eval`` (conf/eval/default.yaml)."""

    ks: list[int] = opt([10, 20], "cut-offs K", ge=1, le=100, min_len=1)
    save_topk: int = opt(100, "list length in recommendations.parquet", ge=1)
    mask_seen: bool = opt(True, "never list a seen item (false: repeat purchases can be)")
    score_cache_mb: int = opt(512, "eval scores kept in memory for re-rank sweeps (0: off)", ge=0)
    metrics: list[str] = opt(
        ["recall", "ndcg", "mrr", "hit", "precision", "f1", "recall_cold", "ndcg_cold"]
        + ["ild_cat", "ild_emb", "cat_coverage", "item_coverage", "gini", "novelty"]
        + ["alpha_ndcg", "dist_coverage", "miscalibration"]
        + ["exposure_gini", "exposure_coverage", "ee_d", "ee_r", "ee_l"],
        "metric names",
        choices=_metric_names,
    )
    ee_patience: float = opt(0.5, "RBP patience gamma of the expected-exposure metrics", gt=0, lt=1)
    diversity_space: str = opt(
        "reference",
        "item space of ild_emb (reference = what MMR/DPP optimise)",
        choices=_diversity_spaces,
    )


# ------------------------------------------------------------------ data
@dataclass
class PreprocessSchema:
    """``data.preprocess`` (``divrec.data.preprocess.preprocess``)."""

    min_rating: float | None = opt(None, "keep ratings >= this (null: all)")
    dedup: str = opt("latest", "duplicate (user, item) rows", choices=_dedup_modes)
    kcore_user: int = opt(0, "k-core: min interactions per user", ge=0)
    kcore_item: int = opt(0, "k-core: min interactions per item", ge=0)
    min_user_history: int = opt(0, "drop users with fewer interactions", ge=0)
    drop_items_without_interactions: bool = opt(
        False, "catalogue = items with interactions after cleaning (amazon: true)"
    )


@dataclass
class SplitSchema:
    """``data.split`` (``divrec.data.split.make_split``); ratios must also sum to 1."""

    method: str = opt("random", "split method", choices=_split_methods)
    ratios: list[float] = opt([0.8, 0.1, 0.1], "train/valid/test shares", ge=0, length=3)
    seed: int = opt(42, "split seed (${seed})")
    cold_item_share: float = opt(0.1, "items held out of training", ge=0, le=1)
    train_file: str | None = opt(None, "given split: train file (CSV or NAME.train.inter)")
    valid_file: str | None = opt(None, "given split: valid file (optional)")
    test_file: str | None = opt(None, "given split: test file")


@dataclass
class TextSchema:
    """``data.text`` (``divrec.data.text.TextConfig``)."""

    item_template: str = opt("{title}. Categories: {categories}.", "item text template")
    user_template: str = opt("{profile}Recently liked: {history}.", "user text template")
    user_fields: list[str] | None = opt(None, "user columns in {profile} (null: all)")
    user_history_items: int = opt(10, "recent titles in the user text", ge=0)
    user_text_folds: int = opt(
        2, "history folds; a training pair's user text leaves out its own fold", ge=2
    )
    max_item_len: int = opt(32, "token limit for item texts", ge=1)
    max_user_len: int = opt(96, "token limit for user texts", ge=1)
    item_prefix: str = opt("", "instruction prepended to item texts")
    user_prefix: str = opt("", "instruction prepended to user texts")


@dataclass
class ImagesSchema:
    """``data.images`` (``divrec.data.images.image_refs``)."""

    column: str | None = opt("image", "item column with an image path or URL")
    root: str | None = opt(None, "folder relative image paths start from")


def _source_loader(node: Any, parent: Any) -> tuple[Callable, tuple[str, ...]]:
    from divrec.data.sources import get_loader

    return get_loader(str(node.source)), ()


@dataclass
class DataSchema:
    """``data`` (conf/data/_base.yaml); other keys are the source loader's arguments."""

    params: ClassVar = staticmethod(_source_loader)
    _target_: str = opt("divrec.data.datamodule.RecDataModule", "data module class")
    source: str = opt("shop_sim", "data source", choices=_sources)
    name: str | None = opt(None, "dataset name (null: the source)")
    tokenizer: str = opt("minilm", "tokenizer path (${model.encoder.pretrained})")
    cache_dir: str = opt(".cache/divrec", "token + embedding caches (${paths.cache_dir})")
    batch_size: int = opt(256, "training pairs per step", ge=1)
    eval_batch_size: int = opt(256, "users per evaluation batch", ge=1)
    num_workers: int = opt(0, "DataLoader workers", ge=0)
    history_len: int = opt(50, "recent items given to the history tower", ge=1)
    length_bucketing: int | None = opt(None, "batches per length-sorted bucket (null: auto)", ge=0)
    categories_from: str = opt("source", "item categories: source | clusters", choices=_cat_sources)
    n_clusters: int = opt(20, "categories_from=clusters: number of clusters", ge=2)
    cluster_seed: int = opt(0, "categories_from=clusters: k-means seed")
    preprocess: PreprocessSchema = opt(PreprocessSchema, "interaction cleaning")
    split: SplitSchema = opt(SplitSchema, "train/valid/test split")
    text: TextSchema = opt(TextSchema, "text templates and lengths")
    images: ImagesSchema = opt(ImagesSchema, "item images (path or URL column)")


GROUPS: dict[str, type] = {
    "loss": LossSchema,
    "rerank": RerankSchema,
    "optim": OptimSchema,
    "eval": EvalSchema,
    "data": DataSchema,
}
MODEL_SCHEMAS: dict[str, type] = {"two_tower": TwoTowerSchema, "baseline": BaselineSchema}


def signature_params(fn: Callable, skip: Iterable[str] = ()) -> dict[str, inspect.Parameter]:
    """Keyword parameters of ``fn`` (a function or class), without ``skip``."""
    params = inspect.signature(fn).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: p for k, p in params.items() if p.kind in kinds and k not in set(skip)}
