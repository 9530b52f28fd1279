"""``make bench-scale`` (experiments/scale): the smallest shop through every stage in its own
process, and the report's fits, extrapolation, targets and README merge on hand-made records."""

from __future__ import annotations

import json
import math

import pytest

from divrec.errors import ConfigError
from experiments.scale import report, run
from experiments.scale.sizes import ML25M, PRESETS, on_path, parse_size
from experiments.scale.stages import STAGES


def test_smallest_shop_reports_every_stage(tiny_model_dir, tmp_path):
    results, readme = tmp_path / "results", tmp_path / "README.md"
    args = ["--sizes", "3000/300/150", "--results", str(results), "--readme", str(readme)]
    args += ["--encoder", tiny_model_dir, "--work", str(tmp_path / "work")]
    run.main([*args, "--minilm-sample", "0"])  # MiniLM's load: see test_minilm_cost
    (path,) = results.glob("*.json")
    rec = json.loads(path.read_text())
    assert list(rec["stages"]) == list(STAGES)
    for name, st in rec["stages"].items():
        assert st["wall_s"] > 0 and st["cpu_s"] >= 0, name
        assert st["peak_rss_mb"] >= st["start_rss_mb"] > 0, name
    c = rec["counts"]
    assert (c["items"], c["users"], c["interactions"]) == (300, 150, 3000)
    assert c["train_steps"] == c["train_pairs"] // 256  # one epoch, drop_last at batch 256
    assert c["test_users"] > 0 and 0 <= rec["metrics"]["test/ndcg@10"] <= 1
    assert rec["process"]["max_rss_mb"] >= rec["peak_rss_mb"] - 1  # whole child (kB rounding)
    assert not (tmp_path / "work" / f"work-{rec['size']['name']}").exists()  # scratch removed
    text = readme.read_text()
    assert report.BEGIN in text and report.END in text and report.ANN in text
    assert "| evaluate |" in text and "3000-300-150" in text


def _record(n: int, seconds: dict, rss: dict, on_path: bool = True, items: int = 100) -> dict:
    """A results record with the given per-stage wall seconds and peak RSS (MB)."""
    stages = {
        s: {"wall_s": seconds[s], "cpu_s": seconds[s], "peak_rss_mb": rss[s], "start_rss_mb": 500}
        for s in STAGES
    }
    return {
        "size": {
            "name": f"n{n}",
            "n_interactions": n,
            "n_items": items,
            "n_users": 10,
            "on_path": on_path,
        },
        "stages": stages,
        "startup_s": 5.0,
        "base_rss_mb": 500.0,
        "peak_rss_mb": max(rss.values()),
        "embed_fill_s": 1.0,
        "counts": {
            "items": items,
            "test_users": n // 100,
            "user_texts": 30,
            "train_pairs": n,
            "train_steps": 1,
            "eval_batch_size": 256,
        },
        "minilm": {},
        "threads": 1,
        "load": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
    }


def _grow(n: int, b_time: float, b_rss: float, slow: str | None = None) -> dict:
    """Every stage takes n/1000 s and n/100 MB above the 500 MB baseline; ``slow`` grows
    with ``n**2`` in both."""
    sec = {s: (n / 1000) ** (2 if s == slow else b_time) for s in STAGES}  # CPU = wall
    rss = {s: 500 + (n / 100) ** (2 if s == slow else b_rss) for s in STAGES}
    return _record(n, sec, rss)


def test_exponents_recover_the_power_laws():
    records = [_grow(n, 1.0, 0.5, slow="index") for n in (10_000, 100_000, 1_000_000)]
    fits = report.exponents(records)
    assert fits["load"]["time"] == pytest.approx(1.0) and fits["load"]["rss"] == pytest.approx(0.5)
    assert fits["index"]["time"] == pytest.approx(2.0) and fits["index"]["rss"] == pytest.approx(
        2.0
    )
    # test users = n / 100 at a fixed catalogue: pairs grow like n, time like n
    assert fits["evaluate"]["time_vs_pairs"] == pytest.approx(1.0)
    assert report.slope([1.0], [2.0]) is None  # one size: no fit


