"""Sensitivity of one metric to the design variables: one-at-a-time sweeps and Sobol indices.

``evaluate`` takes a DataFrame of design points (one column per variable, in the variables' own
units, e.g. ``hbm_bandwidth_bytes_per_s``) and returns the metric per row (any unit, e.g.
``tpot_s``), NaN for an infeasible point. It is called once per analysis, with every point.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import qmc

from decodex.explore.pareto import ExploreArgumentError, did_you_mean
from decodex.workloads.batch import MAX_SEED, is_number, is_whole

Evaluate = Callable[[pd.DataFrame], np.ndarray]

_BOOTSTRAP_CELLS = 1 << 22  # resampled values held at once per variable
MIN_STEPS = 2  # one-at-a-time values per variable: a swing needs two (the range's ends)
MAX_STEPS = 1000  # one-at-a-time values per variable (each is one evaluation)
MAX_VARIABLES = 100  # variables one analysis varies
MIN_SAMPLES = 2  # Sobol base samples: the estimators need a variance
MAX_SAMPLES = 2**16  # Sobol base samples (n (k + 2) evaluations)
MAX_BOOTSTRAP = 10_000  # bootstrap resamples of the Sobol confidence interval


@dataclass(frozen=True)
class OneAtATime:
    """Result of :func:`one_at_a_time`.

    ``summary``: one row per variable (variable, low, high, metric_at_low, metric_at_high,
    metric_min, metric_max, swing, relative_swing), largest swing first. ``points``: every
    evaluated point (the base point first), its variable columns, ``varied`` (the variable moved,
    missing (NaN) for the base point) and ``metric``. ``base_metric``: the metric at the base point.
    """

    summary: pd.DataFrame
    points: pd.DataFrame
    base_metric: float


def one_at_a_time(evaluate: Evaluate, base: Mapping[str, float], ranges: Mapping[str, tuple[float, float]],
                  steps: int = 5) -> OneAtATime:
    """Move each variable of ``ranges`` over ``steps`` evenly spaced values with the others at ``base``.

    ``base`` gives every variable's base value (variables absent from ``ranges`` stay fixed);
    ``ranges`` maps a variable to ``(low, high)`` in its own unit. The metric is in whatever unit
    ``evaluate`` returns. ``swing`` = max - min of the metric over the sweep (NaN ignored; NaN when
    every value is NaN); ``relative_swing`` = swing / |metric at base| (NaN when that is 0 or NaN).
    ``steps``: a whole number in [MIN_STEPS, MAX_STEPS]. Every bad argument is an
    :class:`~explore.pareto.ExploreArgumentError` (an ArgumentError and a ValueError) naming it.
    """
    _check_callable(evaluate)
    if not is_whole(steps) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise ExploreArgumentError(f"steps must be an integer in [{MIN_STEPS}, {MAX_STEPS}] (values per variable; "
                                   f"a swing needs both ends of the range), got {steps!r:.80}")
    if not isinstance(base, Mapping):
        raise ExploreArgumentError(f"base: must be a mapping variable -> value, got {type(base).__name__}")
    for name, value in base.items():
        if not is_number(value):
            raise ExploreArgumentError(f"base value of {name!r} must be a finite number, got {value!r:.80}")
    _check_bounds("ranges", ranges, strict=False)
    for name in ranges:
        if name not in base:
            raise ExploreArgumentError(f"variable {name!r} has a range but no base value"
                                       f"{did_you_mean(name, base)}; base has {list(base)}")
    for reserved in ("varied", "metric"):
        if reserved in base:
            raise ExploreArgumentError(f"variable name {reserved!r} is reserved for the points frame")
    names = list(base)
    base_row = {name: float(value) for name, value in base.items()}
    rows: list[dict[str, float]] = [dict(base_row)]
    varied: list[str | None] = [None]
    for name, (low, high) in ranges.items():
        for value in np.linspace(low, high, steps):
            rows.append({**base_row, name: float(value)})
            varied.append(name)
    design = pd.DataFrame(rows, columns=names)
    metric = _call(evaluate, design)
    points = design.assign(varied=varied, metric=metric)
    base_metric = float(metric[0])
    records = []
    for name, (low, high) in ranges.items():
        values = points.loc[points["varied"] == name, "metric"].to_numpy(dtype=float)
        finite = values[~np.isnan(values)]
        lowest = float(finite.min()) if len(finite) else np.nan
        highest = float(finite.max()) if len(finite) else np.nan
        swing = highest - lowest
        relative = swing / abs(base_metric) if np.isfinite(base_metric) and base_metric != 0 else np.nan
        records.append({"variable": name, "low": float(low), "high": float(high),
                        "metric_at_low": float(values[0]), "metric_at_high": float(values[-1]),
                        "metric_min": lowest, "metric_max": highest, "swing": swing, "relative_swing": relative})
    summary = pd.DataFrame.from_records(records)
    summary = summary.sort_values("swing", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return OneAtATime(summary=summary, points=points, base_metric=base_metric)


def sobol_indices(evaluate: Evaluate, bounds: Mapping[str, tuple[float, float]], n: int = 256, seed: int = 0,
                  n_bootstrap: int = 200, confidence: float = 0.95) -> pd.DataFrame:
    """First-order (S1) and total (ST) Sobol indices of the metric for inputs uniform on ``bounds``.

    Saltelli (2010) design: matrices A and B (n rows each) from a scrambled Sobol sequence of
    dimension 2k, and for each variable i the matrix A_B^i (A with column i taken from B); one
    ``evaluate`` call with all n(k + 2) points. S1 uses the Saltelli (2010) estimator
    mean(f_B (f_AB^i - f_A)) / V and ST the Jansen estimator mean((f_A - f_AB^i)^2) / (2V), with V the
    variance of f over A and B. A base sample j whose metric is not finite at any of its k + 2
    points is dropped everywhere (count in ``dropped``). Indices are unit-free fractions of
    variance; ``bounds`` are in each variable's own unit. The confidence interval
    (``S1_low``..``ST_high``) is a seeded percentile bootstrap over the base samples.
    Columns: variable, S1, S1_low, S1_high, ST, ST_low, ST_high, samples, dropped; rows in the
    order of ``bounds``. Deterministic for a given ``seed``. Ranges: ``n`` [MIN_SAMPLES,
    MAX_SAMPLES], ``n_bootstrap`` [1, MAX_BOOTSTRAP], ``confidence`` (0, 1), ``seed``
    [0, 2**63 - 1]; every bad argument is an :class:`~explore.pareto.ExploreArgumentError`.
    """
    _check_callable(evaluate)
    if not is_whole(n) or not MIN_SAMPLES <= n <= MAX_SAMPLES:
        raise ExploreArgumentError(f"n must be an integer in [{MIN_SAMPLES}, {MAX_SAMPLES}] (Sobol base samples), "
                                   f"got {n!r:.80}")
    if not is_whole(n_bootstrap) or not 1 <= n_bootstrap <= MAX_BOOTSTRAP:
        raise ExploreArgumentError(f"n_bootstrap must be an integer in [1, {MAX_BOOTSTRAP}], got {n_bootstrap!r:.80}")
    if not is_number(confidence) or not 0 < confidence < 1:
        raise ExploreArgumentError(f"confidence must be in (0, 1), got {confidence!r:.80}")
    if not is_whole(seed) or not 0 <= seed <= MAX_SEED:
        raise ExploreArgumentError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r:.80}")
    _check_bounds("bounds", bounds, strict=True)
    names = list(bounds)
    k = len(names)
    low = np.array([bounds[name][0] for name in names], dtype=float)
    high = np.array([bounds[name][1] for name in names], dtype=float)
    sobol_rng, bootstrap_rng = np.random.default_rng(seed).spawn(2)
    sampler = qmc.Sobol(d=2 * k, scramble=True, rng=sobol_rng)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol", category=UserWarning)
        unit = sampler.random(n)
    a = low + unit[:, :k] * (high - low)
    b = low + unit[:, k:] * (high - low)
    blocks = [a, b]
    for i in range(k):
        ab = a.copy()
        ab[:, i] = b[:, i]
        blocks.append(ab)
    metric = _call(evaluate, pd.DataFrame(np.vstack(blocks), columns=names)).reshape(k + 2, n)
    valid = np.isfinite(metric).all(axis=0)
    f_a, f_b, f_ab = metric[0, valid], metric[1, valid], metric[2:, valid]
    samples = int(valid.sum())
    tail = (1 - confidence) / 2 * 100
    records = []
    for i, name in enumerate(names):
        s1, st = np.nan, np.nan
        if samples >= 2:
            s1_value, st_value = _estimate(f_a, f_b, f_ab[i])
            s1, st = float(s1_value), float(st_value)
        boot_s1, boot_st = _bootstrap(f_a, f_b, f_ab[i], n_bootstrap, bootstrap_rng)
        s1_low, s1_high = _percentiles(boot_s1, tail)
        st_low, st_high = _percentiles(boot_st, tail)
        records.append({"variable": name, "S1": s1, "S1_low": s1_low, "S1_high": s1_high,
                        "ST": st, "ST_low": st_low, "ST_high": st_high,
                        "samples": samples, "dropped": n - samples})
    return pd.DataFrame.from_records(records)


def _check_callable(evaluate: object) -> None:
    if not callable(evaluate):
        raise ExploreArgumentError(f"evaluate: must be a function of a DataFrame of points, got "
                                   f"{type(evaluate).__name__}")


def _check_bounds(what: str, bounds: object, strict: bool) -> None:
    """``bounds`` maps at most MAX_VARIABLES names to (low, high), finite, low < high (``strict``)
    or low <= high; ExploreArgumentError naming ``what`` and the variable otherwise."""
    if not isinstance(bounds, Mapping):
        raise ExploreArgumentError(f"{what}: must be a mapping variable -> (low, high), got {type(bounds).__name__}")
    if not bounds:
        raise ExploreArgumentError(f"{what} is empty: give at least one variable -> (low, high)")
    if len(bounds) > MAX_VARIABLES:
        raise ExploreArgumentError(f"{what}: {len(bounds)} variables, more than {MAX_VARIABLES}")
    order = "low < high" if strict else "low <= high"
    for name, pair in bounds.items():
        label = "bounds" if strict else "range"
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ExploreArgumentError(f"{label} of {name!r} must be a pair (low, high), got {pair!r:.80}")
        low, high = pair
        if not (is_number(low) and is_number(high)) or not (low < high if strict else low <= high):
            raise ExploreArgumentError(f"{label} of {name!r} must be finite with {order}, got ({low!r}, {high!r})")


def _call(evaluate: Evaluate, design: pd.DataFrame) -> np.ndarray:
    """Call ``evaluate`` on every point and check it returns one float per row."""
    values = evaluate(design)
    try:
        metric = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ExploreArgumentError(f"evaluate must return one number per point: {error}") from None
    if metric.shape != (len(design),):
        raise ExploreArgumentError(f"evaluate returned {metric.size} values for {len(design)} points")
    return metric


def _estimate(f_a: np.ndarray, f_b: np.ndarray, f_ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S1 (Saltelli 2010) and ST (Jansen) for one variable along the last axis (NaN when V = 0)."""
    variance = np.concatenate([f_a, f_b], axis=-1).var(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = np.mean(f_b * (f_ab - f_a), axis=-1) / variance
        st = 0.5 * np.mean((f_a - f_ab) ** 2, axis=-1) / variance
    return np.where(variance > 0, s1, np.nan), np.where(variance > 0, st, np.nan)


def _bootstrap(f_a: np.ndarray, f_b: np.ndarray, f_ab: np.ndarray, resamples: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """S1 and ST of ``resamples`` bootstrap resamples of the base samples (chunked for memory)."""
    count = len(f_a)
    if count < 2:
        return np.full(resamples, np.nan), np.full(resamples, np.nan)
    s1 = np.empty(resamples)
    st = np.empty(resamples)
    chunk = max(1, _BOOTSTRAP_CELLS // count)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        index = rng.integers(0, count, size=(stop - start, count))
        s1[start:stop], st[start:stop] = _estimate(f_a[index], f_b[index], f_ab[index])
    return s1, st


def _percentiles(values: np.ndarray, tail: float) -> tuple[float, float]:
    """The (tail, 100 - tail) percentiles of the finite ``values``; NaN when there are none."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.nan, np.nan
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
