"""Pareto fronts of design points: which designs no other design beats on every objective.

Values are unit-free here: each objective column keeps whatever unit its name carries
(``tpot_s``, ``energy_j``, ``usd_per_hour``); only the direction (``"max"`` or ``"min"``) matters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from decodex.core.errors import ArgumentError
from decodex.core.errors import did_you_mean as core_did_you_mean

DIRECTIONS = ("max", "min")
_BLOCK = 512  # rows per block in the k >= 3 path
_PIVOTS = 32  # good rows that first knock out what they dominate (k >= 3)
_CELLS = 1 << 21  # row pairs compared at once, bounding temporary memory


class ExploreArgumentError(ArgumentError, ValueError):
    """A bad argument to an exploration function (``pareto_front``, ``optimize_design``,
    ``one_at_a_time``, ``sobol_indices``): an :class:`~decodex.core.errors.ArgumentError`, one
    line naming the argument and what is allowed, that is also the ValueError these functions
    raised before (callers catching ValueError keep working)."""


def did_you_mean(name: object, known: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to ``name`` (difflib), else ``""``."""
    close = core_did_you_mean(name, known)
    return f"; {close}" if close else ""


def pareto_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an ``(n, k)`` array of objective values.

    Row ``p`` is dominated when another row is at least as good in every column and strictly
    better in one; ``maximize[j]`` says whether column ``j`` is better high (else low). Rows with
    any NaN are never on the front; exact duplicates of a non-dominated row are all on it.
    Units are whatever the columns hold (they are compared per column only).
    Cost: O(n log n) for k <= 2, about O(n * front size) comparisons for k >= 3.
    """
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ExploreArgumentError(f"values must be a 2-D (n, k) array of numbers: {error}") from None
    if array.ndim != 2:
        raise ExploreArgumentError(f"values must be a 2-D (n, k) array, got shape {array.shape}")
    n, k = array.shape
    directions = np.asarray(maximize)
    if directions.ndim != 1 or directions.shape != (k,) or (directions.size and directions.dtype != bool):
        raise ExploreArgumentError(f"maximize must hold one flag per column ({k}), each True or False, "
                                   f"got {maximize!r:.80}")
    mask = np.zeros(n, dtype=bool)
    valid = ~np.isnan(array).any(axis=1)
    if k == 0 or not valid.any():
        mask[valid] = True
        return mask
    rows = np.flatnonzero(valid)
    cost = np.where(directions, -array[rows], array[rows])  # everything minimized from here on
    if k == 1:
        mask[rows[cost[:, 0] == cost[:, 0].min()]] = True
    elif k == 2:
        mask[rows[_front_2d(cost)]] = True
    else:
        mask[rows[_front_nd(cost)]] = True
    return mask


def _front_2d(cost: np.ndarray) -> np.ndarray:
    """Non-dominated mask for two minimized columns by one lexicographic sort."""
    order = np.lexsort((cost[:, 1], cost[:, 0]))
    first, second = cost[order, 0], cost[order, 1]
    # Start of each group of equal first values; within a group the sort puts the lowest second first.
    starts = np.r_[True, first[1:] != first[:-1]]
    group = np.cumsum(starts) - 1
    group_min = second[starts]
    # Lowest second value over all groups with a strictly smaller first value.
    before = np.r_[np.inf, np.minimum.accumulate(group_min)[:-1]]
    keep = (second == group_min[group]) & (second < before[group])
    mask = np.zeros(len(cost), dtype=bool)
    mask[order[keep]] = True
    return mask


def _front_nd(cost: np.ndarray) -> np.ndarray:
    """Non-dominated mask for k >= 3 minimized columns, in sorted blocks checked against the front.

    A few good rows (lowest rank sums) first knock out whatever they dominate, which is most rows
    of typical data. Then, after a lexicographic sort every dominator of a row comes before it, so
    each block of survivors is compared with the front found so far and with itself (by
    transitivity a dominated dominator is itself dominated by a front row).
    """
    rows = np.arange(len(cost))
    ranks = cost.argsort(axis=0).argsort(axis=0).sum(axis=1)
    pivots = cost[np.argsort(ranks, kind="stable")[:_PIVOTS]]
    survivors = ~_dominated_by(cost, pivots)
    rows, cost = rows[survivors], cost[survivors]
    order = np.lexsort(cost.T[::-1])
    ranked = cost[order]
    keep = np.zeros(len(ranked), dtype=bool)
    front = np.empty((0, cost.shape[1]))
    for start in range(0, len(ranked), _BLOCK):
        block = ranked[start:start + _BLOCK]
        alive = ~_dominated_by(block, front)
        alive[alive] = ~_dominated_by(block[alive], block[alive])
        keep[start:start + len(block)] = alive
        front = np.concatenate([front, block[alive]])
    mask = np.zeros(len(survivors), dtype=bool)
    mask[rows[order[keep]]] = True
    return mask


def _dominated_by(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each row of ``points``, whether some row of ``others`` dominates it (all minimized)."""
    dominated = np.zeros(len(points), dtype=bool)
    step = max(1, _CELLS // max(1, len(points)))
    for start in range(0, len(others), step):
        chunk = others[None, start:start + step, :]
        no_worse = (chunk <= points[:, None, :]).all(axis=2)
        better = (chunk < points[:, None, :]).any(axis=2)
        dominated |= (no_worse & better).any(axis=1)
    return dominated


def pareto_front(frame: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The non-dominated rows of ``frame`` for ``objectives`` (column -> ``"max"`` or ``"min"``).

    Rows whose ``feasible`` column (when there is one) is False, and rows with NaN in an objective,
    are left out. The front keeps the original index and all columns, sorted ascending by the first
    objective (ties: the next objectives). Units are those of the columns.
    Raises :class:`ExploreArgumentError` (an ArgumentError and a ValueError) naming a missing
    column (with the closest known one) or a bad direction and what is allowed.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ExploreArgumentError(f"frame: must be a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(objectives, Mapping):
        raise ExploreArgumentError(f"objectives: must be a mapping column -> 'max' or 'min', got "
                                   f"{type(objectives).__name__} {objectives!r:.80}")
    if not objectives:
        raise ExploreArgumentError("objectives is empty: give at least one column -> 'max' or 'min'")
    for column, direction in objectives.items():
        if column not in frame.columns:
            raise ExploreArgumentError(f"objective column {column!r} is not in the frame"
                                       f"{did_you_mean(column, frame.columns)}; columns: {list(frame.columns)}")
        if not isinstance(direction, str) or direction not in DIRECTIONS:
            raise ExploreArgumentError(f"objective {column!r} has direction {direction!r}; "
                                       f"allowed: {list(DIRECTIONS)}")
    columns = list(objectives)
    candidates = frame
    if "feasible" in frame.columns:
        candidates = frame[~frame["feasible"].eq(False).to_numpy()]
    try:
        values = candidates[columns].to_numpy(dtype=float)
    except (TypeError, ValueError) as error:
        raise ExploreArgumentError(f"objective columns {columns} must be numeric: {error}") from None
    mask = pareto_mask(values, [objectives[column] == "max" for column in columns])
    return candidates[mask].sort_values(columns, kind="stable")