def test_extrapolation_and_targets():
    records = [_grow(n, 1.0, 1.0) for n in (100_000, 1_000_000)]
    fits = report.exponents(records)
    extra = report.extrapolate(records, fits)
    assert extra["from"] == "n1000000"
    # linear: 1000 s at 1M -> 25,000 s at 25M; 10,000 MB above 500 -> 250,000 MB above 500
    assert extra["stages"]["load"]["cpu_s"] == pytest.approx(ML25M[0] / 1000)
    assert extra["stages"]["load"]["peak_rss_mb"] == pytest.approx(500 + ML25M[0] / 100)
    rows = {
        a.split(" <=")[0].split(" (")[0]: (b, c) for a, b, c in report.targets(records, fits, extra)
    }
    e2e_value, e2e_met = rows["ml-25m-sized shop end to end"]
    assert "EXTRAPOLATED" in e2e_value and e2e_met == "no"  # 8 stages x 25,000 s
    assert rows["no stage but evaluate worse than linear in interactions"][1] == "yes"
    quad = [_grow(n, 1.0, 1.0, slow="tokenise") for n in (100_000, 1_000_000)]
    (_, worse, met) = report.targets(quad, report.exponents(quad), None)[2]
    assert met == "no" and "tokenise (time 2.00)" in worse and "tokenise (rss 2.00)" in worse


def test_off_path_sizes_are_not_fitted():
    records = [_grow(n, 1.0, 1.0) for n in (100_000, 1_000_000)]
    odd = _grow(10_000, 3.0, 3.0)
    odd["size"]["on_path"] = False
    assert report.exponents([*records, odd])["load"]["time"] == pytest.approx(1.0)


def test_readme_keeps_the_other_sections(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(
        f"# title\n\n{report.BEGIN}\nold\n{report.END}\n\n## findings\nmine\n\n{report.ANN}\n"
    )
    records = [_grow(n, 1.0, 1.0) for n in (100_000, 1_000_000)]
    report.write_readme(path, records)
    text = path.read_text()
    assert "old" not in text and "## findings\nmine" in text and text.count(report.ANN) == 1
    assert (
        "EXTRAPOLATED" in text
        and "| load | 100.0 s (100) / 1.46 GB | 1,000.0 s (1,000) / 10.25 GB |" in text
    )
    assert (tmp_path / report.PLOT).stat().st_size > 1000


def test_sizes():
    s = on_path("x", 300_000)
    assert (s.n_items, s.n_users) == (20_000, 10_000)
    end = on_path("y", ML25M[0])
    assert (end.n_items, end.n_users) == ML25M[1:]  # the path ends at the ml-25m shape
    assert PRESETS["items-1m"].n_items == 1_000_000 and not PRESETS["items-1m"].on_path
    assert parse_size("3000/300/150").n_users == 150
    with pytest.raises(ConfigError, match="use one of"):
        parse_size("huge")
    assert math.isclose(PRESETS["1.5m"].n_interactions, 1.5e6)


def test_minilm_cost(tiny_model_dir):
    from types import SimpleNamespace

    import torch

    from divrec.data.text import TokenisedTexts
    from experiments.scale.stages import minilm_cost

    ids = torch.randint(1000, 2000, (20, 6))
    mask = torch.ones_like(ids)
    mask[:, 4:] = 0  # 4 real tokens per text
    toks = TokenisedTexts(ids, mask, False)
    out = minilm_cost(SimpleNamespace(item_tokens=toks, user_tokens=toks), 8, tiny_model_dir)
    assert out["sample"] == 8 and out["item_mean_tokens"] == 4.0
    assert out["item_cpu_s_per_text"] > 0 and out["user_wall_s_per_text"] > 0
