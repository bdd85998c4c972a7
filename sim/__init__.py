"""Simulation: the analytical roofline path (``estimate``), the discrete-event engine
(``simulate``) and request-level serving (``serve``)."""

from sim.estimate import estimate, evaluate, make_batch, plan_step
from sim.results import OpRecord, StepResult
from sim.roofline import roofline_figure, roofline_points
from sim.serving import ServingResult, Workload, serve
from sim.simulate import SimResult, simulate, simulate_plan

__all__ = ["OpRecord", "ServingResult", "SimResult", "StepResult", "Workload", "estimate", "evaluate",
           "make_batch", "plan_step", "roofline_figure", "roofline_points", "serve", "simulate", "simulate_plan"]
