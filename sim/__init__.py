"""Simulation: the analytical roofline path (``estimate``) and the discrete-event engine
(``simulate``)."""

from sim.estimate import estimate, evaluate, make_batch, plan_step
from sim.results import OpRecord, StepResult
from sim.roofline import roofline_figure, roofline_points
from sim.simulate import SimResult, simulate, simulate_plan

__all__ = ["OpRecord", "SimResult", "StepResult", "estimate", "evaluate", "make_batch", "plan_step",
           "roofline_figure", "roofline_points", "simulate", "simulate_plan"]
