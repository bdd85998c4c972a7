"""Simulation: the analytical roofline path (``estimate``), the discrete-event engine
(``simulate``), request-level serving (``serve``) and sweeps over design spaces (``sweep``)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decodex.core.lazy_exports import lazy_exports
from decodex.sim.estimate import estimate, evaluate, make_batch, plan_step
from decodex.sim.results import OpRecord, StepResult
from decodex.sim.simulate import SimResult, simulate, simulate_plan

if TYPE_CHECKING:
    import pandas as pd

    from decodex.sim.roofline import roofline_figure, roofline_points
    from decodex.sim.serving import ServingResult, Workload, serve

# imported on first use (PEP 562), so that `decodex estimate` does not load serving or plotly;
# ``estimate`` and ``simulate`` stay eager: they share their names with submodules, and a lazy
# name would be shadowed by the submodule once something imports it
_LAZY = {"roofline_figure": "decodex.sim.roofline", "roofline_points": "decodex.sim.roofline",
         "ServingResult": "decodex.sim.serving", "Workload": "decodex.sim.serving", "serve": "decodex.sim.serving"}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


def sweep(space: str | Path | dict[str, Any], mode: str | None = None, **options: Any) -> pd.DataFrame:
    """Run a design space (TOML file, dict or ``explore.sweep_space.SweepSpace``) in ``mode``
    (``estimate``, ``simulate`` or ``serve``; default: the space's): one row per point with its inputs, metrics and,
    for points that cannot run, the reason. ``options``: those of :func:`explore.runner.run_sweep`
    (``out``, ``workers``, ``scheduler``, ...). ArgumentError for a ``space`` of another type, an
    unknown ``mode`` or an unknown option."""
    from collections.abc import Mapping

    from decodex.core.errors import ArgumentError, did_you_mean
    from decodex.explore.runner import run_sweep
    from decodex.explore.sweep_space import MODES, SweepSpace

    if not isinstance(space, str | Path | Mapping | SweepSpace):
        raise ArgumentError(f"space: must be a sweep TOML path, a dict or a SweepSpace, got {type(space).__name__}")
    if isinstance(space, str) and not space.strip():
        raise ArgumentError("space: an empty path; give a sweep TOML file, a dict or a SweepSpace")
    if mode is not None and (not isinstance(mode, str) or mode not in MODES):
        raise ArgumentError(f"mode: {mode!r:.80} not one of {', '.join(MODES)} (or None: the space's)")
    known = [name for name in inspect.signature(run_sweep).parameters if name not in ("space", "mode")]
    for key in options:
        if key not in known:
            close = did_you_mean(key, known)
            raise ArgumentError(f"{key}: not an option of sweep; {close + ' ' if close else ''}options: "
                                f"{', '.join(known)}")
    return run_sweep(space, mode=mode, **options)


__all__ = ["OpRecord", "ServingResult", "SimResult", "StepResult", "Workload", "estimate", "evaluate",
           "make_batch", "plan_step", "roofline_figure", "roofline_points", "serve", "simulate", "simulate_plan",
           "sweep"]
