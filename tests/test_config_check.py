"""Start-up config validation: every error class names the key's full dotted path."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from divrec.config import schema as cs
from divrec.config.check import validate_against_data, validate_config
from divrec.errors import ConfigError

from .conftest import ROOT

CONF = ROOT / "conf"


def _plain(*overrides: str):
    """The shipped config with only ``overrides`` (no tiny-run keys: they are shop_sim's)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=["paths.output_dir=/tmp/x", *overrides])


def _error(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    msg = str(info.value)
    assert "\n" not in msg, "errors must be one line"
    return msg


# (overrides, dotted path the message must name, a word of the explanation)
BAD = [
    # unknown keys ('+' appends; a plain override of a missing key is refused by Hydra itself)
    (["+model.encoder.fintune=full"], "model.encoder.fintune", "did you mean 'finetune'"),
    (["+loss.diversty_weight=1.0"], "loss.diversty_weight", "did you mean 'diversity_weight'"),
    (["rerank=mmr", "+rerank.diversty=0.2"], "rerank.diversty", "did you mean 'diversity'"),
    (["+model.head_hiden=8"], "model.head_hiden", "unknown key"),
    (["+optim.lr_decay=0.1"], "optim.lr_decay", "unknown key"),
    (["+eval.k=[5]"], "eval.k", "unknown key"),
    (["+data.batchsize=8"], "data.batchsize", "did you mean 'batch_size'"),
    (["+data.text.item_templat=x"], "data.text.item_templat", "did you mean 'item_template'"),
    (["+data.n_itemz=8"], "data.n_itemz", "did you mean 'n_items'"),  # shop_sim loader key
    (["loss/diversity=ils", "+loss.diversity.top_m=3"], "loss.diversity.top_m", "unknown key"),
    (["model=bpr", "+model.options.dimm=8"], "model.options.dimm", "did you mean 'dim'"),
    (["model=ease", "+model.encoder.finetune=full"], "model.encoder.finetune", "unknown key"),
    # wrong types
    (["optim.lr=abc"], "optim.lr", "expected a number"),
    (["data.batch_size=1.5"], "data.batch_size", "expected an integer"),
    (["data.n_items=many"], "data.n_items", "expected an integer"),
    (["model.share_encoder=maybe"], "model.share_encoder", "true/false"),
    (["data.split.ratios=[a,b,c]"], "data.split.ratios", "a list of numbers"),
    (["loss/diversity=dpp", "loss.diversity.top_m=2.5"], "loss.diversity.top_m", "integer"),
    # out of range
    (["loss.diversity_weight=-0.5"], "loss.diversity_weight", ">= 0"),
    (["rerank=mmr", "rerank.diversity=1.5"], "rerank.diversity", "<= 1"),
    (["rerank=xquad", "rerank.diversity=-0.1"], "rerank.diversity", ">= 0"),
    (["eval.ks=[10,101]"], "eval.ks[1]", "<= 100"),
    (["eval.ks=[0,10]"], "eval.ks[0]", ">= 1"),
    (["eval.ks=[]"], "eval.ks", "at least 1"),
    (["data.split.ratios=[0.5,0.2,0.2]"], "data.split.ratios", "summing to 1"),
    (["data.split.ratios=[0.5,0.5]"], "data.split.ratios", "exactly 3"),
    (["data.split.ratios=[1.1,-0.1,0.0]"], "data.split.ratios[1]", ">= 0"),
    (["data.batch_size=0"], "data.batch_size", ">= 1"),
    (["data.eval_batch_size=-3"], "data.eval_batch_size", ">= 1"),
    (["model.cache.batch_size=0"], "model.cache.batch_size", ">= 1"),
    (["model.cache.bf16=fast"], "model.cache.bf16", "choose from"),
    (["model.temperature=0"], "model.temperature", "> 0"),
    (["model.temperature=-1.0"], "model.temperature", "> 0"),
    (["optim.lr=0"], "optim.lr", "> 0"),
    (["rerank=mmr", "rerank.candidates=15"], "rerank.candidates", "max(eval.ks)=20"),
    (["rerank=plackett_luce", "rerank.temperature=0"], "rerank.temperature", "> 0"),
    (["rerank=plackett_luce", "rerank.samples=0"], "rerank.samples", ">= 1"),
    (["loss.negatives=hard"], "loss.negatives", "choose from"),
    (["loss.n_negatives=0"], "loss.n_negatives", ">= 1"),
    (["loss.negative_alpha=-1"], "loss.negative_alpha", ">= 0"),
    (["eval.ee_patience=1.0"], "eval.ee_patience", "< 1"),
    # unknown names
    (["model.encoder.finetune=ful"], "model.encoder.finetune", "did you mean 'full'"),
    (["model.encoder.pooling=max"], "model.encoder.pooling", "choose from"),
    (["model.user_tower=hist"], "model.user_tower", "did you mean 'history'"),
    (["model.pooling.name=sum"], "model.pooling.name", "choose from"),
    (["+model.pooling.temprature=0.1"], "model.pooling.temprature", "unknown key"),
    (["data.split.method=rand"], "data.split.method", "did you mean 'random'"),
    (["rerank.name=mmmr"], "rerank.name", "did you mean 'mmr'"),
    (["loss.relevance=bce"], "loss.relevance", "choose from"),
    (["loss.diversity.name=entropy"], "loss.diversity.name", "choose from"),
    (["eval.metrics=[ndcg,ndgc]"], "eval.metrics[1]", "did you mean 'ndcg'"),
    (["optim.schedule=cosin"], "optim.schedule", "did you mean 'cosine'"),
    (["data.preprocess.dedup=last"], "data.preprocess.dedup", "choose from"),
    (["model.kind=gnn"], "model.kind", "choose from"),
    (["model=bpr", "model.name=bprr"], "model.name", "did you mean 'bpr'"),
    (["model/cf=user_based", "+model.cf.kk=3"], "model.cf.kk", "did you mean 'k'"),
    (["model/cf=hybrid", "model.cf.weights.two_tower=-1"], "model.cf.weights.two_tower", ">= 0"),
    # the trainer group, checked against Lightning before any data loads
    (["trainer.precision=bogus"], "trainer.precision", "choose one of"),
    (["trainer.max_epochs=-5"], "trainer.max_epochs", ">= -1"),
    (["trainer.accelerator=tpuu"], "trainer.accelerator", "unknown"),
    (["+trainer.max_epoch=3"], "trainer.max_epoch", "did you mean 'max_epochs'"),
    (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches", "share in [0, 1]"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val", ">= 0"),
    (["trainer.devices=two"], "trainer.devices", "a count"),
]


@pytest.mark.parametrize(("overrides", "path", "word"), BAD, ids=[b[1] for b in BAD])
def test_bad_config_names_the_key(compose, overrides, path, word):
    msg = _error(compose(*overrides))
    assert msg.startswith(f"{path}:"), msg
    assert word in msg, msg


def test_all_problems_in_one_line(compose):
    msg = _error(compose("optim.lr=abc", "+loss.diversty_weight=1", "data.batch_size=0"))
    assert msg.startswith("3 config problems:"), msg
    for path in ("optim.lr:", "loss.diversty_weight:", "data.batch_size:"):
        assert path in msg


def test_missing_required_value_is_reported():
    msg = _error(_plain("data=recbole"))
    assert "data.path: required" in msg and "data.dataset: required" in msg


def test_tiny_test_config_is_valid(compose):
    validate_config(compose())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


# Values for the ``???`` keys of sources that read user files (paths are not opened here).
REQUIRED = {
    "csv": ["data.path=/nowhere"],
    "recbole": ["data.path=/nowhere", "data.dataset=ml-100k"],
    "amazon": ["data.reviews=/nowhere/reviews.jsonl"],
    "transactions": ["data.path=/nowhere/lines.csv"],
}
OPTIONS = (
    [("data", o, REQUIRED.get(o, [])) for o in _options("data")]
    + [("model", o, []) for o in _options("model")]
    + [("rerank", o, []) for o in _options("rerank")]
    + [("loss", o, []) for o in _options("loss")]
    + [("loss/diversity", o, []) for o in _options("loss/diversity")]
    # groups outside the defaults list are appended with '+'
    + [("model/pooling", o, ["model.user_tower=history"]) for o in _options("model/pooling")]
    + [("model/cf", o, ["model.user_tower=history"]) for o in _options("model/cf")]
)


def test_every_shipped_option_is_enumerated():
    # guards the glob above: these are the options the README documents
    assert {o for g, o, _ in OPTIONS if g == "data"} >= {"movielens", "shop_sim", "csv", "amazon"}
    assert {o for g, o, _ in OPTIONS if g == "model"} >= {"two_tower", "pop", "ease", "bpr"}
    assert len([1 for g, _, _ in OPTIONS if g == "loss/diversity"]) == 4
    assert {o for g, o, _ in OPTIONS if g == "model/cf"} >= {"two_tower", "hybrid"}


@pytest.mark.parametrize("layout", ["2018", "2023", "auto"])
def test_amazon_layout_as_the_yaml_lists_it_is_valid(layout):
    """``data.layout=2018`` reaches the loader as an int: it must not be "expected a string"."""
    validate_config(_plain("data=amazon", f"data.layout={layout}", "data.reviews=r.json"))


@pytest.mark.parametrize("version", ["2018", "2023", "null"])
def test_amazon_category_layout_is_valid(version):
    """``data.category=All_Beauty data.version=2018``: the folder layout's keys, version an int."""
    validate_config(_plain("data=amazon", "data.category=All_Beauty", f"data.version={version}"))


@pytest.mark.parametrize(("group", "option", "extra"), OPTIONS, ids=lambda v: str(v))
def test_shipped_option_is_valid(group, option, extra):
    validate_config(_plain(f"{group}={option}", *extra))


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_shipped_experiment_is_valid(experiment):
    validate_config(_plain(f"+experiment={experiment}"))


def test_default_config_is_valid():
    validate_config(_plain())


def test_validate_against_data():
    cfg = _plain("eval.ks=[5,20]")
    validate_against_data(cfg, n_items=20)  # K = 20 = catalogue size is fine
    with pytest.raises(ConfigError, match=r"^eval\.ks: K=20 exceeds the catalogue \(19 items\)"):
        validate_against_data(cfg, n_items=19)
    # test lists are max(K, save_topk) = 100 long: 60 candidates cannot fill them
    rr = _plain("rerank=mmr", "rerank.candidates=60")
    validate_config(rr)  # 60 >= max(ks) = 20: fine before the catalogue size is known
    with pytest.raises(ConfigError, match=r"^rerank\.candidates: 60 < 100"):
        validate_against_data(rr, n_items=500)
    validate_against_data(rr, n_items=50)  # lists are capped at the 50 items


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (["rerank=xquad"], r"^rerank: xquad needs item categories and this catalogue has none"),
        (
            ["loss/diversity=category_entropy", "loss.diversity_weight=0.1"],
            r"^loss\.diversity: category_entropy needs item categories",
        ),
        (
            ["loss/diversity=ils", "loss.diversity.similarity=category", "loss.diversity_weight=1"],
            r"^loss\.diversity: ils needs item categories",
        ),
        (
            ["callbacks.early_stopping.monitor=val/ild_cat@10"],
            r"^callbacks\.early_stopping\.monitor: val/ild_cat@10 needs item categories",
        ),
    ],
)
def test_category_users_stop_without_categories(overrides, pattern):
    cfg = _plain(*overrides)
    validate_against_data(cfg, n_items=50)  # a catalogue with categories: fine
    with pytest.raises(ConfigError, match=pattern):
        validate_against_data(cfg, n_items=50, has_categories=False)


