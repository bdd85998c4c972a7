"""Constrained search for the best design: differential evolution over the design variables.

``evaluate`` maps a design (variable -> value, in the variables' own units, e.g.
``hbm_bandwidth_bytes_per_s``) to metrics (metric -> value, e.g. ``tpot_s``). A design is
infeasible when ``evaluate`` raises :class:`~workloads.errors.InfeasibleError`, returns a NaN
objective or constrained metric, or breaks a :class:`Constraint`. Constraints are handled by
scipy's feasibility rules (Lampinen): a feasible design beats an infeasible one, and of two
infeasible designs the one with no larger violation of every constraint wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import NonlinearConstraint, differential_evolution

from decodex.core.errors import InfeasibleError

DesignEvaluate = Callable[[Mapping[str, float]], Mapping[str, float]]

OPERATORS = ("<=", ">=")
_FAILED = 1e100  # violation reported to the solver for a design that could not be evaluated
_DIGITS = 12  # significant digits of a continuous variable in the evaluation cache key


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. ``Constraint("tpot_s", "<=", 0.05)``; the bound is in the metric's unit.

    ``metric`` may also name a design variable.
    """

    metric: str
    op: Literal["<=", ">="]
    bound: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"constraint on {self.metric!r} has op {self.op!r}; allowed: {list(OPERATORS)}")
        if not math.isfinite(self.bound):
            raise ValueError(f"constraint on {self.metric!r} needs a finite bound, got {self.bound}")

    def violation(self, value: float) -> float:
        """How far ``value`` breaks the constraint, relative to |bound| (absolute when bound is 0).

        0 when satisfied; ``inf`` when ``value`` is NaN. Unit-free.
        """
        if math.isnan(value):
            return math.inf
        excess = value - self.bound if self.op == "<=" else self.bound - value
        return max(0.0, excess) / (abs(self.bound) or 1.0)


@dataclass(frozen=True)
class DesignOptimum:
    """Result of :func:`optimize_design`.

    ``design``: the best design (variable -> value; integer variables as ``int``). ``metrics``: what
    ``evaluate`` returned for it (empty if it raised). ``objective``: the objective's value there
    (in its own unit; NaN if it could not be evaluated). ``feasible``: whether it satisfies every
    constraint; when no evaluated design does, this is the least-violating design.
    ``evaluations``: distinct designs evaluated. ``history``: one row per evaluated design in
    order, with columns ``evaluation``, the variables, the metrics, ``objective``, ``violation``
    (sum of relative violations, inf when evaluation failed), ``feasible`` and ``error``.
    """

    design: dict[str, float]
    metrics: dict[str, Any]
    objective: float
    feasible: bool
    evaluations: int
    history: pd.DataFrame = field(repr=False)
    objective_name: str = ""
    minimize: bool = True
    violation: float = 0.0


def optimize_design(evaluate: DesignEvaluate, variables: Mapping[str, tuple[float, float]], objective: str, *,
                    minimize: bool = True, constraints: Sequence[Constraint] = (), integers: Sequence[str] = (),
                    seed: int = 0, maxiter: int = 50, popsize: int = 10, tol: float = 0.01) -> DesignOptimum:
    """Minimize (or maximize) ``objective`` over the box ``variables`` subject to ``constraints``.

    ``variables`` maps a name to ``(low, high)`` in its own unit; names in ``integers`` take
    integer values only. ``objective`` is a metric returned by ``evaluate`` or a variable (e.g.
    minimize a bandwidth in B/s subject to ``tpot_s <= 0.05``). Uses
    ``scipy.optimize.differential_evolution`` (seeded ``numpy.random.Generator``, no gradient
    polish, ``popsize`` and ``maxiter`` as there, ``tol`` its relative convergence tolerance);
    each distinct design (continuous values rounded to 12 significant digits) is evaluated once.
    At most about ``(maxiter + 1) * popsize * len(variables)`` evaluations. Deterministic for a
    given ``seed`` when ``evaluate`` is.
    """
    names = list(variables)
    _check(names, variables, integers, maxiter, popsize)
    integer = np.array([name in integers for name in names])
    cache: dict[tuple[float, ...], _Record] = {}
    records: list[_Record] = []

    def record(x: np.ndarray) -> _Record:
        design = {name: _round(value, is_int) for name, value, is_int in zip(names, x, integer, strict=True)}
        key = tuple(design.values())
        if key not in cache:
            cache[key] = _evaluate(evaluate, design, objective, constraints, variables)
            records.append(cache[key])
        return cache[key]

    def energy(x: np.ndarray) -> float:
        value = record(x).objective
        if math.isnan(value):
            return math.inf
        return value if minimize else -value

    def violations(x: np.ndarray) -> np.ndarray:
        return record(x).components

    bounds = [(float(low), float(high)) for low, high in variables.values()]
    differential_evolution(energy, bounds, rng=np.random.default_rng(seed), maxiter=maxiter, popsize=popsize,
                           tol=tol, polish=False, integrality=integer if integer.any() else None,
                           constraints=NonlinearConstraint(violations, -np.inf, 0.0))
    best = _best(records, minimize)
    return DesignOptimum(design=dict(best.design), metrics=dict(best.metrics), objective=best.objective,
                         feasible=best.violation == 0, evaluations=len(records),
                         history=_history(records, names), objective_name=objective, minimize=minimize,
                         violation=best.violation)


