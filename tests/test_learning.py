"""Learning tests: training must move the model where its losses point.

Every other end-to-end test accepts any NDCG in [0, 1], so a model that learns nothing (or
learns backwards: a negated relevance loss) passes them. Here a tiny run is trained on fixed
small data and compared, in the same harness (same split, masking, metrics), with the same
seeded weights untrained (``train=false``) and with most-popular (``model=pop``); and a
diversity regulariser must lower its own term on held-out pairs relative to the same run
without it.

Thresholds are not one run's output: each comes from a distribution measured over 5 seeds,
recorded next to it with the command, and sits between the two sides with room on both.
"""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from divrec.run.build import build_datamodule, build_module
from divrec.run.train import train
from tests.conftest import ROOT, TINY_OVERRIDES, TWO_TOWER_KEYS

# TINY_OVERRIDES (shop_sim 300 items / 120 users / 3,000 rows, tiny BERT) trained for 3 full
# epochs, with the learned ID embeddings of the default hybrid.
LEARN = ["trainer.max_epochs=3", "trainer.limit_train_batches=null"]
TWO_TOWER = ["model.id_embeddings=true"]

# Measured 2026-12-01 (test/ndcg@10), each run = train(cfg) of TINY_OVERRIDES + LEARN +
# TWO_TOWER + seed=s (exactly the `shop` fixture below; untrained: + train=false; pop: model=pop
# on the same split):
#   trained   seeds 1-5:     0.1582 0.1690 0.1302 0.1891 0.1971 (min 0.130, mean 0.169)
#   untrained seeds 1-5:     0.0364 0.0243 0.0295 0.0192 0.0208 (max 0.036, mean 0.026)
#   pop       seeds 1-5:     0.2335 0.2408 0.2117 0.2437 0.2558 (mean 0.238)
# The threshold 0.08 sits well under the trained minimum and over twice the untrained maximum;
# every seed's trained/untrained ratio is >= 4.3.
# Most-popular is NOT beaten on this 120-user shop in 3 epochs (pop 0.238; EASE 0.234/0.252/0.211
# on seeds 1-3 is no better: too few interactions for co-occurrence), so the margin over
# most-popular is asserted on the larger shop below (and by .ci/e2e on its real-MiniLM run).
TRAINED_MIN = 0.08

# A shop with 400 users and 12,000 interactions (300 items), the history tower + IDs trained
# for 6 epochs. Measured 2026-12-02 (test/ndcg@10, seeds 1-5, the `shop_vs_pop` fixture's
# command with seed=s; pop: model=pop on the same split; untrained: + train=false):
#   trained   0.3042 0.3323 0.3063 0.3011 0.3036 (min 0.301)
#   pop       0.2688 0.2592 0.2586 0.2575 0.2576 (max 0.269)
#   untrained 0.0433 0.0686 0.0403 0.0468 0.0427 (max 0.069)
# Per seed trained/pop is 1.13, 1.28, 1.18, 1.17, 1.18 (min 1.13): the test asks for 1.06, half
# the smallest measured margin, and for 3x the untrained model (measured min 4.8x).
LARGER_SHOP = ["data.n_users=400", "data.n_interactions=12000"]
HISTORY_ID = ["model.user_tower=history", "model.id_embeddings=true", "trainer.max_epochs=6"]
POP_RATIO = 1.06
UNTRAINED_RATIO = 3.0


def _run(tmp_path_factory, tiny_model_dir, cache, *overrides: str) -> dict:
    """metrics.json of one tiny run: TINY_OVERRIDES + ``overrides``."""
    out = tmp_path_factory.mktemp("learn")
    baseline = any(o.startswith("model=") for o in overrides)
    tiny = [o for o in TINY_OVERRIDES if not (baseline and o.startswith(TWO_TOWER_KEYS))]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            config_name="train",
            overrides=[
                *tiny,
                f"model.encoder.pretrained={tiny_model_dir}",
                f"paths.output_dir={out}",
                f"paths.cache_dir={cache}",
                *overrides,
            ],
        )
    train(cfg)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def shop(tmp_path_factory, tiny_model_dir, shared_cache):
    """The trained run and its untrained twin (seed 1, one of the measured five)."""

    def run(*o: str) -> dict:
        return _run(tmp_path_factory, tiny_model_dir, shared_cache, *LEARN, "seed=1", *o)

    return {"trained": run(*TWO_TOWER), "untrained": run(*TWO_TOWER, "train=false")}


@pytest.fixture(scope="module")
def shop_vs_pop(tmp_path_factory, tiny_model_dir, shared_cache):
    """Seed 1 (one of the measured five) on the larger shop: trained, untrained, most-popular."""

    def run(*o: str) -> float:
        m = _run(tmp_path_factory, tiny_model_dir, shared_cache, *LEARN, *LARGER_SHOP, "seed=1", *o)
        return m["test/ndcg@10"]

    return {
        "trained": run(*HISTORY_ID),
        "untrained": run(*HISTORY_ID, "train=false"),
        "pop": run("model=pop"),
    }


def test_training_beats_most_popular_and_the_untrained_model(shop_vs_pop):
    r = shop_vs_pop
    assert r["trained"] >= POP_RATIO * r["pop"], r
    assert r["trained"] >= UNTRAINED_RATIO * r["untrained"], r


def test_training_beats_the_untrained_model(shop):
    trained, untrained = shop["trained"]["test/ndcg@10"], shop["untrained"]["test/ndcg@10"]
    assert untrained < TRAINED_MIN, f"untrained {untrained:.4f}: the threshold tests nothing"
    assert trained >= TRAINED_MIN, f"trained test/ndcg@10 {trained:.4f} < {TRAINED_MIN}"
    assert trained >= 2.0 * untrained, (trained, untrained)


# ----------------------------------------------------------------------- diversity regulariser
DIVERSITY = ["loss/diversity=category_entropy", "trainer.max_steps=30", "trainer.max_epochs=5"]
DIV_WEIGHT = 1.0
DIV_MARGIN = 0.003  # under half the smallest measured difference (0.0069)


def _term_after_training(compose, weight: float, seed: int) -> float:
    """The regulariser's value on 128 fixed training pairs, scored with the served (uncorrected)
    scores, after 30 steps from the same seeded start with ``loss.diversity_weight=weight``."""
    cfg = compose(*DIVERSITY, *TWO_TOWER, f"loss.diversity_weight={weight}", f"seed={seed}")
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=30,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    module.eval()
    batch = dm.collate_train(list(range(128)))
    with torch.no_grad():
        u = module.net.user_vectors(batch)
        v = module.net.item_vectors(batch["item_idx"])
        logits = u @ v.T / module.net.temperature
        return float(module.diversity(logits, v, module.categories[batch["item_idx"]]))


def test_diversity_regulariser_lowers_its_term(compose):
    """loss = relevance + λ·term is minimised: with λ > 0 the term must end lower than with
    λ = 0 from the same start (a flipped sign raises it). Measured (seeds 1-5, same command as
    this test, term after 30 steps at λ = 0 vs λ = 1; more negative = more diverse):
    seed 1: -3.2708 vs -3.2836, 2: -3.3060 vs -3.3187, 3: -3.2737 vs -3.2806,
    4: -3.3295 vs -3.3410, 5: -3.3010 vs -3.3126 (difference min 0.0069, mean 0.0111)."""
    plain = _term_after_training(compose, 0.0, seed=4)
    regularised = _term_after_training(compose, DIV_WEIGHT, seed=4)
    assert regularised < plain - DIV_MARGIN, (regularised, plain)