def test_unused_category_loss_is_fine_without_categories():
    cfg = _plain("loss/diversity=category_entropy", "loss.diversity_weight=0")
    validate_against_data(cfg, n_items=50, has_categories=False)


# ------------------------------------------------------------------ schema drift guards
def _params(fn) -> set[str]:
    return set(inspect.signature(fn).parameters) - {"self"}


def _names(schema) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)}


def test_schemas_match_the_code_they_check():
    from divrec.data.datamodule import RecDataModule
    from divrec.data.preprocess import preprocess
    from divrec.data.split import make_split
    from divrec.data.text import TextConfig
    from divrec.models.cf import COMPONENTS, CFScorer
    from divrec.models.encoder import LORA_DEFAULTS, TextEncoder
    from divrec.models.towers import TwoTower

    assert _names(cs.TwoTowerSchema) - {"kind", "cache", "cf"} <= _params(TwoTower)
    assert _names(cs.CFSchema) == _params(CFScorer)
    assert _names(cs.CFWeightsSchema) == set(COMPONENTS)
    assert _names(cs.EncoderSchema) <= _params(TextEncoder)
    assert _names(cs.LoraSchema) == set(LORA_DEFAULTS)
    assert _names(cs.DataSchema) - {"_target_"} <= _params(RecDataModule)
    assert _names(cs.PreprocessSchema) == _params(preprocess) - {"ds"}
    given = {"train_file", "valid_file", "test_file"}  # read by RecDataModule for method=given
    assert _names(cs.SplitSchema) == (_params(make_split) - {"interactions"}) | given
    assert _names(cs.TextSchema) == {f.name for f in dataclasses.fields(TextConfig)}


