"""Score fusion: a weighted sum of the normalised full-catalogue scores of trained runs.

``score(u, j) = sum_c w_c * norm(s_c)(u, j)`` over ``parts`` (each a finished divrec run: a
two-tower run, a closed-form or pairwise baseline run), ``norm`` per user over the catalogue:

- ``z``: ``(s - mean) / std`` (population std; a user whose scores are all equal gets 0);
- ``minmax``: ``(s - min) / (max - min)`` (all equal: 0);
- ``rrf``: ``1 / (rrf_k + rank)``, rank from 1 in descending score order, ties in item order
  (reciprocal-rank fusion).

With ``exclude_train`` (default) the statistics (mean/std, min/max, ranks) are taken over each
user's items outside their training row, the candidates the harness ranks (training items get
``z``/``minmax`` values on the same scale and ``rrf`` 0, and are masked anyway); otherwise over
the whole catalogue. Valid items, masked at test, stay in the statistics: one normalisation
serves both passes.

Each part is rebuilt from its own run folder and scored by its own code: a two-tower run
through :func:`divrec.serve.recommend.load_model` (safe checkpoint loading, hyper-parameter
check) and ``RecModule.score``, a baseline run through ``build_module`` (closed form: refitted
on the same training data; pairwise: its checkpoint loaded the same safe way) and
``BaselineModule.score``. Evaluation batches hold the training history only, so one [U, N]
score matrix per part serves validation and test; it is computed once in ``fit`` (rows and
columns mapped to this run's users and items by id) and kept in this process, so the jobs of
one weight sweep share it. A part with weight 0 is checked but not loaded.

Refused with one line: a part that is unfinished (no ``metrics.json`` with ``status: ok``), was
trained on another split (its saved ``split/`` differs from this run's), has another catalogue
or user set, or weights that are negative, non-finite or all zero.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scipy.sparse as sp
import torch

from divrec.baselines.base import (
    Baseline,
    check_train,
    csr_tensors,
    is_number,
    require,
    rows_to_dense,
)
from divrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

NORMS = ("z", "minmax", "rrf")
_MEMO: dict[tuple, tuple[list[str], list[str], torch.Tensor]] = {}  # part key -> ids, scores
_MEMO_SIZE = 4


@dataclass(frozen=True)
class RunData:
    """What a part is checked against: this run's user and item ids and split fingerprint."""

    user_ids: list[str]
    item_ids: list[str]
    split_fingerprint: str


