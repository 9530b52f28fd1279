"""pareto_front against a brute-force dominance check and hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from divrec.errors import DataError
from divrec.reports.pareto import pareto_front


def brute_force_front(xs, ys, maximize=(True, True)) -> list[bool]:
    """O(n^2) reference: p is on the front iff finite and no finite q is >= on both and > on one."""
    sx = 1.0 if maximize[0] else -1.0
    sy = 1.0 if maximize[1] else -1.0
    pts = [(sx * a, sy * b) for a, b in zip(xs, ys, strict=True)]
    ok = [math.isfinite(a) and math.isfinite(b) for a, b in pts]
    out = []
    for i, (px, py) in enumerate(pts):
        if not ok[i]:
            out.append(False)
            continue
        dominated = any(
            ok[j] and qx >= px and qy >= py and (qx > px or qy > py)
            for j, (qx, qy) in enumerate(pts)
            if j != i
        )
        out.append(not dominated)
    return out


def frame(xs, ys, index=None) -> pd.DataFrame:
    return pd.DataFrame({"x": xs, "y": ys}, index=index)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("maximize", [(True, True), (False, True), (True, False), (False, False)])
def test_matches_brute_force_on_random_points(seed, maximize):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    if seed % 2:  # coarse grid: many exact ties in x, y or both
        xs = rng.integers(0, 5, n).astype(float)
        ys = rng.integers(0, 5, n).astype(float)
    else:
        xs, ys = rng.random(n), rng.random(n)
    holes = rng.random(n) < 0.15
    xs[holes & (rng.random(n) < 0.5)] = np.nan
    ys[holes & (rng.random(n) < 0.5)] = np.inf
    got = pareto_front(frame(xs, ys), "x", "y", maximize)
    assert got.tolist() == brute_force_front(xs, ys, maximize)


def test_hand_made_case():
    # (0.35, 0.35) is dominated by (0.4, 0.4): 0.4 > 0.35 on both. (0.3, 0.5) has the best y,
    # (0.4, 0.4) the best x: neither dominates the other.
    got = pareto_front(frame([0.3, 0.4, 0.35], [0.5, 0.4, 0.35]), "x", "y")
    assert got.tolist() == [True, True, False]


def test_minimising_x_flips_the_answer():
    # Lower x better, higher y better: (0.3, 0.5) beats both others (0.3 < 0.4, 0.5 > 0.4).
    got = pareto_front(frame([0.3, 0.4, 0.35], [0.5, 0.4, 0.35]), "x", "y", (False, True))
    assert got.tolist() == [True, False, False]


def test_ties():
    xs = [0.5, 0.5, 0.5, 0.2, 0.6]
    ys = [0.3, 0.3, 0.1, 0.3, 0.2]
    got = pareto_front(frame(xs, ys), "x", "y").tolist()
    # rows 0 and 1 are equal duplicates: they do not dominate each other, both stay;
    # row 2 has the same x but lower y -> dominated; row 3 has the same y but lower x ->
    # dominated; row 4 has the best x -> on the front.
    assert got == [True, True, False, False, True]


def test_nan_and_inf_rows_are_excluded_and_dominate_nothing():
    xs = [0.1, np.nan, 0.2, 0.9, None]
    ys = [0.1, 9.0, np.inf, 0.05, 0.9]
    got = pareto_front(frame(xs, ys), "x", "y").tolist()
    # Only rows 0 and 3 are finite; neither dominates the other (0.1 < 0.9 but 0.1 > 0.05).
    assert got == [True, False, False, True, False]


def test_keeps_index_and_name_and_handles_empty():
    got = pareto_front(frame([0.1, 0.2], [0.2, 0.1], index=[7, 3]), "x", "y")
    assert got.index.tolist() == [7, 3] and got.name == "pareto" and got.dtype == bool
    empty = pareto_front(frame([], []), "x", "y")
    assert empty.empty


def test_missing_column_is_a_data_error():
    with pytest.raises(DataError, match="nope"):
        pareto_front(frame([0.1], [0.2]), "x", "nope")
