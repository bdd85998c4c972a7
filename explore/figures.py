"""Plotly figures for design-space exploration: scatter, Pareto front, sensitivity, optimization.

Figures show values in the columns' own units (the column name, e.g. ``tpot_s``, is the axis
title); convert at the edge before plotting if other units are wanted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from decodex.explore.metric_labels import axis_title, hover_labels, style_axis
from decodex.explore.optimize import DesignOptimum
from decodex.explore.pareto import pareto_front
from decodex.explore.sensitivity import OneAtATime

TEMPLATE = "plotly_white"
FRONT_COLOR = "#d62728"


def scatter_figure(frame: pd.DataFrame, x: str, y: str, color: str | None = None,
                   hover: Sequence[str] | None = None, log_x: bool = False, log_y: bool = False) -> go.Figure:
    """Scatter of ``y`` against ``x``: axes titled with the metrics' readable names, their units on
    the ticks with SI prefixes (:mod:`explore.metric_labels`), hover labels likewise.

    ``color`` names a column to color by; ``hover`` lists the columns shown on hover (the design
    point's inputs, typically), default every column.
    """
    _require(frame, [x, y, *([color] if color else []), *(hover or [])])
    hover_data = list(hover) if hover is not None else list(frame.columns)
    figure = px.scatter(frame, x=x, y=y, color=color, hover_data=hover_data, log_x=log_x, log_y=log_y,
                        template=TEMPLATE, labels=hover_labels(list(frame.columns)))
    style_axis(figure.layout.xaxis, x)
    style_axis(figure.layout.yaxis, y)
    return figure


def pareto_figure(frame: pd.DataFrame, x: str, y: str, objectives: Mapping[str, str] | Sequence[str] = ("min", "min"),
                  color: str | None = None, hover: Sequence[str] | None = None, log_x: bool = False,
                  log_y: bool = False) -> go.Figure:
    """Feasible designs faded, with the Pareto front highlighted and joined by a staircase.

    ``objectives`` is either a mapping column -> ``"max"``/``"min"`` (it may hold more columns than
    ``x`` and ``y``), or two directions for ``(x, y)``. Rows with ``feasible == False`` are not
    drawn. Trace names: ``"feasible designs"`` and ``"Pareto front"``.
    """
    if isinstance(objectives, Mapping):
        directions = dict(objectives)
    else:
        if isinstance(objectives, str) or len(objectives) != 2:
            raise ValueError(f"objectives must map columns to 'max'/'min' or give two directions, got {objectives!r}")
        directions = {x: objectives[0], y: objectives[1]}
    front = pareto_front(frame, directions)
    feasible = frame[~frame["feasible"].eq(False).to_numpy()] if "feasible" in frame.columns else frame
    figure = scatter_figure(feasible, x, y, color=color, hover=hover, log_x=log_x, log_y=log_y)
    figure.update_traces(marker={"opacity": 0.35})
    if len(figure.data) == 1:
        figure.data[0].name = "feasible designs"
        figure.data[0].showlegend = True
    columns = list(hover) if hover is not None else list(frame.columns)
    front = front.sort_values([x, y], kind="stable")
    step = "vh" if directions.get(x) == "max" else "hv"
    figure.add_trace(go.Scatter(
        x=front[x], y=front[y], mode="lines+markers", name="Pareto front",
        line={"shape": step if x in directions and y in directions else "linear", "color": FRONT_COLOR},
        marker={"size": 9, "color": FRONT_COLOR, "line": {"width": 1, "color": "black"}},
        customdata=front[columns].to_numpy(dtype=object) if columns else None,
        hovertemplate=_hover_template(columns)))
    figure.update_layout(title="Pareto front")
    return figure


def sensitivity_figure(indices: pd.DataFrame) -> go.Figure:
    """Grouped bars of first-order (S1) and total (ST) Sobol indices per variable (unit-free).

    Takes :func:`explore.sensitivity.sobol_indices` output; error bars come from the
    ``*_low``/``*_high`` columns when present.
    """
    _require(indices, ["variable", "S1", "ST"])
    figure = go.Figure()
    for column, label in (("S1", "S1 (first order)"), ("ST", "ST (total)")):
        error = None
        if {f"{column}_low", f"{column}_high"} <= set(indices.columns):
            value = indices[column].to_numpy(dtype=float)
            error = {"type": "data", "symmetric": False,
                     "array": np.clip(indices[f"{column}_high"].to_numpy(dtype=float) - value, 0, None),
                     "arrayminus": np.clip(value - indices[f"{column}_low"].to_numpy(dtype=float), 0, None)}
        figure.add_trace(go.Bar(x=indices["variable"], y=indices[column], name=label, error_y=error))
    figure.update_layout(title="Sobol sensitivity indices", barmode="group", xaxis_title="variable",
                         yaxis_title="Sobol index (fraction of variance)", template=TEMPLATE)
    return figure


def one_at_a_time_figure(result: OneAtATime, metric: str = "metric") -> go.Figure:
    """Tornado chart: per variable, the metric change from base when set to its low and high value.

    Bars start at the base metric (a dashed line); the largest swing is on top. ``metric`` is the
    axis title (name the metric with its unit, e.g. ``"tpot_s"``).
    """
    summary = result.summary.iloc[::-1]
    base = result.base_metric
    figure = go.Figure()
    for end, label in (("low", "at low"), ("high", "at high")):
        values = summary[f"metric_at_{end}"].to_numpy(dtype=float)
        figure.add_trace(go.Bar(y=summary["variable"], x=values - base, base=base, orientation="h",
                                name=f"variable {label}", customdata=summary[end],
                                hovertemplate=f"%{{y}} = %{{customdata}}<br>{metric} = %{{x}}<extra>{label}</extra>"))
    figure.add_vline(x=base, line_dash="dash", line_color="gray")
    figure.update_layout(title="One-at-a-time sensitivity", barmode="overlay", yaxis_title="variable",
                         template=TEMPLATE)
    style_axis(figure.layout.xaxis, metric)
    return figure


def optimization_figure(optimum: DesignOptimum) -> go.Figure:
    """Objective value (its own unit) of each evaluated design, feasible vs infeasible, and best so far."""
    history = optimum.history
    name = optimum.objective_name or "objective"
    feasible = history["feasible"].to_numpy(dtype=bool)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=history.loc[feasible, "evaluation"], y=history.loc[feasible, "objective"],
                                mode="markers", name="feasible", marker={"color": "#1f77b4"}))
    figure.add_trace(go.Scatter(x=history.loc[~feasible, "evaluation"], y=history.loc[~feasible, "objective"],
                                mode="markers", name="infeasible", marker={"color": "lightgray", "symbol": "x"}))
    values = np.where(feasible, history["objective"].to_numpy(dtype=float), np.nan)
    values = values if optimum.minimize else -values
    best = np.fmin.accumulate(np.where(np.isnan(values), np.inf, values))
    best = np.where(np.isinf(best), np.nan, best if optimum.minimize else -best)
    figure.add_trace(go.Scatter(x=history["evaluation"], y=best, mode="lines", name="best feasible so far",
                                line={"shape": "hv", "color": FRONT_COLOR}))
    goal = "minimize" if optimum.minimize else "maximize"
    figure.update_layout(title=f"Optimization: {goal} {axis_title(name)}", xaxis_title="evaluation",
                         template=TEMPLATE)
    style_axis(figure.layout.yaxis, name)
    return figure


def save_html(figure: go.Figure, path: str | Path, *, standalone: bool = False) -> Path:
    """Write ``figure`` as an HTML file that works offline; returns the path. By default plotly.js
    (about 4.6 MB) is written once, as ``plotly.min.js`` beside the file, and shared by every
    figure in that folder (plotly's ``include_plotlyjs="directory"``); ``standalone`` embeds it
    instead, for a file to be sent on its own."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(target, include_plotlyjs=True if standalone else "directory", full_html=True)
    return target


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """ValueError naming the first of ``columns`` missing from ``frame`` and the columns it has."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"column {column!r} is not in the frame; columns: {list(frame.columns)}")


def _hover_template(columns: Sequence[str]) -> str:
    """Hover text listing ``columns`` from ``customdata`` in order."""
    lines = [f"{axis_title(column)} = %{{customdata[{i}]}}" for i, column in enumerate(columns)]
    return "<br>".join(lines) + "<extra>Pareto front</extra>"