@pytest.mark.parametrize(
    ("yaml", "schema", "ignore"),
    [
        ("model/two_tower.yaml", cs.TwoTowerSchema, ("defaults",)),  # Hydra's own list
        ("loss/softmax.yaml", cs.LossSchema, ()),
        ("rerank/mmr.yaml", cs.RerankSchema, ("name",)),  # the schema's default name is none
        ("optim/adamw.yaml", cs.OptimSchema, ()),
        ("eval/default.yaml", cs.EvalSchema, ()),
        ("data/_base.yaml", cs.DataSchema, ()),
    ],
)
def test_schema_defaults_mirror_the_yaml(yaml, schema, ignore):
    """Every literal in the YAML equals the schema's documented default (same keys too)."""
    raw = OmegaConf.load(CONF / yaml)
    defaults = dataclasses.asdict(schema())

    def walk(node, ref: dict, path: str) -> None:
        for key in node:
            if key in ignore:
                continue
            assert key in ref, f"{path}{key} missing from {schema.__name__}"
            if OmegaConf.is_interpolation(node, key):
                continue
            if OmegaConf.is_dict(node[key]):
                walk(node[key], ref[key], f"{path}{key}.")
            else:
                want = node[key]
                want = OmegaConf.to_container(want) if OmegaConf.is_list(want) else want
                assert ref[key] == want, f"{path}{key}: schema {ref[key]!r} != yaml {want!r}"

    walk(raw, defaults, "")


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed", "32", "bf16"])
def test_lightning_precisions_are_accepted(compose, precision):
    validate_config(compose(f"trainer.precision={precision}"))


