"""``model=fusion``: hand-computed normalisations, id alignment, and tiny trained runs (a
weight-(1, 0) fusion reproduces its part's metrics; bad parts are refused in one line)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf

from divrec.baselines import build_baseline
from divrec.baselines import fusion as fusion_mod
from divrec.baselines.fusion import RunData, normalise
from divrec.errors import ConfigError, DataError
from divrec.run.train import train
from tests.conftest import compose_tiny

S = math.sqrt(1.5)
# user 0 trained on item 0, user 1 on item 3
TRAIN = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1]], np.float32))
A = torch.tensor([[9.0, 1, 2, 3], [4, 4, 4, 8]])
B = torch.tensor([[0.0, 6, 0, 3], [1, 2, 3, 0]])


def _fitted(monkeypatch, tmp_path, weights, **options) -> torch.Tensor:
    tables = {str(tmp_path / "a"): A, str(tmp_path / "b"): B}
    for run in tables:
        Path(run).mkdir()
    monkeypatch.setattr(fusion_mod, "check_part", lambda run, data: Path(run))
    monkeypatch.setattr(fusion_mod, "part_scores", lambda run, data, bs: tables[run])
    parts = [{"run": r, "weight": w} for r, w in zip(tables, weights, strict=True)]
    model = build_baseline("fusion", n_users=2, n_items=4, parts=parts, **options)
    model.run_data = RunData(["u0", "u1"], ["i0", "i1", "i2", "i3"], "fp")
    model.fit(TRAIN)
    return model.score(torch.tensor([0, 1]))


def test_z_mix_matches_hand_computation(monkeypatch, tmp_path):
    # u0 over items 1-3: A [1, 2, 3] -> mean 2, std sqrt(2/3); B [6, 0, 3] -> mean 3, std
    # sqrt(6). u1 over items 0-2: A constant (std 0) -> 0; B [1, 2, 3] -> mean 2, std sqrt(2/3).
    za_u0 = S * torch.tensor([7.0, -1, 0, 1])
    zb_u0 = S * torch.tensor([-1.0, 1, -1, 0])
    zb_u1 = S * torch.tensor([-1.0, 0, 1, -2])
    want = torch.stack([za_u0 + 0.5 * zb_u0, 0.5 * zb_u1])
    torch.testing.assert_close(_fitted(monkeypatch, tmp_path, [1.0, 0.5]), want)


def test_z_over_all_items(monkeypatch, tmp_path):
    # exclude_train=false: u0's A over all 4 items [9, 1, 2, 3]: mean 3.75, population std
    got = _fitted(monkeypatch, tmp_path, [1.0, 0.0], exclude_train=False)
    a = np.array([9.0, 1, 2, 3])
    want = (a - 3.75) / math.sqrt(((a - 3.75) ** 2).mean())
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-6)


def test_minmax_and_rrf_by_hand():
    keep = ~torch.from_numpy(TRAIN.toarray()).bool()
    mm = normalise(A, keep, "minmax", 60.0)  # u0: (s - 1) / 2; u1: constant -> 0
    torch.testing.assert_close(mm, torch.tensor([[4.0, 0, 0.5, 1], [0, 0, 0, 0]], dtype=mm.dtype))
    rrf = normalise(A, keep, "rrf", 1.0)  # ranks among candidates, ties in item order
    want = torch.tensor([[0, 1 / 4, 1 / 3, 1 / 2], [1 / 2, 1 / 3, 1 / 4, 0]], dtype=rrf.dtype)
    torch.testing.assert_close(rrf, want)


@pytest.mark.parametrize(
    ("parts", "match"),
    [
        ([{"run": "a", "weight": -1.0}], "weight must be a finite number >= 0"),
        ([{"run": "a", "weight": 0.0}, {"run": "b", "weight": 0}], "all part weights are 0"),
        ([{"run": "a", "weight": float("nan")}], "finite number"),
        ([{"run": "a", "wieght": 1.0}], "unknown key"),
        ([], "non-empty list"),
        ([{"run": "???", "weight": 1.0}], r"parts\[0\]\.run is not set"),
        ([{"run": "/no/such/run", "weight": 1.0}], "no such run folder"),
    ],
)
def test_bad_weights_refused(parts, match):
    with pytest.raises(ConfigError, match=match):
        build_baseline("fusion", n_users=2, n_items=4, parts=parts)


def test_alignment_by_id():
    pos = fusion_mod._positions(["b", "c", "a"], ["a", "b", "c"], "p", "items")
    assert pos.tolist() == [2, 0, 1]
    with pytest.raises(DataError, match="items differ"):
        fusion_mod._positions(["a", "b"], ["a", "c"], "p", "items")


# ------------------------------------------------------------------ tiny trained runs
def _cfg(out: Path, tiny_model_dir, cache, *overrides: str):
    return compose_tiny(out, tiny_model_dir, cache, "trainer.limit_train_batches=2", *overrides)


def _run(tmp_path_factory, tiny_model_dir, cache, *overrides: str) -> Path:
    out = tmp_path_factory.mktemp("part")
    cfg = _cfg(out, tiny_model_dir, cache, *overrides)
    train(cfg)
    (out / ".hydra").mkdir(exist_ok=True)  # written by Hydra's app, not by compose
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tiny_model_dir, shared_cache):
    args = (tmp_path_factory, tiny_model_dir, shared_cache)
    runs = {
        "pop": _run(*args, "model=pop"),
        "itemknn": _run(*args, "model=itemknn"),
        "tt": _run(*args, "model.user_tower=history"),
    }
    runs["tt_ckpt"] = next((runs["tt"] / "checkpoints").glob("epoch*.ckpt"))  # a checkpoint path
    return runs


def _fuse(tmp_path, tiny_model_dir, shared_cache, runs_weights, *extra: str) -> dict:
    overrides = []
    for i, (run, w) in enumerate(runs_weights):
        overrides += [f"model.options.parts.{i}.run={run}", f"model.options.parts.{i}.weight={w}"]
    out = tmp_path / "fusion"
    train(_cfg(out, tiny_model_dir, shared_cache, "model=fusion", *overrides, *extra))
    return json.loads((out / "metrics.json").read_text())


def _metrics(run: Path) -> dict:
    folder = run.parent.parent if run.suffix == ".ckpt" else run
    return json.loads((folder / "metrics.json").read_text())


def _same_metrics(got: dict, want: dict) -> None:
    keys = [k for k in want if k.startswith(("val/", "test/"))]
    assert keys
    for k in keys:
        assert got[k] == pytest.approx(want[k], abs=1e-6), k


@pytest.mark.parametrize(("a", "b"), [("pop", "itemknn"), ("tt", "pop"), ("itemknn", "tt_ckpt")])
def test_one_hot_weights_reproduce_each_part(parts, tmp_path, tiny_model_dir, shared_cache, a, b):
    first = _fuse(tmp_path, tiny_model_dir, shared_cache, [(parts[a], 1.0), (parts[b], 0.0)])
    _same_metrics(first, _metrics(parts[a]))
    shutil.rmtree(tmp_path / "fusion")
    second = _fuse(tmp_path, tiny_model_dir, shared_cache, [(parts[a], 0.0), (parts[b], 1.0)])
    _same_metrics(second, _metrics(parts[b]))


def test_mix_differs_from_either_part(parts, tmp_path, tiny_model_dir, shared_cache):
    m = _fuse(tmp_path, tiny_model_dir, shared_cache, [(parts["itemknn"], 1.0), (parts["tt"], 1.0)])
    assert m["meta"]["status"] == "ok"
    assert m["test/ndcg@10"] not in (
        _metrics(parts["itemknn"])["test/ndcg@10"],
        _metrics(parts["tt"])["test/ndcg@10"],
    )
    assert (tmp_path / "fusion" / "recommendations.parquet").exists()


def test_part_on_another_split_refused(
    parts, tmp_path_factory, tmp_path, tiny_model_dir, shared_cache
):
    other = _run(tmp_path_factory, tiny_model_dir, shared_cache, "model=pop", "data.split.seed=7")
    with pytest.raises(DataError, match="trained on another split") as e:
        _fuse(tmp_path, tiny_model_dir, shared_cache, [(parts["pop"], 1.0), (other, 1.0)])
    assert "\n" not in str(e.value)


def test_unfinished_part_refused(parts, tmp_path, tiny_model_dir, shared_cache):
    broken = tmp_path / "unfinished"
    shutil.copytree(parts["pop"], broken)
    m = _metrics(broken)
    m["meta"]["status"] = "failed"
    (broken / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="not a finished run") as e:
        _fuse(tmp_path, tiny_model_dir, shared_cache, [(parts["pop"], 1.0), (broken, 0.0)])
    assert "\n" not in str(e.value)
