"""The public entry points that attach validation data to what the simulator predicts.

``decodex.sim`` never reads ``decodex.validation`` (a record must not feed a prediction), so a
raw :func:`decodex.sim.estimate` result has no error band. The functions here are the ones a user
calls (``decodex.estimate``, ``decodex.simulate``): the simulator's, with the error band of the
committed validation records attached (:func:`decodex.validation.bands.attach_band`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from decodex.sim.estimate import estimate as _estimate
from decodex.sim.results import StepResult
from decodex.sim.simulate import simulate as _simulate
from decodex.validation.bands import attach_band

P = ParamSpec("P")
R = TypeVar("R", bound=StepResult)

BAND_NOTE = """

    The result carries its error band (``band_low_s``, ``band_high_s``, ``band_source``) and
    ``warnings`` from the committed validation records (:func:`decodex.validation.bands.attach_band`)."""


def with_band(func: Callable[P, R]) -> Callable[P, R]:
    """``func`` (a simulator entry point returning a StepResult) with the records' error band
    attached to its result; same signature and arguments."""

    @functools.wraps(func)
    def banded(*args: P.args, **kwargs: P.kwargs) -> R:
        return attach_band(func(*args, **kwargs))

    banded.__doc__ = (func.__doc__ or "") + BAND_NOTE
    banded.__module__ = __name__
    return banded


estimate = with_band(_estimate)
simulate = with_band(_simulate)

__all__ = ["estimate", "simulate", "with_band"]
