"""Design-space exploration, analysis half: Pareto fronts, sensitivity, constrained optimization, figures."""

from explore.figures import (
    one_at_a_time_figure,
    optimization_figure,
    pareto_figure,
    save_html,
    scatter_figure,
    sensitivity_figure,
)
from explore.optimize import Constraint, DesignOptimum, optimize_design
from explore.pareto import pareto_front, pareto_mask
from explore.sensitivity import OneAtATime, one_at_a_time, sobol_indices

__all__ = ["Constraint", "DesignOptimum", "OneAtATime", "one_at_a_time", "one_at_a_time_figure", "optimization_figure",
           "optimize_design", "pareto_figure", "pareto_front", "pareto_mask", "save_html", "scatter_figure",
           "sensitivity_figure", "sobol_indices"]