@dataclass(frozen=True)
class _Record:
    """One evaluated design: its metrics, objective value and constraint components for the solver."""

    design: dict[str, float]
    metrics: dict[str, Any]
    objective: float
    violation: float
    components: np.ndarray
    error: str | None


def _check(names: list[str], variables: Mapping[str, tuple[float, float]], integers: Sequence[str],
           maxiter: int, popsize: int) -> None:
    """Reject empty or reversed bounds, unknown integer names and non-positive budgets."""
    if not names:
        raise ValueError("variables is empty: give at least one name -> (low, high)")
    for name, (low, high) in variables.items():
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"bounds of {name!r} must be finite with low < high, got ({low}, {high})")
        if name in integers and math.ceil(low) > math.floor(high):
            raise ValueError(f"integer variable {name!r} has no integer in ({low}, {high})")
    for name in integers:
        if name not in variables:
            raise ValueError(f"integer variable {name!r} is not a variable; variables: {names}")
    if maxiter < 0 or popsize < 1:
        raise ValueError(f"maxiter must be >= 0 and popsize >= 1, got {maxiter} and {popsize}")


def _round(value: float, is_int: bool) -> float:
    """The cache-key form of one variable: an int, or a float to ``_DIGITS`` significant digits."""
    if is_int:
        return round(float(value))
    return float(f"{float(value):.{_DIGITS}g}")


def _lookup(name: str, design: Mapping[str, float], metrics: Mapping[str, Any], what: str) -> float:
    """The value of a variable or metric as a float; ValueError when it is neither."""
    if name in design:
        return float(design[name])
    if name not in metrics:
        raise ValueError(f"{what} {name!r} is neither a variable nor a metric; "
                         f"variables: {list(design)}, metrics: {list(metrics)}")
    value = metrics[name]
    return math.nan if value is None else float(value)


def _evaluate(evaluate: DesignEvaluate, design: dict[str, float], objective: str,
              constraints: Sequence[Constraint], variables: Mapping[str, tuple[float, float]]) -> _Record:
    """Evaluate one design and score it; InfeasibleError and NaN values count as failures."""
    failed = np.full(len(constraints) + 1, _FAILED)
    try:
        metrics = dict(evaluate(dict(design)))
    except InfeasibleError as error:
        return _Record(design, {}, math.nan, math.inf, failed, str(error))
    value = _lookup(objective, design, metrics, "objective")
    parts = [c.violation(_lookup(c.metric, design, metrics, "constraint metric")) for c in constraints]
    if math.isnan(value) or any(math.isinf(part) for part in parts):
        return _Record(design, metrics, value, math.inf, failed, "objective or constrained metric is NaN")
    return _Record(design, metrics, value, float(sum(parts)), np.array([*parts, 0.0]), None)


def _best(records: list[_Record], minimize: bool) -> _Record:
    """The best feasible record (first on ties), else the least-violating one."""
    feasible = [r for r in records if r.violation == 0]
    if feasible:
        sign = 1.0 if minimize else -1.0
        return min(feasible, key=lambda r: sign * r.objective)
    return min(records, key=lambda r: r.violation)


def _history(records: list[_Record], names: list[str]) -> pd.DataFrame:
    """One tidy row per evaluated design, in evaluation order."""
    rows = []
    for index, r in enumerate(records):
        metrics = {key: value for key, value in r.metrics.items() if key not in r.design}
        rows.append({"evaluation": index, **r.design, **metrics, "objective": r.objective,
                     "violation": r.violation, "feasible": r.violation == 0, "error": r.error})
    frame = pd.DataFrame.from_records(rows)
    tail = ["objective", "violation", "feasible", "error"]
    middle = [c for c in frame.columns if c not in ("evaluation", *names, *tail)]
    return frame[["evaluation", *names, *middle, *tail]]
