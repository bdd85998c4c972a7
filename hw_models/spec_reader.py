"""Typed, validated reading of TOML spec tables; every error names file, field and range."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from decodex.core import input_files
from decodex.core.dtypes import DType
from decodex.core.errors import SpecError, did_you_mean


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file through the one input reader (:mod:`decodex.core.input_files`): a
    missing, oversized, non-UTF-8, badly nested or invalid file raises SpecError naming it."""
    return input_files.read_toml(path)


# The physical range of a spec number, by the unit its field name ends in (SI units): a field
# without explicit bounds gets these, so that 1e-300 B/s or a 10**20 W device is an error naming
# the field, not a NaN downstream. Ranges are generous (beyond any device built or planned):
# bandwidths 1 kB/s .. 100 PB/s (a wafer-scale SRAM is ~21 PB/s), capacities up to 10 PB,
# clocks 1 kHz .. 1 THz, powers up to 1 MW, energies up to 1 mJ per operation or byte, times up
# to an hour, prices up to $100k per hour or $1G per unit; peak rates 1 kFLOP/s .. 10 EFLOP/s.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "_bytes_per_s": (1e3, 1e17),
    "_bytes": (0.0, 1e16),
    "_hz": (1e3, 1e12),
    "_w": (0.0, 1e6),
    "_j": (0.0, 1e-3),
    "_s": (0.0, 3600.0),
    "usd_per_hour": (0.0, 1e5),
    "_usd": (0.0, 1e9),
    "peak_flops": (1e3, 1e19),
}


def physical_range(key: str) -> tuple[float, float]:
    """The (lo, hi) range of a spec number named ``key`` from its unit suffix
    (:data:`PHYSICAL_RANGES`); (-inf, inf) when the name carries no unit."""
    for suffix in sorted(PHYSICAL_RANGES, key=len, reverse=True):
        if key.endswith(suffix):
            return PHYSICAL_RANGES[suffix]
    return (-math.inf, math.inf)


# keys a spec table may carry for the reader's sake only (documentation, provenance)
ANNOTATION_KEYS = frozenset({"source", "sources", "note", "notes", "comment"})


class TableReader:
    """A view of one TOML table, at dotted ``path`` inside the file ``source``.

    The reader remembers every key it was asked about (read, tested with :meth:`has`, or marked
    with :meth:`mark`) and its sub-tables, so that :meth:`check_unknown` can refuse a key nobody
    reads (a misspelled optional field would otherwise be silently ignored)."""

    def __init__(self, data: Mapping[str, Any], source: str, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise SpecError(source, path, "must be a table")
        self.data = data
        self.source = source
        self.path = path
        self.known: set[str] = set()
        self.children: list[TableReader] = []

    def mark(self, *keys: str) -> None:
        """Record ``keys`` as fields this table knows (read through :attr:`data` directly)."""
        self.known.update(keys)

    def check_unknown(self) -> None:
        """Raise SpecError for the first key of this table or its sub-tables that no reader asked
        about, with the closest known names ("did you mean"); annotation keys
        (:data:`ANNOTATION_KEYS`, or starting with ``_``) are allowed."""
        for key in self.data:
            if key in self.known or key in ANNOTATION_KEYS or str(key).startswith("_"):
                continue
            close = did_you_mean(key, sorted(self.known), n=3)
            hint = f"; {close}" if close else (f"; known here: {', '.join(sorted(self.known))}" if self.known else "")
            raise self.error(str(key), f"unknown field{hint}")
        for child in self.children:
            child.check_unknown()

    def field(self, key: str) -> str:
        """Dotted path of a key in this table."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> SpecError:
        """A SpecError for ``key`` of this table."""
        return SpecError(self.source, self.field(key), message)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present (asking makes it a known field of this table)."""
        self.known.add(key)
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        """The keys of a free-form table (all of them become known)."""
        self.known.update(self.data)
        return iter(self.data)

    def sub(self, key: str) -> TableReader:
        """The sub-table ``key`` (required)."""
        self.known.add(key)
        if key not in self.data:
            raise self.error(key, "required table is missing")
        child = TableReader(self.data[key], self.source, self.field(key))
        self.children.append(child)
        return child

    def optional_sub(self, key: str) -> TableReader | None:
        """The sub-table ``key``, or None when absent."""
        return self.sub(key) if key in self.data else None

    def number(self, key: str, *, lo: float = 0.0, hi: float = math.inf, lo_open: bool = False,
               default: float | None = None, unit_key: str | None = None) -> float:
        """A finite number in [lo, hi] (or (lo, hi] with ``lo_open``), within the physical range of
        its unit (:func:`physical_range` of ``unit_key``, default ``key``): a default range is narrowed."""
        self.known.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "required field is missing")
            return default
        unit_lo, unit_hi = physical_range(unit_key or key)
        if unit_lo > lo:
            lo, lo_open = unit_lo, False
        hi = min(hi, unit_hi)
        value = self.data[key]
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(key, f"must be a finite number in {interval}, got {value!r}")
        if value < lo or value > hi or (lo_open and value == lo):
            raise self.error(key, f"{value!r} outside the allowed range {interval}")
        return float(value)

    def positive(self, key: str, *, default: float | None = None, unit_key: str | None = None) -> float:
        """A finite number > 0 (and within its unit's physical range)."""
        return self.number(key, lo=0.0, lo_open=True, default=default, unit_key=unit_key)

    def integer(self, key: str, *, lo: int = 0, hi: int = 2**62, default: int | None = None) -> int:
        """An integer in [lo, hi]."""
        self.known.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "required field is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.error(key, f"must be an integer in [{lo}, {hi}], got {value!r}")
        return value

    def string(self, key: str, *, choices: tuple[str, ...] | None = None, default: str | None = None) -> str:
        """A string, optionally one of ``choices``."""
        self.known.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "required field is missing")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(key, f"{value!r} not one of {', '.join(choices)}")
        return value

    def boolean(self, key: str, *, default: bool | None = None) -> bool:
        """A true/false value."""
        self.known.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "required field is missing")
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def string_list(self, key: str, *, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of strings."""
        self.known.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, got {value!r}")
        return tuple(value)

    def number_list(self, key: str) -> tuple[float, ...]:
        """A non-empty list of finite numbers."""
        self.known.add(key)
        value = self.data.get(key)
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                           for v in value)):
            raise self.error(key, f"must be a non-empty list of finite numbers, got {value!r}")
        return tuple(float(v) for v in value)


def read_dtype_table(table: TableReader, key: str, *, positive: bool) -> dict[DType, float]:
    """The sub-table ``key`` mapping dtype names to numbers (> 0 with ``positive``, else >= 0);
    unknown dtype names and an empty table are errors naming the field."""
    sub = table.sub(key)
    out: dict[DType, float] = {}
    for name in sub:
        try:
            dtype = DType(name)
        except ValueError:
            raise sub.error(name, f"unknown dtype; allowed: {', '.join(d.value for d in DType)}") from None
        out[dtype] = sub.positive(name, unit_key=key) if positive else sub.number(name, unit_key=key)
    if not out:
        raise table.error(key, "needs at least one dtype")
    return out
