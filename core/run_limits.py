"""Limits on a run's time and memory: sizes with units, the default memory limit, and a watch
that long loops call to show progress and stop at a time or memory limit.

``decodex sweep`` and ``decodex serve`` take ``--time-limit SECONDS`` and ``--max-memory SIZE``;
a run refused or stopped by one raises :class:`LimitError` (one line saying what to change).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable

from decodex.core.errors import ArgumentError, DecodexError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([kmgtp]i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def parse_bytes(text: str | float, name: str = "--max-memory") -> float:
    """A size in bytes from a number (bytes) or text with an optional unit: ``8G``, ``512M``,
    ``1.5GiB``, ``2e9`` (k, M, G, T, P are powers of 1000; Ki, Mi, Gi, Ti, Pi of 1024; a trailing
    ``B`` is allowed). ArgumentError naming ``name`` otherwise, or when not in (0, 2**63)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _SIZE.match(str(text))
        if match is None:
            raise ArgumentError(f"{name} {str(text)[:40]!r}: not a size; give bytes with an optional unit, e.g. 8G, "
                                "512M or 1.5GiB (k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024)")
        number, exponent, unit = match.groups()
        value = float(number) * 10.0 ** int(exponent or 0) * _UNITS[(unit or "").lower()]
    if not (math.isfinite(value) and 0 < value < 2**63):
        raise ArgumentError(f"{name} {text!r}: outside (0, 2**63) bytes")
    return value


def default_memory_limit() -> float:
    """Half of this machine's physical memory, bytes (psutil, else ``os.sysconf``; inf when unknown)."""
    try:
        import psutil

        return float(psutil.virtual_memory().total) / 2
    except ImportError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2
    except (AttributeError, ValueError, OSError):
        return math.inf


def si_bytes(value: float) -> str:
    """``value`` bytes in words with an SI unit, e.g. '1.5 GB'."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


class LimitError(DecodexError):
    """A run refused up front by its memory limit, or stopped by its time or memory limit; the
    message says how far it got and what to change (one line)."""


def check_time_limit(time_limit_s: float | None, name: str = "time_limit_s") -> float | None:
    """``time_limit_s`` as a float in [0, 1e9] seconds, or None (no limit); ArgumentError otherwise."""
    if time_limit_s is None:
        return None
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, int | float) or not (
            math.isfinite(time_limit_s) and 0 <= time_limit_s <= 1e9):
        raise ArgumentError(f"{name}: {time_limit_s!r} outside [0, 1e9] seconds")
    return float(time_limit_s)


def memory_limit(max_memory_bytes: float | str | None, name: str = "max_memory_bytes") -> float:
    """The memory limit in bytes: ``max_memory_bytes`` (bytes, or text such as ``8G``) or, when
    None, :func:`default_memory_limit`."""
    return default_memory_limit() if max_memory_bytes is None else parse_bytes(max_memory_bytes, name)


class RunWatch:
    """What a long loop calls every so often (:meth:`tick`): a progress line on stderr, and
    :class:`LimitError` once ``time_limit_s`` has passed or the memory the loop reports is above
    ``memory_limit_bytes``.

    ``what`` names the run in messages ("serving run"); ``unit`` what ``done`` counts
    ("requests"); ``total`` how many there are; ``advice`` is appended to a stop's message.
    ``clock`` (seconds) may be replaced by a test.
    """

    clock: Callable[[], float] = time.monotonic

    def __init__(self, what: str, unit: str, total: int, *, time_limit_s: float | None = None,
                 memory_limit_bytes: float = math.inf, progress: bool = False, advice: str = "") -> None:
        self.what, self.unit, self.total = what, unit, total
        self.time_limit_s = check_time_limit(time_limit_s)
        self.memory_limit_bytes = memory_limit_bytes
        self.progress = progress
        self.advice = advice
        self.started = self.clock()
        self.done = 0
        self._shown = -1.0

    def elapsed_s(self) -> float:
        """Seconds since the watch started."""
        return self.clock() - self.started

    def tick(self, done: int, held_bytes: float = 0.0) -> None:
        """``done`` of ``total`` finished so far, ``held_bytes`` held by the loop (bytes)."""
        elapsed = self.elapsed_s()
        if held_bytes > self.memory_limit_bytes:
            self._end()
            raise LimitError(f"{self.what} stopped with {done:,} of {self.total:,} {self.unit} done: it holds "
                             f"{si_bytes(held_bytes)}, above the memory limit of {si_bytes(self.memory_limit_bytes)} "
                             f"(--max-memory){self.advice}")
        if self.time_limit_s is not None and elapsed >= self.time_limit_s:
            self._end()
            raise LimitError(f"{self.what} stopped by its time limit of {self.time_limit_s:g} s (--time-limit) with "
                             f"{done:,} of {self.total:,} {self.unit} done{self.advice}")
        if self.progress and elapsed - self._shown >= 0.5:
            self._shown = elapsed
            print(f"\r{self.what}: {done:,}/{self.total:,} {self.unit}, {elapsed:.0f} s", end="", file=sys.stderr,
                  flush=True)

    def advance(self, count: int = 1) -> None:
        """``count`` more of ``total`` finished (:meth:`tick` with the running count)."""
        self.done += count
        self.tick(self.done)

    def close(self) -> None:
        """End the progress line (if one was shown)."""
        self._end()

    def _end(self) -> None:
        if self.progress and self._shown >= 0:
            print(file=sys.stderr, flush=True)
            self._shown = -1.0
