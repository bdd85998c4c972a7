"""A space's misspelled keys and constraints naming no column are errors when it is read, with
the closest names; every metric a point's row holds is declared (what constraints may name)."""

from __future__ import annotations

from typing import Any

import pytest

from decodex.core.errors import SpecError
from decodex.explore.points import evaluate_point
from decodex.explore.runner import run_sweep
from decodex.explore.sweep_space import METRICS, ROW_COLUMNS, load_space

BASE: dict[str, Any] = {"name": "checks", "fixed": {"model": "llama3-8b", "system": "h100-sxm"},
                        "axes": {"batch": [1, 2]}}


@pytest.mark.parametrize(("extra", "needle"), [
    ({"sampleing": "random"}, r"sweep\.sampleing: unknown field; did you mean 'sampling'"),
    ({"constraint": []}, r"did you mean 'constraints'"),
    ({"constraints": [{"metric": "tpot", "op": "<=", "bound": 0.1}]}, r"'tpot' is not a column.*did you mean 'tpot_s'"),
    ({"constraints": [{"metric": "tpot_s", "op": "<=", "bound": 0.1, "bonud": 1}]}, r"did you mean 'bound'"),
    ({"mode": "serve", "constraints": [{"metric": "memory_required_bytes", "op": "<=", "bound": 1}]},
     "in serve mode"),
    ({"constraints": [{"metric": "util.", "op": "<=", "bound": 1}]}, "not a column"),
])
def test_misspelled_keys_and_unknown_columns_are_refused_when_read(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=needle) as refused:
        load_space({**BASE, **extra})
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("metric", ["tpot_s", "util.tensor", "batch", "model", "feasible", "price_usd"])
def test_constraints_may_name_metrics_units_and_inputs(metric: str) -> None:
    space = load_space({**BASE, "constraints": [{"metric": metric, "op": ">=", "bound": 0}]})
    assert space.constraints[0].metric == metric


def test_a_mode_override_checks_the_constraints_again() -> None:
    space = {**BASE, "constraints": [{"metric": "memory_required_bytes", "op": "<=", "bound": 1e12}]}
    assert len(run_sweep(space, progress=False)) == 2
    with pytest.raises(SpecError, match="in serve mode"):
        run_sweep(space, mode="serve", progress=False)


@pytest.mark.parametrize("mode", ["estimate", "simulate", "serve"])
def test_every_metric_a_row_holds_is_declared(mode: str) -> None:
    point = {"model": "llama3-8b", "system": "h100-sxm", "batch": 2, "context": 128, "requests": 4, "rate": 5.0}
    row = evaluate_point(point, mode)
    assert row["feasible"], row["reason"]
    metrics = set(row) - set(point) - set(ROW_COLUMNS)
    undeclared = {m for m in metrics if m not in METRICS[mode] and not (mode != "serve" and m.startswith("util."))}
    assert not undeclared