class Fusion(Baseline):
    """Weighted sum of per-user normalised part scores (see the module docstring)."""

    needs_training = False
    needs_run = True  # build_module calls bind_run(dm) before fit

    def __init__(
        self,
        parts: Sequence[Mapping[str, Any]],
        norm: str = "z",
        rrf_k: float = 60.0,
        exclude_train: bool = True,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        self.parts = _parse_parts(parts)
        require(norm in NORMS, f"fusion: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        require(is_number(rrf_k) and rrf_k >= 0, f"fusion: rrf_k must be >= 0, got {rrf_k!r}")
        require(isinstance(exclude_train, bool), "fusion: exclude_train must be true or false")
        require(
            isinstance(batch_size, int) and batch_size >= 1,
            f"fusion: batch_size must be an int >= 1, got {batch_size!r}",
        )
        self.norm, self.rrf_k = norm, float(rrf_k)
        self.exclude_train, self.batch_size = exclude_train, batch_size
        self.run_data: RunData | None = None
        self.register_buffer("fused", torch.empty(0, 0))  # [U, N] after fit

    def bind_run(self, dm: Any) -> None:
        """Remember ``dm``'s users, items and split: the parts must have the same."""
        from divrec.data.datamodule import split_fingerprint

        self.run_data = RunData(
            list(dm.user_ids), list(dm.catalogue.item_ids), split_fingerprint(dm.split)
        )

    def fit(self, train: sp.csr_matrix) -> None:
        """Check every part, score the loaded ones and sum their normalised scores."""
        x = check_train(train, self.expected_shape)
        if self.run_data is None:
            raise ConfigError("fusion: bind_run(dm) must be called before fit (build_module does)")
        n_users, n_items = x.shape
        if (len(self.run_data.user_ids), len(self.run_data.item_ids)) != (n_users, n_items):
            raise DataError("fusion: the training matrix does not match the bound run's ids")
        for part in self.parts:
            check_part(part["run"], self.run_data)
        indptr, indices = csr_tensors(x, torch.device("cpu"))
        fused = torch.zeros(n_users, n_items)
        for part in self.parts:
            if part["weight"] == 0:
                continue
            raw = part_scores(part["run"], self.run_data, self.batch_size)
            for lo in range(0, n_users, self.batch_size):
                rows = torch.arange(lo, min(lo + self.batch_size, n_users))
                seen = rows_to_dense(indptr, indices, rows, n_items).bool()
                keep = ~seen if self.exclude_train else torch.ones_like(seen)
                z = normalise(raw[rows], keep, self.norm, self.rrf_k)
                fused[rows] += (part["weight"] * z).float()
        self.fused = fused.to(self.buffer_device)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """user_idx [B] -> fused scores [B, N] (a fresh tensor)."""
        self._check_fitted(self.fused)
        return self.fused[user_idx.to(self.fused.device, torch.long)].clone()


def _parse_parts(parts: Any) -> list[dict[str, Any]]:
    """``parts`` as [{run: str, weight: float}], weights >= 0 and not all zero."""
    require(
        isinstance(parts, Sequence) and not isinstance(parts, str) and len(parts) > 0,
        "fusion: parts must be a non-empty list of {run: <run folder or checkpoint>, weight: w}",
    )
    out = []
    for i, p in enumerate(parts):
        require(isinstance(p, Mapping), f"fusion: parts[{i}] must be a mapping {{run, weight}}")
        extra = sorted(set(p) - {"run", "weight"})
        require(not extra, f"fusion: parts[{i}]: unknown key(s) {extra}; allowed: run, weight")
        run, w = p.get("run"), p.get("weight", 1.0)
        require(
            run not in (None, "", "???"),
            f"fusion: parts[{i}].run is not set (model.options.parts.{i}.run=<run folder>)",
        )
        require(
            isinstance(run, str | Path),
            f"fusion: parts[{i}].run must be a run folder or checkpoint path, got {run!r}",
        )
        require(
            is_number(w) and w >= 0,
            f"fusion: parts[{i}].weight must be a finite number >= 0, got {w!r}",
        )
        out.append({"run": str(run), "weight": float(w)})
    require(any(p["weight"] > 0 for p in out), "fusion: all part weights are 0")
    for p in out:  # before the run's reference vectors are computed
        part_folder(p["run"])
    return out


def normalise(scores: torch.Tensor, keep: torch.Tensor, norm: str, rrf_k: float) -> torch.Tensor:
    """Per-row normalisation of ``scores [B, N]`` with statistics over ``keep [B, N]`` (bool);
    float64 [B, N]. Rows with no kept item, or constant kept scores, are 0 (z, minmax)."""
    s = scores.double()
    n = keep.sum(1, keepdim=True)
    if norm == "rrf":
        masked = s.masked_fill(~keep, float("-inf"))
        order = torch.argsort(masked, dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        pos = torch.arange(1, s.shape[1] + 1).expand_as(order).contiguous()
        rank.scatter_(1, order, pos)
        return torch.where(keep, 1.0 / (rrf_k + rank.double()), 0.0)
    if norm == "z":
        mean = torch.where(keep, s, 0.0).sum(1, keepdim=True) / n.clamp_min(1)
        var = torch.where(keep, (s - mean) ** 2, 0.0).sum(1, keepdim=True) / n.clamp_min(1)
        std = var.sqrt()
        return torch.where(std > 0, (s - mean) / std.clamp_min(1e-300), 0.0)
    lo = s.masked_fill(~keep, float("inf")).amin(1, keepdim=True)
    hi = s.masked_fill(~keep, float("-inf")).amax(1, keepdim=True)
    span = hi - lo
    ok = (n > 0) & (span > 0)
    return torch.where(ok, (s - lo) / torch.where(ok, span, 1.0), 0.0)


# ------------------------------------------------------------------ parts
def part_folder(path: str | Path) -> Path:
    """The run folder of a part given as a run folder or a checkpoint inside one."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    raise ConfigError(f"fusion part {path}: no such run folder or checkpoint")


def check_part(path: str | Path, run: RunData) -> Path:
    """Refuse an unfinished part or one trained on another split; returns its run folder."""
    from divrec.data.datamodule import split_fingerprint
    from divrec.data.split import load_split
    from divrec.run.folder import finished

    folder = part_folder(path)
    if not finished(folder):
        raise ConfigError(
            f"fusion part {path}: not a finished run (no metrics.json with status ok)"
        )
    if split_fingerprint(load_split(folder / "split")) != run.split_fingerprint:
        raise DataError(
            f"fusion part {path}: trained on another split than this run (its split/ differs)"
        )
    return folder


def part_scores(path: str | Path, run: RunData, batch_size: int) -> torch.Tensor:
    """The part's scores [U, N] for this run's users and items (rows and columns by id)."""
    folder = part_folder(path)
    stamp = (folder / "metrics.json").stat().st_mtime_ns
    key = (str(folder.resolve()), str(Path(path).resolve()), stamp)
    if key not in _MEMO:
        t0 = time.perf_counter()
        _MEMO[key] = _score_part(path, folder, batch_size)
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        log.info("fusion part %s scored in %.1f s", path, time.perf_counter() - t0)
    user_ids, item_ids, scores = _MEMO[key]
    return scores[_positions(user_ids, run.user_ids, path, "users")][
        :, _positions(item_ids, run.item_ids, path, "items")
    ]


def _positions(part_ids: list[str], ids: list[str], path: Any, what: str) -> torch.Tensor:
    """Index into ``part_ids`` of each of ``ids`` (the same set, maybe another order)."""
    if part_ids == ids:
        return torch.arange(len(ids))
    if set(part_ids) != set(ids):
        raise DataError(
            f"fusion part {path}: its {what} differ from this run's "
            f"({len(set(ids) - set(part_ids))} missing, {len(set(part_ids) - set(ids))} extra)"
        )
    index = {u: i for i, u in enumerate(part_ids)}
    return torch.tensor([index[u] for u in ids])


def _score_part(path: str | Path, folder: Path, batch_size: int):
    """(user ids, item ids, scores [U, N]) of a part from its own module's ``score``."""
    module, dm = _load_part(path, folder)
    from divrec.data.datamodule import split_fingerprint
    from divrec.data.split import load_split

    if split_fingerprint(dm.split) != split_fingerprint(load_split(folder / "split")):
        raise DataError(
            f"fusion part {path}: its config now builds another split than the one it saved"
        )
    users = list(dm.user_ids)
    out = []
    module.eval()
    with torch.inference_mode():
        for lo in range(0, len(users), batch_size):
            batch = dm.eval_batch("val", users[lo : lo + batch_size])
            dev = module.device
            batch = {k: v.to(dev) for k, v in batch.items()}
            out.append(module.score(batch).float().cpu())
    return users, list(dm.catalogue.item_ids), torch.cat(out)


def _load_part(path: str | Path, folder: Path):
    """(module ready to score, its data module) rebuilt from the part's run folder."""
    from omegaconf import OmegaConf

    cfg_file = folder / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        raise DataError(f"fusion part {path}: {cfg_file} missing; not a divrec run folder")
    cfg = OmegaConf.load(cfg_file)
    if cfg.model.get("kind", "two_tower") == "two_tower":
        from divrec.serve.recommend import load_model

        m = load_model(path)
        m.module.context = m.ctx  # the catalogue vectors load_model encoded
        return m.module, m.dm
    from divrec.run.build import build_datamodule, build_module
    from divrec.serve.loading import check_hparams, load_checkpoint, load_weights, locate

    cfg.paths.output_dir = str(folder)  # was ${hydra:runtime.output_dir}
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)  # a closed-form baseline is fitted here
    if module.needs_training:  # pairwise baseline: its trained weights
        _, ckpt = locate(path)
        obj = load_checkpoint(ckpt)
        check_hparams(ckpt, obj.get("hyper_parameters"), module.hparams, cfg_file)
        load_weights(module, obj["state_dict"], ckpt, cfg_file)
    return module, dm
