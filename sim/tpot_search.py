"""The largest batch a system serves under a time-per-output-token target, and its throughput per device.

For a model, a system, a context length and a TPOT target (s), each candidate setting (mapper
options, e.g. micro-batch counts) is searched for the largest decode batch whose simulated step
time (one token for every request: the TPOT) stays within the target; step time grows with the
batch, so a bisection over the batch finds it. The result with the most tokens per second per
device wins. An infeasible point (memory, batch too small for the micro-batches) counts as over
the target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from decodex.core.errors import InfeasibleError
from decodex.hw_models.system import SystemSpec
from decodex.sim.simulate import simulate


@dataclass(frozen=True)
class TpotPoint:
    """A batch, its TPOT (s), throughput (tokens/s) per device, and the settings that gave it."""

    batch: int
    tpot_s: float
    tokens_per_s_per_device: float
    devices: int
    options: Mapping[str, Any] = field(default_factory=dict)


def _point(model: str, system: str | SystemSpec, batch: int, context: int, precision: str,
           options: Mapping[str, Any]) -> TpotPoint | None:
    try:
        result = simulate(model, system, batch, context=context, precision=precision, **dict(options))
    except InfeasibleError:
        return None
    if not result.fits:
        return None
    return TpotPoint(batch, result.step_time_s, batch / result.step_time_s / result.devices, result.devices,
                     dict(options))


def largest_batch(model: str, system: str | SystemSpec, *, context: int, tpot_s: float, precision: str = "fp8",
                  options: Mapping[str, Any] | None = None, low: int = 1, high: int = 65536,
                  step: int = 1) -> TpotPoint | None:
    """The largest batch (a multiple of ``step``) in [low, high] meeting ``tpot_s``, or None."""
    opts = dict(options or {})
    lo, hi = max(1, low // step), high // step
    best: TpotPoint | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        point = _point(model, system, mid * step, context, precision, opts)
        if point is not None and point.tpot_s <= tpot_s:
            best, lo = point, mid + 1
        else:
            hi = mid - 1
    return best


def best_under_tpot(model: str, system: str | SystemSpec, *, context: int, tpot_s: float, precision: str = "fp8",
                    settings: Iterable[Mapping[str, Any]] = ({},), step: int = 1,
                    high: int = 65536) -> TpotPoint | None:
    """The setting and batch with the highest tokens/s per device within ``tpot_s`` (module docstring)."""
    points = [largest_batch(model, system, context=context, tpot_s=tpot_s, precision=precision, options=s,
                            step=step, high=high) for s in settings]
    found = [p for p in points if p is not None]
    return max(found, key=lambda p: p.tokens_per_s_per_device) if found else None
