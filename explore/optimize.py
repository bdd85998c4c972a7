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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import NonlinearConstraint, differential_evolution

from decodex.core.errors import InfeasibleError
from decodex.explore.pareto import ExploreArgumentError, did_you_mean
from decodex.workloads.batch import MAX_SEED, is_number, is_whole

DesignEvaluate = Callable[[Mapping[str, float]], Mapping[str, float]]

OPERATORS = ("<=", ">=")
MAX_ITERATIONS = 1000  # differential-evolution generations (maxiter)
MAX_POPSIZE = 1000  # population per variable (popsize)
MAX_EVALUATIONS = 200_000  # (maxiter + 1) x popsize x variables: the most designs a run may evaluate
MAX_VARIABLES = 100  # design variables of one search
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
        if not isinstance(self.metric, str) or not self.metric:
            raise ExploreArgumentError(f"constraint metric must be a metric or variable name, got {self.metric!r:.80}")
        if not isinstance(self.op, str) or self.op not in OPERATORS:
            raise ExploreArgumentError(f"constraint on {self.metric!r} has op {self.op!r}; allowed: {list(OPERATORS)}")
        if not is_number(self.bound):
            raise ExploreArgumentError(f"constraint on {self.metric!r} needs a finite bound, got {self.bound!r:.80}")
        object.__setattr__(self, "bound", float(self.bound))

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
                    seed: int = 0, maxiter: int = 50, popsize: int = 10, tol: float = 0.01,
                    metrics: Collection[str] | None = None) -> DesignOptimum:
    """Minimize (or maximize) ``objective`` over the box ``variables`` subject to ``constraints``.

    ``variables`` maps a name to ``(low, high)`` in its own unit; names in ``integers`` take
    integer values only. ``objective`` is a metric returned by ``evaluate`` or a variable (e.g.
    minimize a bandwidth in B/s subject to ``tpot_s <= 0.05``). Uses
    ``scipy.optimize.differential_evolution`` (seeded ``numpy.random.Generator``, no gradient
    polish, ``popsize`` and ``maxiter`` as there, ``tol`` its relative convergence tolerance);
    each distinct design (continuous values rounded to 12 significant digits) is evaluated once.
    At most about ``(maxiter + 1) * popsize * len(variables)`` evaluations. Deterministic for a
    given ``seed`` when ``evaluate`` is.

    ``metrics``: the names ``evaluate`` returns, when known beforehand (e.g. a sweep's metric
    columns): ``objective`` and each constraint's metric are then checked against them and the
    variables before any evaluation; otherwise against the first evaluated design's metrics.
    Ranges: ``maxiter`` [0, MAX_ITERATIONS], ``popsize`` [1, MAX_POPSIZE], at most
    MAX_EVALUATIONS evaluations in all, ``tol`` [0, 1], ``seed`` [0, 2**63 - 1]. Every bad
    argument is an :class:`~explore.pareto.ExploreArgumentError` (an ArgumentError and a
    ValueError) naming it and what is allowed.
    """
    names = _check(evaluate, variables, objective, minimize, constraints, integers, seed, maxiter, popsize, tol)
    if metrics is not None:
        _check_names(objective, constraints, names, metrics)
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