def test_gpu_accelerator_without_a_gpu_fails_before_data(compose, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    msg = _error(compose("trainer.accelerator=gpu"))
    assert msg.startswith("trainer.accelerator=gpu: no CUDA GPU"), msg
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    validate_config(compose("trainer.accelerator=gpu"))  # with a GPU the same config is fine


# ------------------------------------------------------------------ wired into train()
def test_train_rejects_unknown_key_before_loading_data(compose, monkeypatch):
    # NOTE: passes only once divrec.run.train.train calls validate_config(cfg) first thing
    # (``from divrec.config.check import validate_config``; ``validate_config(cfg)``).
    from divrec.run.train import train

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the config was validated")

    monkeypatch.setattr("divrec.data.sources.load_source", no_data)
    monkeypatch.setattr("divrec.data.datamodule.load_source", no_data)
    with pytest.raises(ConfigError, match=r"^loss\.diversty_weight: unknown key"):
        train(compose("+loss.diversty_weight=0.5"))


def test_pooling_options_follow_the_pooling(compose):
    validate_config(
        compose(
            "model.user_tower=history",
            "model.pooling.name=similarity",
            "+model.pooling.mode=softmax",
        )
    )
    msg = _error(compose("model.pooling.name=mean", "+model.pooling.mode=softmax"))
    assert msg.startswith("model.pooling.mode: unknown key"), msg


REPEAT_RUN = [
    "data=transactions",
    "data.path=/nowhere/lines.csv",
    "data.aggregate=invoice",
    "data.preprocess.dedup=none",
    "model=buy_again",
    "eval.mask_seen=false",
]


def _warnings(caplog, cfg) -> list[str]:
    caplog.clear()
    with caplog.at_level("WARNING", logger="divrec.config.check"):
        validate_config(cfg)
    return [r.getMessage() for r in caplog.records]


def test_repeat_purchase_settings_that_undo_each_other_warn(caplog):
    assert _warnings(caplog, _plain(*REPEAT_RUN)) == []  # the README's repeat-purchase run
    (dedup,) = _warnings(caplog, _plain(*REPEAT_RUN[:3], *REPEAT_RUN[4:]))  # dedup: latest
    assert dedup.startswith("data.aggregate=invoice keeps repeat purchases")
    assert "data.preprocess.dedup=latest" in dedup and dedup.endswith("dedup=none")
    (masked,) = _warnings(caplog, _plain(*REPEAT_RUN[:5]))  # eval.mask_seen: true
    assert masked.startswith("model=buy_again with eval.mask_seen=true")
    assert "ranks like model=pop" in masked
    assert len(_warnings(caplog, _plain(*REPEAT_RUN[:3], "model=buy_again"))) == 2
    assert _warnings(caplog, _plain("model=pop")) == []  # nothing repeat-related: silent


def test_bad_repeat_values_are_config_errors():
    assert "eval.mask_seen: expected true/false" in _error(_plain("eval.mask_seen=maybe"))
    msg = _error(_plain("eval.metrics=[ndcg_repeat,recall_neww]"))
    assert msg.startswith("eval.metrics[1]:") and "did you mean 'recall_new'" in msg
