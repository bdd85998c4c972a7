"""Serving metrics from request and token timestamps (all times in seconds).

TTFT = first token − arrival; E2E = finish − arrival; TPOT = (E2E − TTFT) / (output tokens − 1)
(NaN for one-token outputs); TBT = gaps between consecutive tokens of one request.
"""

from __future__ import annotations

import numpy as np

QUANTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def percentiles(values: np.ndarray) -> dict[str, float]:
    """``{"p50", "p90", "p99", "mean"}`` of ``values`` ignoring NaN (NaN when none is finite)."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return {**dict.fromkeys(QUANTILES, float("nan")), "mean": float("nan")}
    points = np.percentile(data, list(QUANTILES.values()))
    return {**{k: float(v) for k, v in zip(QUANTILES, points, strict=True)}, "mean": float(data.mean())}


def ttft(arrival_s: np.ndarray, first_token_s: np.ndarray) -> np.ndarray:
    """Time to first token per request, s."""
    return first_token_s - arrival_s


def e2e(arrival_s: np.ndarray, finish_s: np.ndarray) -> np.ndarray:
    """End-to-end latency per request (arrival to last token), s."""
    return finish_s - arrival_s


def tpot(arrival_s: np.ndarray, first_token_s: np.ndarray, finish_s: np.ndarray,
         output_tokens: np.ndarray) -> np.ndarray:
    """Time per output token after the first, (E2E − TTFT) / (output − 1), s; NaN for 1-token outputs."""
    steps = (output_tokens - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (finish_s - first_token_s) / steps
    out[steps <= 0] = np.nan
    return out


def time_between_tokens(token_time_s: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """All gaps between consecutive tokens of the same request, s.

    ``token_time_s`` holds every request's token times back to back; request ``i`` owns
    ``token_time_s[offsets[i]:offsets[i + 1]]`` (``offsets`` has one entry more than requests).
    """
    if token_time_s.size < 2:
        return np.zeros(0)
    gaps = np.diff(token_time_s)
    keep = np.ones(gaps.size, dtype=bool)
    starts = offsets[1:-1]  # the first token of each request after the first
    starts = starts[(starts > 0) & (starts <= gaps.size)]
    keep[starts - 1] = False
    return gaps[keep]


def meets_slo(ttft_s: np.ndarray, tpot_s: np.ndarray, slo_ttft_s: float, slo_tpot_s: float) -> np.ndarray:
    """Per request: TTFT <= ``slo_ttft_s`` and TPOT <= ``slo_tpot_s`` (TPOT NaN counts as met)."""
    return (ttft_s <= slo_ttft_s) & ~(tpot_s > slo_tpot_s)


def mean_in_system(arrival_s: np.ndarray, finish_s: np.ndarray) -> float:
    """Time-average number of requests in the system between the first arrival and the last
    finish (the L of Little's law), requests."""
    times = np.concatenate([arrival_s, finish_s])
    steps = np.concatenate([np.ones(arrival_s.size), -np.ones(finish_s.size)])
    order = np.argsort(times, kind="stable")
    times, counts = times[order], np.cumsum(steps[order])
    span = times[-1] - times[0]
    if span <= 0:
        return float("nan")
    return float(np.sum(counts[:-1] * np.diff(times)) / span)
