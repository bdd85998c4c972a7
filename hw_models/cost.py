"""The cost of one op on one unit: time, what bound it, and dynamic energy."""

from __future__ import annotations

from typing import NamedTuple

from decodex.core.errors import DecodexError


class UnsupportedOpError(DecodexError):
    """A unit cannot run an op (e.g. a dtype it has no datapath for)."""


class OpCost(NamedTuple):
    """Time (s) of one op instance on one device, its parts, its bound and dynamic energy (J).
    An immutable named tuple: every priced op makes one, and a tuple is built several times
    faster than a frozen dataclass.

    ``bound`` is ``"compute"``, ``"memory"``, ``"overhead"`` (fixed cost larger than both) or
    ``"network"`` (collectives). ``compute_s``/``memory_s`` are the unoverlapped times of each
    resource; ``time_s = max(compute_s, memory_s) + overhead_s`` for roofline units.
    """

    time_s: float
    compute_s: float
    memory_s: float
    overhead_s: float
    bound: str
    energy_j: float


def roofline_bound(compute_s: float, memory_s: float, overhead_s: float) -> str:
    """Which term dominates a roofline time."""
    if overhead_s > (memory_s if memory_s > compute_s else compute_s):  # max() without a call
        return "overhead"
    return "compute" if compute_s >= memory_s else "memory"
