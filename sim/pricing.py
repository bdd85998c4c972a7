"""Money of a deployment: rental USD per hour of the devices a replica occupies and USD per
million output tokens at a throughput (catalog ``device.price.usd_per_hour``)."""

from __future__ import annotations

import math

from decodex.hw_models.system import SystemSpec

SECONDS_PER_HOUR = 3600.0


def replica_usd_per_hour(system: SystemSpec, devices: int) -> float:
    """USD per hour of the ``devices`` devices one replica occupies: the whole system's groups
    when the replica uses all of them, else ``devices`` times the first group's device. NaN when
    a device involved has no price (``usd_per_hour = 0`` in its spec)."""
    if not system.scalable and devices >= system.device_count:
        if any(g.device.usd_per_hour <= 0 for g in system.groups):
            return math.nan
        return float(sum(g.device.usd_per_hour * g.count for g in system.groups))
    hourly = system.primary_device.usd_per_hour
    return hourly * devices if hourly > 0 else math.nan


def usd_per_million_tokens(usd_per_hour: float, tokens_per_s: float) -> float:
    """USD per million output tokens at ``tokens_per_s`` (tokens/s) for ``usd_per_hour`` (USD/h);
    NaN without a price or a positive throughput."""
    if not (math.isfinite(usd_per_hour) and usd_per_hour > 0 and tokens_per_s > 0):
        return math.nan
    return usd_per_hour / SECONDS_PER_HOUR / tokens_per_s * 1e6
