"""Sobol indices against analytical values (Ishigami, linear), NaN handling, determinism; OAT sweeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from decodex.explore.sensitivity import one_at_a_time, sobol_indices

PI_BOUNDS = {"x1": (-np.pi, np.pi), "x2": (-np.pi, np.pi), "x3": (-np.pi, np.pi)}


def ishigami(points: pd.DataFrame, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    x1, x2, x3 = (points[name].to_numpy() for name in ("x1", "x2", "x3"))
    return np.sin(x1) + a * np.sin(x2) ** 2 + b * x3**4 * np.sin(x1)


def test_ishigami_matches_analytical_indices() -> None:
    indices = sobol_indices(ishigami, PI_BOUNDS, n=4096, seed=0)
    assert indices["variable"].tolist() == ["x1", "x2", "x3"]
    np.testing.assert_allclose(indices["S1"], [0.3139, 0.4424, 0.0], atol=0.03)
    np.testing.assert_allclose(indices["ST"], [0.5576, 0.4424, 0.2437], atol=0.03)
    assert (indices["S1_low"] <= indices["S1"]).all() and (indices["S1"] <= indices["S1_high"]).all()
    assert (indices["ST_low"] <= indices["ST"]).all() and (indices["ST"] <= indices["ST_high"]).all()
    assert indices["dropped"].tolist() == [0, 0, 0]
    assert indices["samples"].tolist() == [4096] * 3


def test_linear_function_indices_are_variance_shares() -> None:
    coefficients = np.array([1.0, 2.0, 3.0])
    bounds = {"a": (0.0, 2.0), "b": (-1.0, 1.0), "c": (0.0, 0.5)}
    widths = np.array([high - low for low, high in bounds.values()])
    shares = coefficients**2 * widths**2 / 12
    shares /= shares.sum()
    indices = sobol_indices(lambda points: points[list(bounds)].to_numpy() @ coefficients, bounds, n=1024, seed=3)
    np.testing.assert_allclose(indices["S1"], shares, atol=0.01)
    np.testing.assert_allclose(indices["ST"], shares, atol=0.01)


def test_one_evaluate_call_with_all_points_and_nan_samples_dropped_consistently() -> None:
    seen: list[pd.DataFrame] = []

    def metric(points: pd.DataFrame) -> np.ndarray:
        seen.append(points)
        values = points["x"].to_numpy() + 2 * points["y"].to_numpy()
        return np.where(points["x"].to_numpy() > 0.8, np.nan, values)

    n = 128
    indices = sobol_indices(metric, {"x": (0.0, 1.0), "y": (0.0, 1.0)}, n=n, seed=1)
    assert len(seen) == 1 and len(seen[0]) == n * 4
    blocks = seen[0]["x"].to_numpy().reshape(4, n)
    expected_dropped = int((blocks > 0.8).any(axis=0).sum())
    assert expected_dropped > 0
    assert indices["dropped"].tolist() == [expected_dropped] * 2
    assert (indices["samples"] + indices["dropped"] == n).all()
    assert np.isfinite(indices[["S1", "ST", "S1_low", "S1_high", "ST_low", "ST_high"]].to_numpy()).all()


def test_all_nan_gives_nan_indices() -> None:
    indices = sobol_indices(lambda points: np.full(len(points), np.nan), {"x": (0.0, 1.0)}, n=16)
    assert indices["dropped"].tolist() == [16]
    assert indices[["S1", "ST", "S1_low", "ST_high"]].isna().all(axis=None)


def test_same_seed_same_result_other_seed_differs() -> None:
    first = sobol_indices(ishigami, PI_BOUNDS, n=128, seed=7)
    pd.testing.assert_frame_equal(first, sobol_indices(ishigami, PI_BOUNDS, n=128, seed=7))
    assert not first["S1"].equals(sobol_indices(ishigami, PI_BOUNDS, n=128, seed=8)["S1"])


def test_sobol_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="low < high"):
        sobol_indices(ishigami, {"x1": (1.0, 1.0)})
    with pytest.raises(ValueError, match="n must be"):
        sobol_indices(ishigami, PI_BOUNDS, n=1)
    with pytest.raises(ValueError, match="values for"):
        sobol_indices(lambda points: np.ones(3), PI_BOUNDS, n=8)


def test_one_at_a_time_summary_and_points() -> None:
    calls: list[int] = []

    def metric(points: pd.DataFrame) -> np.ndarray:
        calls.append(len(points))
        values = 2.0 * points["a"] - points["b"] + 0.0 * points["c"]
        return np.where(points["b"] > 3.5, np.nan, values)

    result = one_at_a_time(metric, {"a": 1.0, "b": 1.0, "c": 5.0}, {"a": (0.0, 4.0), "b": (0.0, 4.0)}, steps=5)
    assert calls == [1 + 2 * 5]
    assert result.base_metric == pytest.approx(1.0)
    summary = result.summary.set_index("variable")
    assert result.summary["variable"].tolist() == ["a", "b"]  # largest swing first
    assert summary.loc["a", ["metric_min", "metric_max", "swing", "relative_swing"]].tolist() == [-1.0, 7.0, 8.0, 8.0]
    # b = 4 is infeasible (NaN): the swing covers b in {0, 1, 2, 3} only.
    assert summary.loc["b", ["metric_at_low", "metric_min", "metric_max", "swing"]].tolist() == [2.0, -1.0, 2.0, 3.0]
    assert np.isnan(summary.loc["b", "metric_at_high"])
    points = result.points
    assert len(points) == 11 and (points["c"] == 5.0).all()
    assert points.loc[points["varied"] == "a", "a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert (points.loc[points["varied"] == "a", "b"] == 1.0).all()


def test_one_at_a_time_zero_base_and_errors() -> None:
    result = one_at_a_time(lambda points: points["x"].to_numpy(), {"x": 0.0}, {"x": (-1.0, 1.0)}, steps=3)
    assert np.isnan(result.summary.loc[0, "relative_swing"])
    with pytest.raises(ValueError, match="no base value"):
        one_at_a_time(lambda points: points["x"].to_numpy(), {}, {"x": (0.0, 1.0)})
    with pytest.raises(ValueError, match="steps"):
        one_at_a_time(lambda points: points["x"].to_numpy(), {"x": 0.0}, {"x": (0.0, 1.0)}, steps=1)