def _check(evaluate: object, variables: object, objective: object, minimize: object, constraints: object,
           integers: object, seed: object, maxiter: object, popsize: object, tol: object) -> list[str]:
    """The variables' names, once every argument is known good: bounds finite with low < high,
    integer names among the variables, budgets whole numbers within their bounded ranges.
    ExploreArgumentError naming the first bad argument otherwise."""
    if not callable(evaluate):
        raise ExploreArgumentError(f"evaluate: must be a function of a design, got {type(evaluate).__name__}")
    if not isinstance(variables, Mapping):
        raise ExploreArgumentError(f"variables: must be a mapping name -> (low, high), got {type(variables).__name__}")
    names = list(variables)
    if not names:
        raise ExploreArgumentError("variables is empty: give at least one name -> (low, high)")
    if len(names) > MAX_VARIABLES:
        raise ExploreArgumentError(f"variables: {len(names)} variables, more than {MAX_VARIABLES}")
    if not isinstance(integers, Collection) or isinstance(integers, str):
        raise ExploreArgumentError(f"integers: must be a list of variable names, got {integers!r:.80}")
    for name, pair in variables.items():
        if not isinstance(name, str) or not name:
            raise ExploreArgumentError(f"variables: names must be non-empty strings, got {name!r:.80}")
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ExploreArgumentError(f"bounds of {name!r} must be a pair (low, high), got {pair!r:.80}")
        low, high = pair
        if not (is_number(low) and is_number(high)) or not low < high:
            raise ExploreArgumentError(f"bounds of {name!r} must be finite with low < high, got ({low!r}, {high!r})")
        if name in integers and math.ceil(low) > math.floor(high):
            raise ExploreArgumentError(f"integer variable {name!r} has no integer in ({low}, {high})")
    for name in integers:
        if name not in variables:
            raise ExploreArgumentError(f"integer variable {name!r} is not a variable{did_you_mean(name, names)}; "
                                       f"variables: {names}")
    if not isinstance(objective, str) or not objective:
        raise ExploreArgumentError(f"objective: must be a metric or variable name, got {objective!r:.80}")
    if not isinstance(minimize, bool):
        raise ExploreArgumentError(f"minimize: must be True or False, got {minimize!r:.80}")
    if isinstance(constraints, str) or not isinstance(constraints, Collection) or not all(
            isinstance(c, Constraint) for c in constraints):
        raise ExploreArgumentError(f"constraints: must be a list of Constraint, got {constraints!r:.80}")
    if not is_whole(seed) or not 0 <= seed <= MAX_SEED:  # type: ignore[operator]
        raise ExploreArgumentError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r:.80}")
    if not is_whole(maxiter) or not 0 <= maxiter <= MAX_ITERATIONS:  # type: ignore[operator]
        raise ExploreArgumentError(f"maxiter must be an integer in [0, {MAX_ITERATIONS}] (generations), "
                                   f"got {maxiter!r:.80}")
    if not is_whole(popsize) or not 1 <= popsize <= MAX_POPSIZE:  # type: ignore[operator]
        raise ExploreArgumentError(f"popsize must be an integer in [1, {MAX_POPSIZE}] (designs per variable), "
                                   f"got {popsize!r:.80}")
    evaluations = (maxiter + 1) * popsize * len(names)  # type: ignore[operator]
    if evaluations > MAX_EVALUATIONS:
        raise ExploreArgumentError(f"maxiter, popsize: (maxiter + 1) x popsize x {len(names)} variables = "
                                   f"{evaluations} evaluations, more than {MAX_EVALUATIONS}; lower maxiter or popsize")
    if not is_number(tol) or not 0 <= tol <= 1:  # type: ignore[operator]
        raise ExploreArgumentError(f"tol must be a number in [0, 1] (relative convergence tolerance), got {tol!r:.80}")
    return names


def _check_names(objective: str, constraints: Sequence[Constraint], variables: Sequence[str],
                 metrics: Collection[str]) -> None:
    """Refuse an objective or constraint metric that is neither a variable nor one of ``metrics``."""
    if isinstance(metrics, str) or not isinstance(metrics, Collection):
        raise ExploreArgumentError(f"metrics: must be a list of metric names, got {metrics!r:.80}")
    for what, name in [("objective", objective), *(("constraint metric", c.metric) for c in constraints)]:
        if name not in variables and name not in metrics:
            raise ExploreArgumentError(f"{what} {name!r} is neither a variable nor a metric"
                                       f"{did_you_mean(name, [*variables, *metrics])}; "
                                       f"variables: {list(variables)}, metrics: {sorted(metrics)}")


def _round(value: float, is_int: bool) -> float:
    """The cache-key form of one variable: an int, or a float to ``_DIGITS`` significant digits."""
    if is_int:
        return round(float(value))
    return float(f"{float(value):.{_DIGITS}g}")


def _lookup(name: str, design: Mapping[str, float], metrics: Mapping[str, Any], what: str) -> float:
    """The value of a variable or metric as a float (NaN for None or a non-number);
    ExploreArgumentError (naming the closest known name) when it is neither."""
    if name in design:
        return float(design[name])
    if name not in metrics:
        raise ExploreArgumentError(f"{what} {name!r} is neither a variable nor a metric"
                                   f"{did_you_mean(name, [*design, *metrics])}; "
                                   f"variables: {list(design)}, metrics: {list(metrics)}")
    value = metrics[name]
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


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
