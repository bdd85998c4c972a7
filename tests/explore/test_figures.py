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
    # readable names, units on the ticks with SI prefixes (20ms), never a raw column name
    assert figure.layout.xaxis.title.text == "cost" and figure.layout.xaxis.tickprefix == "$"
    assert figure.layout.yaxis.title.text == "TPOT" and figure.layout.yaxis.ticksuffix == "s"
    assert figure.layout.yaxis.tickformat == "~s"  # d3's SI prefixes: 0.02 -> 20m, then the unit
    assert figure.layout.yaxis.type == "log"
    assert "bandwidth" in figure.data[0].hovertemplate and "devices" in figure.data[0].hovertemplate
    every = scatter_figure(DESIGNS, "cost_usd", "tpot_s")
    assert all(label in every.data[0].hovertemplate for label in ("bandwidth", "devices", "TPOT (s)", "cost ($)"))
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
    assert figure.layout.xaxis.title.text == "cost" and figure.layout.yaxis.title.text == "TPOT"
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
    assert tornado.layout.xaxis.title.text == "TPOT" and tornado.layout.xaxis.ticksuffix == "s"


def test_optimization_figure() -> None:
    optimum = optimize_design(lambda design: {"tpot_s": 1.0 / design["bandwidth"]}, {"bandwidth": (10.0, 1000.0)},
                              "bandwidth", constraints=[Constraint("tpot_s", "<=", 0.01)], maxiter=5)
    figure = optimization_figure(optimum)
    assert [trace.name for trace in figure.data] == ["feasible", "infeasible", "best feasible so far"]
    assert len(figure.data[0].x) + len(figure.data[1].x) == optimum.evaluations
    assert np.nanmin(np.asarray(figure.data[2].y, dtype=float)) == optimum.objective
    assert figure.layout.xaxis.title.text == "evaluation"
    assert figure.layout.yaxis.title.text == "bandwidth"


def test_save_html_shares_one_plotly_js_per_folder(tmp_path: Path) -> None:
    figure = scatter_figure(DESIGNS, "cost_usd", "tpot_s")
    path = save_html(figure, tmp_path / "figures" / "scatter.html")
    save_html(figure, tmp_path / "figures" / "again.html")
    assert path == tmp_path / "figures" / "scatter.html"
    text = path.read_text(encoding="utf-8")
    assert 'src="plotly.min.js"' in text and "cdn.plot.ly" not in text  # offline: the file beside it
    assert len(text) < 50_000 and (tmp_path / "figures" / "plotly.min.js").stat().st_size > 1_000_000
    alone = save_html(figure, tmp_path / "alone.html", standalone=True).read_text(encoding="utf-8")
    assert len(alone) > 1_000_000 and 'src="https://cdn.plot.ly' not in alone  # embedded, sent on its own
