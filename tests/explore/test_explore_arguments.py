"""Bad arguments to the exploration functions (optimize, sensitivity, Pareto) are one line naming
the argument and what is allowed, raised before any evaluation; good edge values are accepted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest

from decodex.core.errors import ArgumentError
from decodex.explore.optimize import Constraint, optimize_design
from decodex.explore.pareto import ExploreArgumentError, did_you_mean, pareto_front, pareto_mask
from decodex.explore.sensitivity import MAX_STEPS, one_at_a_time, sobol_indices


class _Counting:
    """An evaluate function that counts its calls (none may happen for a bad argument)."""

    def __init__(self) -> None:
        self.calls = 0

    def design(self, design: Mapping[str, float]) -> dict[str, float]:
        self.calls += 1
        return {"time_s": float(design["x"]) ** 2 + 1.0}

    def frame(self, points: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        return points.sum(axis=1).to_numpy(dtype=float)


def _optimize(**changes: Any) -> Callable[[_Counting], Any]:
    def call(counter: _Counting) -> Any:
        arguments: dict[str, Any] = {"variables": {"x": (0.0, 4.0)}, "objective": "time_s", "maxiter": 2,
                                     "popsize": 3}
        arguments.update(changes)
        return optimize_design(counter.design, **arguments)
    return call


OPTIMIZE_CASES = [
    (_optimize(variables={}), "variables is empty"),
    (_optimize(variables=[("x", 0, 1)]), "variables: must be a mapping"),
    (_optimize(variables={"x": (1.0, 1.0)}), "low < high"),
    (_optimize(variables={"x": (0.0, float("nan"))}), "finite"),
    (_optimize(variables={"x": (0.0, 1.0, 2.0)}), "pair"),
    (_optimize(integers=["y"]), "integer variable 'y' is not a variable"),
    (_optimize(variables={"x": (0.2, 0.8)}, integers=["x"]), "no integer"),
    (_optimize(objective=""), "objective"),
    (_optimize(minimize="yes"), "minimize"),
    (_optimize(constraints=[("time_s", "<=", 1)]), "constraints: must be a list of Constraint"),
    (_optimize(seed=-1), "seed"),
    (_optimize(seed=1.5), "seed"),
    (_optimize(maxiter=-1), "maxiter"),
    (_optimize(maxiter=True), "maxiter"),
    (_optimize(popsize=0), "popsize"),
    (_optimize(maxiter=1000, popsize=1000), "evaluations"),
    (_optimize(tol=2.0), "tol"),
    (_optimize(metrics=["time_s"], objective="tme_s"), "did you mean 'time_s'"),
    (_optimize(metrics=["time_s"], constraints=[Constraint("energy_j", "<=", 1.0)]), "constraint metric"),
]


def test_an_objective_no_evaluation_returns_names_the_closest_metric() -> None:
    counter = _Counting()
    with pytest.raises(ExploreArgumentError, match="did you mean 'time_s'"):
        _optimize(objective="time")(counter)


@pytest.mark.parametrize(("op", "bound", "needle"), [("<", 1.0, "op"), ("<=", float("inf"), "finite bound"),
                                                     ("<=", "1", "finite bound")])
def test_bad_constraints_are_argument_errors(op: str, bound: Any, needle: str) -> None:
    with pytest.raises(ExploreArgumentError, match=needle):
        Constraint("time_s", op, bound)


def test_exploration_errors_are_argument_and_value_errors() -> None:
    # callers that caught ValueError before keep working; the CLI prints an ArgumentError in one line
    assert issubclass(ExploreArgumentError, ArgumentError) and issubclass(ExploreArgumentError, ValueError)


def test_edge_values_are_accepted() -> None:
    counter = _Counting()
    result = _optimize(maxiter=0, popsize=1, tol=0.0, seed=2**63 - 1, variables={"x": (1.0, 2.0)},
                       integers=["x"])(counter)
    assert counter.calls >= 1 and result.design["x"] in (1.0, 2.0)


SENSITIVITY_CASES = [
    (lambda c: one_at_a_time(c.frame, {"a": 1.0}, {"a": (0.0, 2.0)}, steps=1), "steps"),
    (lambda c: one_at_a_time(c.frame, {"a": 1.0}, {"a": (0.0, 2.0)}, steps=MAX_STEPS + 1), "steps"),
    (lambda c: one_at_a_time(c.frame, {"a": 1.0}, {"a": (0.0, 2.0)}, steps=2.5), "steps"),
    (lambda c: one_at_a_time(c.frame, {"a": "1"}, {"a": (0.0, 2.0)}), "base value"),
    (lambda c: one_at_a_time(c.frame, {"alpha": 1.0}, {"alpah": (0.0, 2.0)}), "did you mean 'alpha'"),
    (lambda c: one_at_a_time(c.frame, {"a": 1.0}, {}), "ranges"),
    (lambda c: one_at_a_time("f", {"a": 1.0}, {"a": (0.0, 2.0)}), "evaluate"),
    (lambda c: sobol_indices(c.frame, {"a": (0.0, 1.0)}, n=1), "n must be"),
    (lambda c: sobol_indices(c.frame, {"a": (0.0, 1.0)}, n=2**20), "n must be"),
    (lambda c: sobol_indices(c.frame, {"a": (0.0, 1.0)}, n_bootstrap=0), "n_bootstrap"),
    (lambda c: sobol_indices(c.frame, {"a": (0.0, 1.0)}, confidence=1.0), "confidence"),
    (lambda c: sobol_indices(c.frame, {"a": (0.0, 1.0)}, seed=-3), "seed"),
    (lambda c: sobol_indices(c.frame, {"a": (1.0, 1.0)}), "bounds"),
]


@pytest.mark.parametrize(("call", "needle"), OPTIMIZE_CASES + SENSITIVITY_CASES)
def test_bad_arguments_are_one_line_before_any_evaluation(call: Callable[[_Counting], Any], needle: str) -> None:
    counter = _Counting()
    with pytest.raises(ExploreArgumentError, match=needle) as refused:
        call(counter)
    assert "\n" not in str(refused.value)
    assert counter.calls == 0


def test_bad_pareto_arguments_name_the_column_or_direction() -> None:
    frame = pd.DataFrame({"tokens_per_s": [1.0, 2.0], "tpot_s": [0.2, 0.1]})
    with pytest.raises(ExploreArgumentError, match="did you mean 'tokens_per_s'"):
        pareto_front(frame, {"tokens_per_sec": "max"})
    with pytest.raises(ExploreArgumentError, match="allowed"):
        pareto_front(frame, {"tokens_per_s": "maximum"})
    with pytest.raises(ExploreArgumentError, match="empty"):
        pareto_front(frame, {})
    with pytest.raises(ExploreArgumentError, match="numeric"):
        pareto_front(frame.assign(tpot_s=["a", "b"]), {"tpot_s": "min"})
    with pytest.raises(ExploreArgumentError, match="one flag per column"):
        pareto_mask(np.ones((2, 2)), [True])
    with pytest.raises(ExploreArgumentError, match="2-D"):
        pareto_mask(np.ones(3), [True])
    front = pareto_front(frame, {"tokens_per_s": "max", "tpot_s": "min"})
    assert front.index.tolist() == [1]  # 2 tokens/s at 0.1 s dominates


def test_did_you_mean_only_suggests_close_names() -> None:
    assert did_you_mean("tpot", ["tpot_s", "ttft_s"]) == "; did you mean 'tpot_s'?"
    assert did_you_mean("zzz", ["tpot_s"]) == ""
