"""A bandwidth budget shared by concurrent transfers (fluid max-min fair sharing) on simpy."""

from __future__ import annotations

import itertools
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import simpy

_DONE = 1e-9  # fraction of a transfer's bytes below which it counts as finished


@dataclass(slots=True)
class _Transfer:
    remaining: float
    cap: float
    size: float
    event: simpy.Event
    rate: float = 0.0


class FluidChannel:
    """Transfers share ``budget_bytes_per_s``; each is also capped by its own path's rate.

    Rates are max-min fair (water filling) and recomputed whenever a transfer starts or ends, so
    a lone transfer runs at its cap and n equal transfers each get budget / n when that is lower.
    """

    def __init__(self, env: simpy.Environment, budget_bytes_per_s: float) -> None:
        self.env = env
        self.budget = budget_bytes_per_s
        self._active: dict[int, _Transfer] = {}
        self._last = 0.0
        self._version = 0
        self._ids = itertools.count()

    def transfer(self, nbytes: float, cap_bytes_per_s: float) -> simpy.Event:
        """An event that fires when ``nbytes`` have moved (rate ≤ ``cap_bytes_per_s``)."""
        self._advance()
        event = self.env.event()
        self._active[next(self._ids)] = _Transfer(nbytes, cap_bytes_per_s, nbytes, event)
        self._reschedule()
        return event

    def _advance(self) -> None:
        elapsed = self.env.now - self._last
        if elapsed > 0:
            for transfer in self._active.values():
                transfer.remaining -= transfer.rate * elapsed
        self._last = self.env.now

    def _reschedule(self) -> None:
        for key in [k for k, t in self._active.items() if t.remaining <= _DONE * t.size]:
            self._active.pop(key).event.succeed()
        self._version += 1
        if not self._active:
            return
        left = self.budget
        ordered = sorted(self._active.values(), key=lambda t: t.cap)
        for position, transfer in enumerate(ordered):
            transfer.rate = min(transfer.cap, left / (len(ordered) - position))
            left -= transfer.rate
        wait = min(t.remaining / t.rate for t in ordered)
        self.env.process(self._wake(self._version, max(wait, 0.0)))

    def _wake(self, version: int, wait: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(wait)
        if version != self._version:
            return  # a start or finish since then rescheduled
        self._advance()
        soonest = min(self._active.values(), key=lambda t: t.remaining / t.rate if t.rate else float("inf"))
        soonest.remaining = 0.0  # guards against round-off leaving a sliver
        self._reschedule()
