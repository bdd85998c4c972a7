"""optimize_design on synthetic evaluators: constrained continuous, integer, infeasible, determinism."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from decodex.core.errors import InfeasibleError
from decodex.explore.optimize import Constraint, optimize_design


def tpot(design: Mapping[str, float]) -> dict[str, float]:
    return {"tpot_s": 1.0 / design["bandwidth"] + 1e-3}


TPOT_LIMIT = [Constraint("tpot_s", "<=", 0.011)]


def test_minimal_bandwidth_meeting_tpot() -> None:
    calls: list[dict[str, float]] = []

    def counted(design: Mapping[str, float]) -> dict[str, float]:
        calls.append(dict(design))
        return tpot(design)

    result = optimize_design(counted, {"bandwidth": (10.0, 1000.0)}, "bandwidth", constraints=TPOT_LIMIT, seed=0)
    assert result.feasible
    assert result.design["bandwidth"] == pytest.approx(100.0, rel=0.01)
    assert result.objective == result.design["bandwidth"]
    assert result.metrics["tpot_s"] <= 0.011
    # Each distinct design is evaluated once, and the history holds exactly those.
    assert result.evaluations == len(calls) == len(result.history)
    assert not result.history.duplicated(["bandwidth"]).any()
    assert list(result.history.columns) == ["evaluation", "bandwidth", "tpot_s", "objective", "violation", "feasible",
                                            "error"]
    assert result.history["feasible"].tolist() == (result.history["tpot_s"] <= 0.011).tolist()
    feasible = result.history[result.history["feasible"]]
    assert result.objective == feasible["objective"].min()


def test_integer_variable_and_infeasible_error() -> None:
    def serve(design: Mapping[str, float]) -> dict[str, float]:
        devices = design["devices"]
        assert isinstance(devices, int)
        if 12 % devices:
            raise InfeasibleError(f"12 heads do not split over {devices} devices")
        return {"tpot_s": 1.0 / (design["bandwidth"] * devices) + 1e-3,
                "cost_usd": design["bandwidth"] * devices + 50.0 * devices}

    result = optimize_design(serve, {"bandwidth": (10.0, 1000.0), "devices": (1, 8)}, "cost_usd",
                             constraints=TPOT_LIMIT, integers=["devices"], seed=1, maxiter=30)
    assert result.feasible
    assert result.design["devices"] == 1
    assert result.objective == pytest.approx(150.0, rel=0.01)
    history = result.history
    assert set(history["devices"]) <= set(range(1, 9))
    failed = history[history["error"].notna()]
    assert len(failed) > 0 and not failed["feasible"].any()
    assert (12 % failed["devices"] != 0).all()
    assert np.isinf(failed["violation"]).all()


def test_maximize_with_lower_bound_constraint() -> None:
    def evaluate(design: Mapping[str, float]) -> dict[str, float]:
        x = design["x"]
        return {"throughput": x * (10.0 - x), "margin": 8.0 - x}

    result = optimize_design(evaluate, {"x": (0.0, 10.0)}, "throughput", minimize=False,
                             constraints=[Constraint("margin", ">=", 4.0)], seed=2, maxiter=30)
    assert result.feasible
    assert result.design["x"] == pytest.approx(4.0, abs=0.05)
    assert result.objective == pytest.approx(24.0, rel=0.01)


def test_always_infeasible_returns_least_violating_design() -> None:
    result = optimize_design(tpot, {"bandwidth": (10.0, 1000.0)}, "bandwidth",
                             constraints=[Constraint("tpot_s", "<=", 1e-4)], seed=0, maxiter=5)
    assert not result.feasible
    assert not result.history["feasible"].any()
    assert result.violation == result.history["violation"].min() > 0
    assert result.design["bandwidth"] == result.history["bandwidth"].max()


def test_nan_metric_counts_as_infeasible() -> None:
    def evaluate(design: Mapping[str, float]) -> dict[str, float]:
        return {"y": np.nan if design["x"] < 0.5 else design["x"]}

    result = optimize_design(evaluate, {"x": (0.0, 1.0)}, "y", seed=0, maxiter=15)
    assert result.feasible and result.design["x"] == pytest.approx(0.5, abs=0.02)
    assert not result.history.loc[result.history["x"] < 0.5, "feasible"].any()


def test_same_seed_same_history() -> None:
    first = optimize_design(tpot, {"bandwidth": (10.0, 1000.0)}, "bandwidth", constraints=TPOT_LIMIT, seed=5,
                            maxiter=10)
    again = optimize_design(tpot, {"bandwidth": (10.0, 1000.0)}, "bandwidth", constraints=TPOT_LIMIT, seed=5,
                            maxiter=10)
    pd.testing.assert_frame_equal(first.history, again.history)
    assert first.design == again.design


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"op '<'.*\['<=', '>='\]"):
        Constraint("tpot_s", "<", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="low < high"):
        optimize_design(tpot, {"bandwidth": (10.0, 10.0)}, "bandwidth")
    with pytest.raises(ValueError, match="'tp' is not a variable"):
        optimize_design(tpot, {"bandwidth": (10.0, 100.0)}, "bandwidth", integers=["tp"])
    with pytest.raises(ValueError, match=r"objective 'ttft_s' is neither a variable nor a metric.*tpot_s"):
        optimize_design(tpot, {"bandwidth": (10.0, 100.0)}, "ttft_s", maxiter=1)
