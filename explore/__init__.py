"""Design-space exploration, analysis half: Pareto fronts, sensitivity, constrained optimization, figures."""

from decodex.explore.figures import (
    one_at_a_time_figure,
    optimization_figure,
    pareto_figure,
    save_html,
    scatter_figure,
    sensitivity_figure,
)
from decodex.explore.optimize import Constraint, DesignOptimum, optimize_design
from decodex.explore.pareto import pareto_front, pareto_mask
from decodex.explore.sensitivity import OneAtATime, one_at_a_time, sobol_indices

__all__ = ["Constraint", "DesignOptimum", "OneAtATime", "one_at_a_time", "one_at_a_time_figure", "optimization_figure",
           "optimize_design", "pareto_figure", "pareto_front", "pareto_mask", "save_html", "scatter_figure",
           "sensitivity_figure", "sobol_indices"]
