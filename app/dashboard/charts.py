"""Plotly figures of one step for the dashboard: the per-op time breakdown and the roofline with
the validation error band. Pure functions of a result (no Streamlit), so they are tested alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from decodex.sim.results import StepResult
from decodex.sim.roofline import roofline_figure, roofline_points

TEMPLATE = "plotly_white"


def op_breakdown(result: StepResult) -> pd.DataFrame:
    """Time per step of each op (all its layer repeats), ms, with its block, unit and bound;
    the rows sum to the sum of op times (before any overlap the mapper credits)."""
    ops = result.ops
    frame = ops.groupby(["block", "name", "unit", "bound"], sort=False, as_index=False)["total_time_s"].sum()
    frame["time_ms"] = frame["total_time_s"] * 1e3
    return frame


def op_breakdown_figure(result: StepResult, stack_by: str = "name") -> go.Figure:
    """Stacked bars: one bar per model block (embedding, attention, ffn, ...), stacked by
    ``stack_by`` (``name``: op, ``unit`` or ``bound``); y in ms per step."""
    if stack_by not in ("name", "unit", "bound"):
        raise ValueError(f"stack_by must be name, unit or bound, got {stack_by!r}")
    frame = op_breakdown(result)
    frame = frame.groupby(["block", stack_by], sort=False, as_index=False)["time_ms"].sum()
    figure = px.bar(frame, x="block", y="time_ms", color=stack_by, template=TEMPLATE,
                    labels={"time_ms": "time per step (ms)", "block": "block"})
    figure.update_layout(barmode="stack", title="Time per step by block")
    return figure


def band_factors(result: StepResult) -> tuple[float, float]:
    """(low, high) ratios of the validation band to the predicted step time (NaN when no band):
    a measured step is expected within [low, high] x the prediction."""
    t = result.step_time_s
    if not (t > 0 and math.isfinite(result.band_low_s) and math.isfinite(result.band_high_s)):
        return float("nan"), float("nan")
    return result.band_low_s / t, result.band_high_s / t


def roofline_with_band(result: StepResult) -> go.Figure:
    """The step's roofline (:func:`sim.roofline.roofline_figure`: each unit's ceilings, each op a
    point) with error bars on each op's attained FLOP/s from the step's validation band: an op
    that runs band_high/t slower attains t/band_high of the predicted FLOP/s."""
    figure = roofline_figure(result)
    low, high = band_factors(result)
    if not (np.isfinite(low) and np.isfinite(high)):
        return figure
    points = roofline_points(result)
    for trace in figure.data:
        if trace.mode != "markers":
            continue
        y = np.asarray(trace.y, dtype=float)
        trace.error_y = {"type": "data", "symmetric": False, "array": y / low - y, "arrayminus": y - y / high,
                         "thickness": 1}
    figure.update_layout(title=f"Roofline, {len(points)} ops (bars: validation band {low:.2f}x-{high:.2f}x)")
    return figure
