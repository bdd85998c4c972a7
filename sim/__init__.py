"""Simulation: the analytical roofline path (``estimate``), the discrete-event engine
(``simulate``), request-level serving (``serve``) and sweeps over design spaces (``sweep``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from decodex.sim.estimate import estimate, evaluate, make_batch, plan_step
from decodex.sim.results import OpRecord, StepResult
from decodex.sim.roofline import roofline_figure, roofline_points
from decodex.sim.serving import ServingResult, Workload, serve
from decodex.sim.simulate import SimResult, simulate, simulate_plan

if TYPE_CHECKING:
    import pandas as pd


def sweep(space: str | Path | dict[str, Any], mode: str | None = None, **options: Any) -> pd.DataFrame:
    """Run a design space (TOML file, dict or ``explore.sweep_space.SweepSpace``) in ``mode``
    (``estimate``, ``simulate`` or ``serve``; default: the space's): one row per point with its inputs, metrics and,
    for points that cannot run, the reason. ``options``: those of :func:`explore.runner.run_sweep`
    (``out``, ``workers``, ``scheduler``, ...)."""
    from decodex.explore.runner import run_sweep

    return run_sweep(space, mode=mode, **options)


__all__ = ["OpRecord", "ServingResult", "SimResult", "StepResult", "Workload", "estimate", "evaluate",
           "make_batch", "plan_step", "roofline_figure", "roofline_points", "serve", "simulate", "simulate_plan",
           "sweep"]
