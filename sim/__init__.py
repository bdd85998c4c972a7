"""Simulation: the analytical roofline path (this package grows a discrete-event engine,
serving and sweeps)."""

from sim.estimate import estimate, evaluate, make_batch, plan_step
from sim.results import OpRecord, StepResult
from sim.roofline import roofline_figure, roofline_points

__all__ = ["OpRecord", "StepResult", "estimate", "evaluate", "make_batch", "plan_step", "roofline_figure",
           "roofline_points"]
