"""Figures carry the expected traces and axis titles; save_html writes a standalone file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from decodex.explore.figures import (
    one_at_a_time_figure,
    optimization_figure,
    pareto_figure,
    save_html,
    scatter_figure,
    sensitivity_figure,
)
from decodex.explore.optimize import Constraint, optimize_design
from decodex.explore.sensitivity import one_at_a_time, sobol_indices

DESIGNS = pd.DataFrame({
    "bandwidth": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    "devices": [1, 2, 2, 4, 4, 8],
    "tpot_s": [0.05, 0.03, 0.035, 0.02, 0.025, 0.01],
    "cost_usd": [1.0, 2.0, 2.5, 4.0, 3.5, 8.0],
    "feasible": [True, True, True, True, False, True],
})


def test_scatter_figure_axes_hover_and_log() -> None:
    figure = scatter_figure(DESIGNS, "cost_usd", "tpot_s", hover=["bandwidth", "devices"], log_y=True)
    assert isinstance(figure, go.Figure)
    assert figure.layout.xaxis.title.text == "cost_usd"
    assert figure.layout.yaxis.title.text == "tpot_s"
    assert figure.layout.yaxis.type == "log"
    assert "bandwidth" in figure.data[0].hovertemplate and "devices" in figure.data[0].hovertemplate
    every = scatter_figure(DESIGNS, "cost_usd", "tpot_s")
    assert all(column in every.data[0].hovertemplate for column in DESIGNS.columns)
    with pytest.raises(ValueError, match="'latency_s'"):
        scatter_figure(DESIGNS, "cost_usd", "latency_s")


def test_pareto_figure_highlights_front_with_staircase() -> None:
    figure = pareto_figure(DESIGNS, "cost_usd", "tpot_s", {"cost_usd": "min", "tpot_s": "min"},
                           hover=["bandwidth", "devices"])
    names = [trace.name for trace in figure.data]
    assert names == ["feasible designs", "Pareto front"]
    faded, front = figure.data
    assert len(faded.x) == 5  # the infeasible row is not drawn
    assert list(front.x) == [1.0, 2.0, 4.0, 8.0]  # sorted by x; (2.5, 0.035) is dominated
    assert front.line.shape == "hv"
    assert "bandwidth" in front.hovertemplate
    assert figure.layout.xaxis.title.text == "cost_usd" and figure.layout.yaxis.title.text == "tpot_s"
    flipped = pareto_figure(DESIGNS, "bandwidth", "cost_usd", ("max", "min"))
    assert flipped.data[-1].line.shape == "vh"


def test_sensitivity_and_tornado_figures() -> None:
    def metric(points: pd.DataFrame) -> np.ndarray:
        return points["a"].to_numpy() + 3 * points["b"].to_numpy()

    bounds = {"a": (0.0, 1.0), "b": (0.0, 1.0)}
    figure = sensitivity_figure(sobol_indices(metric, bounds, n=64, n_bootstrap=20))
    assert [trace.name for trace in figure.data] == ["S1 (first order)", "ST (total)"]
    assert all(trace.type == "bar" and trace.error_y.array is not None for trace in figure.data)
    assert figure.layout.xaxis.title.text == "variable"

    tornado = one_at_a_time_figure(one_at_a_time(metric, {"a": 0.5, "b": 0.5}, bounds, steps=3), metric="tpot_s")
    assert [trace.name for trace in tornado.data] == ["variable at low", "variable at high"]
    assert list(tornado.data[0].y) == ["a", "b"]  # largest swing (b) drawn on top
    assert all(trace.orientation == "h" for trace in tornado.data)
    assert tornado.layout.xaxis.title.text == "tpot_s"


def test_optimization_figure() -> None:
    optimum = optimize_design(lambda design: {"tpot_s": 1.0 / design["bandwidth"]}, {"bandwidth": (10.0, 1000.0)},
                              "bandwidth", constraints=[Constraint("tpot_s", "<=", 0.01)], maxiter=5)
    figure = optimization_figure(optimum)
    assert [trace.name for trace in figure.data] == ["feasible", "infeasible", "best feasible so far"]
    assert len(figure.data[0].x) + len(figure.data[1].x) == optimum.evaluations
    assert np.nanmin(np.asarray(figure.data[2].y, dtype=float)) == optimum.objective
    assert figure.layout.xaxis.title.text == "evaluation"
    assert figure.layout.yaxis.title.text == "bandwidth"


def test_save_html_writes_standalone_file(tmp_path: Path) -> None:
    path = save_html(scatter_figure(DESIGNS, "cost_usd", "tpot_s"), tmp_path / "figures" / "scatter.html")
    assert path == tmp_path / "figures" / "scatter.html"
    text = path.read_text(encoding="utf-8")
    assert "plotly" in text
    assert '<script src="https://cdn.plot.ly' not in text  # plotly.js is embedded, so it works offline
    assert len(text) > 1_000_000
