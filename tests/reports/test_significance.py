"""Paired significance: statistics vs scipy / hand-computed values, and --compare end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from divrec.errors import DataError
from divrec.reports.cli import main
from divrec.reports.significance import compare_runs, holm, paired_tests, per_user_metrics

A = np.array([0.10, 0.40, 0.35, 0.80, 0.20, 0.55, 0.60, 0.05])
B = np.array([0.30, 0.45, 0.30, 0.95, 0.50, 0.70, 0.90, 0.00])


def test_holm_matches_hand_computed_example():
    # p sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06 (running max), 0.5*1=0.5
    assert holm(np.array([0.03, 0.5, 0.01, 0.02])) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm(np.array([0.4, 0.3])) == pytest.approx([0.6, 0.6])  # 0.3*2, max(0.6, 0.4)
    assert holm(np.array([0.9, 0.8, 0.7])) == pytest.approx([1.0, 1.0, 1.0])  # capped


def test_paired_tests_match_scipy_and_hand_formulas():
    r = paired_tests(A, B)
    d = B - A
    assert r["p_t"] == pytest.approx(stats.ttest_rel(B, A).pvalue)
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
    # d = .2, .05, -.05, .15, .3, .15, .3, -.05: sum 1.05 over 8 users
    assert r["diff"] == pytest.approx(0.13125)
    sd = np.sqrt(((d - 0.13125) ** 2).sum() / 7)
    assert r["d_z"] == pytest.approx(0.13125 / sd)
    half = stats.t.ppf(0.975, 7) * sd / np.sqrt(8)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.13125 - half, 0.13125 + half))
    # t statistic identity: t = d_z * sqrt(n)
    t = r["d_z"] * np.sqrt(8)
    assert r["p_t"] == pytest.approx(2 * stats.t.sf(abs(t), 7))


def test_identical_runs_give_p_one():
    r = paired_tests(A, A)
    assert r["diff"] == 0 and r["p_t"] == 1.0 and r["p_wilcoxon"] == 1.0


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model_dir, shared_cache) -> tuple[Path, Path]:
    """Two tiny real runs (pop and ease) on the same shop_sim split."""
    from hydra import compose, initialize_config_dir

    from divrec.run.train import train
    from tests.conftest import ROOT, TINY_OVERRIDES, TWO_TOWER_KEYS

    root = tmp_path_factory.mktemp("sig")
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(TWO_TOWER_KEYS)]
    out = []
    for model in ("pop", "ease"):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                config_name="train",
                overrides=[
                    *tiny,
                    f"model={model}",
                    f"model.encoder.pretrained={tiny_model_dir}",
                    f"paths.output_dir={root / model}",
                    f"paths.cache_dir={shared_cache}",
                ],
            )
        train(cfg)
        # .hydra/config.yaml is written by Hydra's app, not by compose: save it like a real run.
        from omegaconf import OmegaConf

        (root / model / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(cfg, root / model / ".hydra" / "config.yaml")
        out.append(root / model)
    return out[0], out[1]


def test_per_user_means_equal_metrics_json(two_runs):
    for run in two_runs:
        logged = json.loads((run / "metrics.json").read_text())
        pu = per_user_metrics(run, [10, 20])
        assert len(pu) == logged["test/n_users"]
        for name in ("ild_cat", "cat_coverage", "alpha_ndcg"):  # from the rebuilt catalogue
            assert f"test/{name}@10" in pu.columns and f"test/{name}@10" in logged
        for col in pu.columns:
            assert pu[col].mean() == pytest.approx(logged[col], rel=1e-5, abs=1e-7), col


def test_missing_catalogue_skips_category_metrics_with_one_warning(two_runs, tmp_path, caplog):
    a, b = two_runs
    c = tmp_path / "no_config"
    shutil.copytree(b, c)
    (c / ".hydra" / "config.yaml").unlink()  # the catalogue cannot be rebuilt
    with caplog.at_level("WARNING"):
        cmp = compare_runs(a, c, [10])
    warned = [r for r in caplog.records if "cannot rebuild the catalogue" in r.getMessage()]
    assert len(warned) == 1 and "ild_cat" in warned[0].getMessage()
    assert "test/ild_cat@10" not in set(cmp["metric"]) and "test/ndcg@10" in set(cmp["metric"])
    full = compare_runs(a, b, [10])
    assert "test/ild_cat@10" in set(full["metric"])
    assert len(full) == len(cmp) + 3  # Holm runs over every metric compared
    smallest = full["p_t"].min() * len(full)  # Holm's first step: p_(1) * m
    assert full["p_t_holm"].min() == pytest.approx(min(1.0, smallest))


def test_compare_cli_writes_tables(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["--compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    df = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert "test/ndcg@10" in set(df["metric"])
    assert df["p_t_holm"].between(0, 1).all() and (df["p_t_holm"] >= df["p_t"] - 1e-12).all()
    assert "| metric |" in (tmp_path / "cmp" / "compare.md").read_text()
    assert "compare.md" in capsys.readouterr().out


def test_compare_refuses_other_split_users_or_missing_file(two_runs, tmp_path, capsys):
    a, b = two_runs
    c = tmp_path / "c"
    shutil.copytree(b, c)
    test = pd.read_parquet(c / "split" / "test.parquet")
    test.iloc[1:].to_parquet(c / "split" / "test.parquet")
    with pytest.raises(DataError, match="same saved split"):
        compare_runs(a, c, [10])
    d = tmp_path / "d"
    shutil.copytree(b, d)
    recs = pd.read_parquet(d / "recommendations.parquet")
    recs[recs["user_id"] != recs["user_id"].iloc[0]].to_parquet(d / "recommendations.parquet")
    with pytest.raises(DataError, match="different users"):
        compare_runs(a, d, [10])
    (d / "recommendations.parquet").unlink()
    assert main(["--compare", str(a), str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recommendations.parquet: missing" in err[0]


def test_sweep_report_with_baseline(two_runs, tmp_path):
    sweep = tmp_path / "sweep"
    for run in two_runs:
        shutil.copytree(run, sweep / run.name)
    out = tmp_path / "rep"
    assert main([str(sweep), "--baseline", str(sweep / "pop"), "--out", str(out)]) == 0
    sig = pd.read_csv(out / "significance.csv")
    assert list(sig["run"]) == ["ease"]
    assert "test/ndcg@10 p_holm" in sig.columns
    # a category metric named in --metrics gets its paired test against the baseline too
    out2 = tmp_path / "rep2"
    shown = "test/ndcg@10,test/ild_cat@10,test/alpha_ndcg@10"
    args = [str(sweep), "--baseline", str(sweep / "pop"), "--out", str(out2), "--metrics", shown]
    assert main(args) == 0
    sig = pd.read_csv(out2 / "significance.csv").set_index("run")
    direct = compare_runs(sweep / "pop", sweep / "ease", [10]).set_index("metric")
    for m in ("test/ild_cat@10", "test/alpha_ndcg@10"):
        assert sig.loc["ease", f"{m} diff"] == pytest.approx(direct.loc[m, "diff"])
        assert sig.loc["ease", f"{m} p_holm"] == pytest.approx(direct.loc[m, "p_t_holm"])
