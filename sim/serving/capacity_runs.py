"""One run of a capacity search: the SLOs it is judged by, whether it reached steady state, and
its row of the capacity curve (rate, latency percentiles, throughput, verdict).

SLO keys are ``METRIC_QUANTILE``: METRIC one of ``ttft`` (time to first token), ``tpot`` (time
per output token after the first), ``e2e`` (arrival to last token), ``sched_delay`` (arrival
to the start of the first iteration that prefills the request: the scheduling delay of
Sarathi-Serve and Vidur); QUANTILE one of ``p50``, ``p90``, ``p99``. Values are seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.sim.serving.metrics import QUANTILES, percentiles
from decodex.sim.serving.request_metrics import RequestMetrics

METRICS = ("ttft", "tpot", "e2e", "sched_delay")
SLO_KEYS = tuple(f"{metric}_{q}" for metric in METRICS for q in QUANTILES)
MAX_SLO_S = 1e6  # s: an SLO of about 11 days; anything longer is a typo

STEADY_SPAN_FACTOR = 5.0
"""A run is long enough when its arrivals span at least this many mean E2E latencies (so the
ramp-up at the start and the drain at the end are a small part of it)."""
GROWTH_LIMIT = 0.05
"""A run is overloaded (its queue grows) when the number of requests waiting to be scheduled
(arrived, first prefill not started) rises, over the second half of the arrival window
(least-squares line), by more than this fraction of the requests that arrive in that half: the
scheduler admits about 5 % fewer requests than arrive. The waiting queue, not the number in
system: with continuous batching the running batch grows with the load (and with a trace's own
rising rate) while the replica keeps up; only the queue in front of it grows without bound."""
GROWTH_MIN_REQUESTS = 3.0
"""...and by more than this many requests (a rise of one or two is noise at a low rate)."""
GRID_POINTS = 65  # times at which the waiting queue is sampled over the second half


def parse_slo(slo: Mapping[str, float]) -> dict[str, float]:
    """``slo`` checked: a non-empty mapping from :data:`SLO_KEYS` to seconds in (0, MAX_SLO_S];
    ArgumentError naming the bad key (and the allowed ones) or value otherwise."""
    if not isinstance(slo, Mapping) or not slo:
        raise ArgumentError(f"slo: give at least one of {', '.join(SLO_KEYS)} (seconds), got {slo!r:.80}")
    out: dict[str, float] = {}
    for key, value in slo.items():
        if key not in SLO_KEYS:
            raise ArgumentError(f"slo: unknown key {key!r:.40}; allowed: {', '.join(SLO_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and 0 < value <= MAX_SLO_S):
            raise ArgumentError(f"slo: {key} = {value!r:.40} must be a number of seconds in (0, {MAX_SLO_S:g}]")
        out[key] = float(value)
    return out


def parse_slo_text(text: str) -> dict[str, float]:
    """``"ttft_p99=2,tpot_p99=0.1"`` as a checked SLO mapping (seconds; :func:`parse_slo`)."""
    out: dict[str, float] = {}
    for part in str(text).split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ArgumentError(f"--slo: {part.strip()!r:.60} is not KEY=SECONDS (e.g. ttft_p99=2,tpot_p99=0.1); "
                                f"keys: {', '.join(SLO_KEYS)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ArgumentError(f"--slo: {key} = {value.strip()!r:.40} is not a number of seconds") from None
    return parse_slo(out)


@dataclass(frozen=True)
class Steadiness:
    """Whether a run reached steady state. ``steady``: long enough and its queue not growing;
    ``overloaded``: the queue grows (the run is over capacity, whatever its latencies);
    ``growth``: the rise of the waiting queue over the second half of the arrival window as
    a fraction of that half's arrivals; ``span_ratio``: arrival span / mean E2E latency;
    ``reason``: one line."""

    steady: bool
    overloaded: bool
    growth: float
    span_ratio: float
    reason: str


def steadiness(arrival_s: np.ndarray, scheduled_s: np.ndarray, finish_s: np.ndarray) -> Steadiness:
    """The steady-state check of one run from its requests' arrival, first-scheduled and finish
    times (s); see :data:`STEADY_SPAN_FACTOR` and :data:`GROWTH_LIMIT`."""
    arrival = np.sort(np.asarray(arrival_s, dtype=np.float64))
    scheduled = np.sort(np.asarray(scheduled_s, dtype=np.float64))
    span = float(arrival[-1] - arrival[0])
    mean_e2e = float(np.mean(finish_s - arrival_s))
    if span <= 0 or arrival.size < 4:
        return Steadiness(False, False, float("nan"), 0.0, "too short: the requests arrive at one instant")
    ratio = span / mean_e2e if mean_e2e > 0 else math.inf
    half = arrival[0] + span / 2
    grid = np.linspace(half, arrival[-1], GRID_POINTS)
    waiting = np.searchsorted(arrival, grid, side="right") - np.searchsorted(scheduled, grid, side="right")
    slope = float(np.polyfit(grid - half, waiting.astype(np.float64), 1)[0])  # requests/s
    rise = slope * span / 2
    arrived = int(arrival.size - np.searchsorted(arrival, half, side="left"))
    growth = rise / max(arrived, 1)
    if growth > GROWTH_LIMIT and rise > GROWTH_MIN_REQUESTS:
        return Steadiness(False, True, growth, ratio,
                          f"queue growing: +{rise:.0f} requests waiting over the second half of the arrivals "
                          f"({growth:.0%} of the {arrived} that arrived then)")
    if ratio < STEADY_SPAN_FACTOR:
        return Steadiness(False, False, growth, ratio,
                          f"too short: arrivals span {span:.3g} s = {ratio:.1f} x the mean E2E of {mean_e2e:.3g} s "
                          f"(< {STEADY_SPAN_FACTOR:g}); raise requests")
    return Steadiness(True, False, growth, ratio, "steady")


def run_steadiness(result: RequestMetrics) -> Steadiness:
    """The steady-state check of a run: of its waiting queue (arrival to first scheduled); for a
    disaggregated run (``decode_admit_s``), also of its decode instances' queue (KV arrival to
    admission), the worse of the two (overloaded first, then too short)."""
    state = steadiness(result.arrival_s, result.scheduled_s, result.finish_s)  # type: ignore[attr-defined]
    admit = getattr(result, "decode_admit_s", None)
    if admit is None or state.overloaded:
        return state
    sent = ~np.isnan(admit)
    if sent.sum() < 4:
        return state
    decode = steadiness(result.transfer_end_s[sent], admit[sent], result.finish_s[sent])  # type: ignore[attr-defined]
    if decode.overloaded:
        return Steadiness(False, True, decode.growth, state.span_ratio, "decode " + decode.reason)
    return state


def metric_values(result: RequestMetrics, metric: str) -> np.ndarray:
    """Per-request values of ``metric`` (one of :data:`METRICS`), s."""
    if metric == "sched_delay":
        return result.scheduled_s - result.arrival_s  # type: ignore[attr-defined]
    return {"ttft": result.ttft_s, "tpot": result.tpot_s, "e2e": result.e2e_s}[metric]


def run_row(rate: float, rate_scale: float | None, result: RequestMetrics,
            slo: Mapping[str, float]) -> dict[str, Any]:
    """The capacity-curve row of one run (a ServingResult, ClusterResult or DisaggResult) at
    ``rate`` requests/s (``rate_scale``: the trace's replay factor, None for a synthetic
    workload): ``{metric}_{p50,p90,p99,mean}_s`` for every metric (s), throughputs, Little's law
    terms, the steady-state check, ``meets_slo`` (every SLO met), ``worst_slo`` (the SLO with the
    highest value / limit) and ``worst_ratio``, ``passes`` (SLOs met and the queue not growing)."""
    row: dict[str, Any] = {"rate_per_s": float(rate), "rate_scale": rate_scale, "requests": result.num_requests}
    for metric in METRICS:
        stats = percentiles(metric_values(result, metric))
        row.update({f"{metric}_{q}_s": stats[q] for q in (*QUANTILES, "mean")})
    ratios = {key: row[f"{key}_s"] / limit for key, limit in slo.items()}
    worst = max(ratios, key=lambda k: -math.inf if math.isnan(ratios[k]) else ratios[k])
    meets = all(not ratio > 1.0 for ratio in ratios.values())  # NaN (no request has the metric) is met
    state = run_steadiness(result)
    row.update({
        "throughput_tokens_per_s": result.throughput_tokens_per_s,
        "request_throughput_per_s": result.request_throughput_per_s,
        "mean_in_system": result.mean_in_system, "arrival_span_s": float(np.ptp(result.arrival_s)),
        "utilization": result.utilization, "preemptions": result.preemptions,  # type: ignore[attr-defined]
        "meets_slo": meets, "worst_slo": worst, "worst_ratio": ratios[worst],
        "steady": state.steady, "overloaded": state.overloaded, "queue_growth": state.growth,
        "span_over_e2e": state.span_ratio, "steady_reason": state.reason,
        "passes": meets and not state.overloaded,
    })
    return row
