"""Pareto mask and front on hand-made data (known fronts, NaN rows, duplicates, feasibility, errors)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from decodex.explore.pareto import pareto_front, pareto_mask

# throughput (max) vs cost (min); the front is rows 0, 1, 3, 5 (duplicate of 3) and 8.
POINTS = pd.DataFrame({
    "throughput": [10.0, 8.0, 10.0, 12.0, 7.0, 12.0, np.nan, 11.0, 5.0],
    "cost": [5.0, 3.0, 6.0, 9.0, 4.0, 9.0, 1.0, 10.0, 1.0],
    "name": list("abcdefghi"),
})
FRONT = [0, 1, 3, 5, 8]


def brute_force(values: np.ndarray, maximize: list[bool]) -> np.ndarray:
    cost = np.where(maximize, -values, values)
    valid = ~np.isnan(cost).any(axis=1)
    mask = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(valid):
        others = cost[valid]
        dominated = (others <= cost[i]).all(axis=1) & (others < cost[i]).any(axis=1)
        mask[i] = not dominated.any()
    return mask


def test_mask_mixed_directions_nan_and_duplicates() -> None:
    mask = pareto_mask(POINTS[["throughput", "cost"]].to_numpy(), [True, False])
    assert np.flatnonzero(mask).tolist() == FRONT


def test_mask_both_minimized_and_both_maximized() -> None:
    values = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0], [3.0, 3.0], [2.0, 2.0], [1.0, 5.0]])
    assert np.flatnonzero(pareto_mask(values, [False, False])).tolist() == [0, 1, 2, 4]
    assert np.flatnonzero(pareto_mask(values, [True, True])).tolist() == [2, 3, 5]


def test_mask_single_objective_keeps_all_ties() -> None:
    values = np.array([[3.0], [1.0], [np.nan], [1.0]])
    assert pareto_mask(values, [False]).tolist() == [False, True, False, True]


def test_mask_all_nan_and_empty() -> None:
    assert not pareto_mask(np.full((3, 2), np.nan), [True, False]).any()
    assert pareto_mask(np.empty((0, 3)), [False] * 3).shape == (0,)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_mask_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(30):
        values = rng.integers(0, 4, size=(int(rng.integers(1, 80)), k)).astype(float)
        values[rng.random(len(values)) < 0.1, 0] = np.nan
        maximize = (rng.random(k) < 0.5).tolist()
        assert pareto_mask(values, maximize).tolist() == brute_force(values, maximize).tolist()


def test_mask_large_three_objectives_is_fast() -> None:
    values = np.random.default_rng(0).random((100_000, 3))
    start = time.perf_counter()
    mask = pareto_mask(values, [False, True, False])
    assert time.perf_counter() - start < 3.0
    sample = values[:3000]
    assert pareto_mask(sample, [False, True, False]).tolist() == brute_force(sample, [False, True, False]).tolist()
    assert 0 < mask.sum() < 1000


def test_mask_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        pareto_mask(np.ones(3), [True])
    with pytest.raises(ValueError, match="one flag per column"):
        pareto_mask(np.ones((3, 2)), [True])


def test_front_sorted_by_first_objective_with_original_index() -> None:
    front = pareto_front(POINTS, {"throughput": "max", "cost": "min"})
    assert front.index.tolist() == [8, 1, 0, 3, 5]
    assert front["name"].tolist() == ["i", "b", "a", "d", "f"]
    assert list(front.columns) == list(POINTS.columns)


def test_front_excludes_infeasible_rows() -> None:
    frame = POINTS.assign(feasible=[True, True, True, True, True, True, True, True, False])
    front = pareto_front(frame, {"cost": "min", "throughput": "max"})
    # Without row 8, row 4 (7, 4) is still dominated by row 1 (8, 3).
    assert front.index.tolist() == [1, 0, 3, 5]
    frame.loc[1, "feasible"] = False
    assert pareto_front(frame, {"cost": "min", "throughput": "max"}).index.tolist() == [4, 0, 3, 5]


def test_front_errors_name_column_and_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"'latency'.*columns: \['throughput', 'cost', 'name'\]"):
        pareto_front(POINTS, {"latency": "min"})
    with pytest.raises(ValueError, match=r"'cost' has direction 'minimize'.*\['max', 'min'\]"):
        pareto_front(POINTS, {"throughput": "max", "cost": "minimize"})
    with pytest.raises(ValueError, match="empty"):
        pareto_front(POINTS, {})
    with pytest.raises(ValueError, match="numeric"):
        pareto_front(POINTS, {"name": "min"})
