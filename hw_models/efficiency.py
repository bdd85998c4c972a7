"""Achieved fraction of a peak as data: a constant or a curve over the size of the work."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

import numpy as np

from decodex.hw_models.spec_reader import TableReader

_TINY = 1e-30  # sizes below it count as it (log of 0)
_LOG_TINY = math.log(_TINY)


@dataclass(frozen=True)
class EfficiencyCurve:
    """Fraction of peak (in (0, 1]) as a function of size (FLOP or bytes).

    Piecewise linear in log(size) between the points, constant beyond the ends (Calculon's
    efficiency-versus-size tables). A single point is a constant.
    """

    sizes: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_log_sizes", tuple(math.log(s) if s > 0 else -math.inf for s in self.sizes))

    @classmethod
    def constant(cls, value: float) -> EfficiencyCurve:
        """A size-independent efficiency."""
        return cls((1.0,), (value,))

    @property
    def is_constant(self) -> bool:
        return len(self.values) == 1

    def at(self, size: float) -> float:
        """Efficiency for work of ``size`` (FLOP or bytes): :meth:`at_many` for one size, in
        plain floats (the interpolation ``numpy.interp`` does; equal to it within 1e-15)."""
        values = self.values
        if len(values) == 1:
            return values[0]
        if size != size:  # NaN size
            return math.nan
        x = math.log(size) if size > _TINY else _LOG_TINY
        xs: tuple[float, ...] = self._log_sizes  # type: ignore[attr-defined]
        if x <= xs[0]:
            return values[0]
        if x >= xs[-1]:
            return values[-1]
        j = bisect.bisect_right(xs, x) - 1
        if xs[j] == x:
            return values[j]
        slope = (values[j + 1] - values[j]) / (xs[j + 1] - xs[j])
        return slope * (x - xs[j]) + values[j]

    def at_many(self, sizes: np.ndarray) -> np.ndarray:
        """Vectorized :meth:`at`."""
        if len(self.values) == 1:
            return np.full(np.shape(sizes), self.values[0])
        return np.interp(np.log(np.maximum(sizes, _TINY)), np.log(self.sizes), self.values)

    def scaled(self, factor: float) -> EfficiencyCurve:
        """The same curve with every value multiplied by ``factor`` (capped at 1)."""
        return EfficiencyCurve(self.sizes, tuple(min(1.0, v * factor) for v in self.values))

    @classmethod
    def read(cls, table: TableReader, key: str = "efficiency") -> EfficiencyCurve:
        """Read ``key`` as a number, a ``{value = x}`` table or a ``{sizes, values}`` curve."""
        if not table.has(key):
            raise table.error(key, "required field is missing (a number in (0, 1] or a {sizes, values} curve)")
        raw = table.data[key]  # has() made it known
        if not isinstance(raw, dict):
            return cls.constant(table.number(key, lo=0.0, hi=1.0, lo_open=True))
        sub = table.sub(key)
        if sub.has("value"):
            return cls.constant(sub.number("value", lo=0.0, hi=1.0, lo_open=True))
        sizes = sub.number_list("sizes")
        values = sub.number_list("values")
        if len(sizes) != len(values):
            raise sub.error("values", f"has {len(values)} points but sizes has {len(sizes)}")
        if any(s <= 0 for s in sizes) or any(b <= a for a, b in itertools.pairwise(sizes)):
            raise sub.error("sizes", "must be > 0 and strictly ascending")
        if any(not 0.0 < v <= 1.0 for v in values):
            raise sub.error("values", "each must lie in (0, 1]")
        return cls(sizes, values)
